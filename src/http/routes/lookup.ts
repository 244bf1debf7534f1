import { Hono, type Context } from 'hono';
import type { AppContext } from '../../context.js';
import { IdnsError } from '../../errors.js';
import type { Resolver, StoredLookupResult } from '../../resolver/resolver.js';
import { MAX_BATCH } from '../../resolver/resolver.js';
import { readJsonObject } from '../request.js';
import { note, type RequestFacts } from '../observe.js';
import type { LookupWire } from '../lookup-wire.js';

/**
 * The one rule for a lookup result's status, headers and accounting, used by this route and its fast
 * path (src/http/fast/lookup.ts); the body is the wire's (lookup-wire.ts).
 */
export function lookupReply(r: StoredLookupResult): { status: 200 | 404; headers: string[]; facts: RequestFacts } {
  return {
    status: r.status === 'found' ? 200 : 404,
    headers: ['cache-control', `public, max-age=${r.ttl}`, 'content-type', 'application/json'],
    facts: { role: 'resolver', ...(r.zone === null ? {} : { zone: r.zone }), outcome: !r.verified ? 'webfinger' : r.stale ? 'stale' : r.status },
  };
}

/**
 * The one rule of `POST /v1/lookup` after its body is read, used by this route and its fast path
 * (src/http/fast/batch.ts): the body's form, one charge to the client's lookup limit for each handle
 * after the first (the middleware charged one), the lookups, and the reply.
 */
export async function batchReply(
  ctx: AppContext,
  resolver: Resolver,
  wire: LookupWire,
  body: Record<string, unknown>,
  client: string,
): Promise<{ status: 200; headers: string[]; body: Buffer; facts: RequestFacts }> {
  const handles = body.handles;
  if (!Array.isArray(handles) || handles.length === 0 || handles.length > MAX_BATCH || !handles.every((h) => typeof h === 'string')) {
    throw new IdnsError('invalid_request', `the body must be {"handles": [1 to ${MAX_BATCH} handle strings]}`);
  }
  if (ctx.rateLimits.config.enabled && handles.length > 1) ctx.rateLimits.lookups.take(client, handles.length - 1);
  const results = await resolver.lookupManyStored(handles as string[]);
  return { status: 200, headers: ['content-type', 'application/json'], body: wire.batch(results), facts: { role: 'resolver_batch', outcome: 'batch' } };
}

/**
 * The resolver role: `GET /v1/lookup/{handle}` and `POST /v1/lookup` (up to 100 handles). Cache hits of
 * the GET, and batches, are usually answered by the fast paths (src/http/fast/lookup.ts, batch.ts), by
 * the same reply rules.
 */
export function lookupRoutes(ctx: AppContext, wire: LookupWire): Hono {
  const app = new Hono();
  const resolverOf = (): Resolver => {
    if (!ctx.resolver) throw new IdnsError('not_authoritative', 'this server does not run the resolver role (start it with --root and --anchor, or --forward)');
    return ctx.resolver;
  };

  app.get('/v1/lookup/:handle', async (c: Context) => {
    note(c, { role: 'resolver' });
    const r = await resolverOf().lookupStored(c.req.param('handle')!);
    const reply = lookupReply(r);
    note(c, reply.facts);
    for (let i = 0; i < reply.headers.length; i += 2) c.header(reply.headers[i]!, reply.headers[i + 1]!);
    // Bodies are Buffers over plain ArrayBuffers (never shared memory), as hono's type asks.
    return c.body(wire.body(r) as Uint8Array<ArrayBuffer>, reply.status);
  });

  app.post('/v1/lookup', async (c) => {
    note(c, { role: 'resolver_batch' });
    const resolver = resolverOf();
    const reply = await batchReply(ctx, resolver, wire, await readJsonObject(c), ctx.rateLimits.keyOfContext(c));
    note(c, reply.facts);
    for (let i = 0; i < reply.headers.length; i += 2) c.header(reply.headers[i]!, reply.headers[i + 1]!);
    return c.body(reply.body as Uint8Array<ArrayBuffer>, reply.status);
  });
  return app;
}
