import { Hono, type Context } from 'hono';
import type { AppContext } from '../../context.js';
import { IdnsError } from '../../errors.js';
import type { Resolver } from '../../resolver/resolver.js';
import { MAX_BATCH } from '../../resolver/resolver.js';
import { readJsonObject } from '../request.js';
import { clientKey } from '../rate-limits.js';
import { note } from '../observe.js';
import type { LookupWire } from '../lookup-wire.js';

/**
 * The resolver role: `GET /v1/lookup/{handle}` and `POST /v1/lookup` (up to 100 handles). Cache hits of
 * the GET are usually answered by the fast path (lookup-fast-path.ts), which must answer alike.
 */
export function lookupRoutes(ctx: AppContext, wire: LookupWire): Hono {
  const app = new Hono();
  const resolverOf = (): Resolver => {
    if (!ctx.resolver) throw new IdnsError('not_authoritative', 'this server does not run the resolver role (start it with --root and --anchor, or --forward)');
    return ctx.resolver;
  };

  app.get('/v1/lookup/:handle', async (c: Context) => {
    note(c, { role: 'resolver' });
    const r = await resolverOf().lookup(c.req.param('handle')!);
    note(c, { ...(r.zone === null ? {} : { zone: r.zone }), outcome: !r.verified ? 'webfinger' : r.stale ? 'stale' : r.status });
    c.header('Cache-Control', `public, max-age=${r.ttl}`);
    c.header('Content-Type', 'application/json');
    // Bodies are Buffers over plain ArrayBuffers (never shared memory), as hono's type asks.
    return c.body(wire.body(r) as Uint8Array<ArrayBuffer>, r.status === 'found' ? 200 : 404);
  });

  app.post('/v1/lookup', async (c) => {
    note(c, { role: 'resolver_batch' });
    const resolver = resolverOf();
    const body = await readJsonObject(c);
    const handles = body.handles;
    if (!Array.isArray(handles) || handles.length === 0 || handles.length > MAX_BATCH || !handles.every((h) => typeof h === 'string')) {
      throw new IdnsError('invalid_request', `the body must be {"handles": [1 to ${MAX_BATCH} handle strings]}`);
    }
    // The middleware charged one lookup; a batch costs one per handle.
    if (ctx.rateLimits.config.enabled && handles.length > 1) ctx.rateLimits.lookups.take(clientKey(c), handles.length - 1);
    const results = await resolver.lookupMany(handles as string[]);
    note(c, { outcome: 'batch' });
    c.header('Content-Type', 'application/json');
    return c.body(wire.batch(results) as Uint8Array<ArrayBuffer>, 200);
  });
  return app;
}
