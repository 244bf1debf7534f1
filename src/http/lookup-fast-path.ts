import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppContext } from '../context.js';
import { IdnsError } from '../errors.js';
import { sendFast } from './fast-reply.js';
import type { LookupWire } from './lookup-wire.js';

const PREFIX = '/v1/lookup/';

/**
 * The resolver's read path on cache hits, `GET /v1/lookup/{handle}`, served without the general HTTP
 * stack: the cache gives the result at once and the wire the kept pieces of its body. A miss, an
 * error, a query string or rate limits go to the full application, which stays the one definition of
 * the endpoint; this path only gives the same responses faster, with the same metrics and request log.
 */
export class LookupFastPath {
  constructor(
    private readonly ctx: AppContext,
    private readonly wire: LookupWire,
  ) {}

  /** Answers the request and returns true, or returns false to leave it to the full application. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const resolver = this.ctx.resolver;
    const url = req.url;
    if (resolver === null || req.method !== 'GET' || url === undefined || !url.startsWith(PREFIX) || url.includes('?')) return false;
    if (this.ctx.rateLimits.config.enabled) return false;
    const started = performance.now();
    let input = url.slice(PREFIX.length);
    if (input.includes('%')) {
      try {
        input = decodeURIComponent(input);
      } catch (err) {
        if (err instanceof URIError) return false;
        throw err;
      }
    }
    let r;
    try {
      r = resolver.lookupCached(input);
    } catch (err) {
      // An invalid handle is answered by the full application, with its error mapping.
      if (err instanceof IdnsError) return false;
      throw err;
    }
    if (r === undefined) return false;
    sendFast(this.ctx, req, res, started, {
      route: '/v1/lookup/:handle',
      status: r.status === 'found' ? 200 : 404,
      headers: { 'content-type': 'application/json', 'cache-control': `public, max-age=${r.ttl}` },
      body: this.wire.chunks(r),
      role: 'resolver',
      zone: r.zone,
      outcome: r.stale ? 'stale' : r.status,
    });
    return true;
  }
}
