import { Hono, type Context } from 'hono';
import type { AppContext } from '../../context.js';
import { IdnsError } from '../../errors.js';
import type { LookupResult, Resolver } from '../../resolver/resolver.js';
import { MAX_BATCH } from '../../resolver/resolver.js';
import { readJsonObject } from '../request.js';
import { clientKey } from '../rate-limits.js';
import { note, type RequestFacts } from '../observe.js';
import type { LookupWire } from '../lookup-wire.js';

/**
 * The one rule for a lookup result's status, headers and accounting, used by this route and its fast
 * path (src/http/fast/lookup.ts); the body is the wire's (lookup-wire.ts).
 */
export function lookupReply(r: LookupResult): { status: 200 | 404; headers: string[]; facts: RequestFacts } {
  return {
    status: r.status === 'found' ? 200 : 404,
    headers: ['cache-control', `public, max-age=${r.ttl}`, 'content-type', 'application/json'],
    facts: { role: 'resolver', ...(r.zone === null ? {} : { zone: r.zone }), outcome: !r.verified ? 'webfinger' : r.stale ? 'stale' : r.status },
  };
}

/**
 * The resolver role: `GET /v1/lookup/{handle}` and `POST /v1/lookup` (up to 100 handles). Cache hits of
 * the GET are usually answered by the fast path (src/http/fast/lookup.ts), by the same reply rule.
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
    const reply = lookupReply(r);
    note(c, reply.facts);
    for (let i = 0; i < reply.headers.length; i += 2) c.header(reply.headers[i]!, reply.headers[i + 1]!);
    // Bodies are Buffers over plain ArrayBuffers (never shared memory), as hono's type asks.
    return c.body(wire.body(r) as Uint8Array<ArrayBuffer>, reply.status);
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
