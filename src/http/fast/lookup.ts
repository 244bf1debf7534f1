import type { IncomingMessage } from 'node:http';
import type { AppContext } from '../../context.js';
import type { LookupWire } from '../lookup-wire.js';
import { lookupReply } from '../routes/lookup.js';
import type { FastEndpoint, FastReply, RequestHead } from './dispatch.js';

/**
 * `GET /v1/lookup/{handle}` on the fast path, for cache hits: the cache gives the result at once and the
 * wire the kept pieces of its body; the status and headers come from the route's rule (routes/lookup.ts
 * `lookupReply`). A miss, a server without the resolver role, or a query string go to the application.
 */
export class LookupEndpoint implements FastEndpoint {
  constructor(
    private readonly ctx: AppContext,
    private readonly wire: LookupWire,
  ) {}

  /** The reply to a cached handle, or null to leave the lookup to the application; an invalid handle is thrown. */
  answer(_req: IncomingMessage, param: string, _head: RequestHead): FastReply | null {
    const resolver = this.ctx.resolver;
    if (resolver === null) return null;
    let input = param;
    if (input.includes('%')) {
      try {
        input = decodeURIComponent(input);
      } catch (err) {
        if (err instanceof URIError) return null;
        throw err;
      }
    }
    const r = resolver.cachedStored(input);
    if (r === undefined) return null;
    const reply = lookupReply(r);
    return { status: reply.status, headers: reply.headers, body: this.wire.chunks(r), tally: null, facts: reply.facts };
  }
}
