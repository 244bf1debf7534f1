import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppContext } from '../context.js';
import { IdnsError } from '../errors.js';
import { sendFast } from './fast-reply.js';

interface Cached {
  zone: string;
  version: number;
  builtAt: number;
  status: number;
  outcome: string;
  body: string;
  etag: string;
  maxAge: number;
}

/** Longest a built answer is reused, ms: its TTL cap (`exp` − now) moves with time. */
const REUSE_MS = 1000;
/** Most answers kept; the oldest go first. */
const MAX_ENTRIES = 10_000;

/**
 * The authoritative read path, `GET /v1/resolve/{handle}`, served without the general HTTP stack: it is
 * the request a busy server answers most, and answers are reused (body, ETag) until the zone's version
 * changes or a second passes. Anything unusual — a query string, conditional headers, rate limits, an
 * error — goes to the full application, which stays the one definition of the endpoint's behaviour;
 * this path only produces exactly the same responses faster, with the same metrics and request log.
 */
export class ResolveFastPath {
  private readonly cache = new Map<string, Cached>();

  constructor(private readonly ctx: AppContext) {}

  /** Answers the request and returns true, or returns false to leave it to the full application. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url;
    if (req.method !== 'GET' || url === undefined || !url.startsWith('/v1/resolve/') || url.includes('?')) return false;
    if (req.headers['if-none-match'] !== undefined || this.ctx.rateLimits.config.enabled) return false;
    const started = performance.now();
    const now = this.ctx.clock.now();
    let hit = this.cache.get(url);
    if (hit) {
      const zone = this.ctx.zones.cachedZone(hit.zone);
      if (!zone || zone.version !== hit.version || now - hit.builtAt > REUSE_MS || this.ctx.zones.unavailable(zone)) hit = undefined;
    }
    if (!hit) {
      const built = this.build(url, now);
      if (!built) return false;
      hit = built;
      if (this.cache.size >= MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value as string);
      this.cache.set(url, hit);
    }
    sendFast(this.ctx, req, res, started, {
      route: '/v1/resolve/:handle',
      status: hit.status,
      headers: { 'content-type': 'application/json', 'cache-control': `public, max-age=${hit.maxAge}`, etag: hit.etag },
      body: hit.body,
      role: 'authoritative',
      zone: hit.zone,
      outcome: hit.outcome,
    });
    return true;
  }

  private build(url: string, now: number): Cached | null {
    let handle: string;
    try {
      handle = decodeURIComponent(url.slice('/v1/resolve/'.length));
    } catch (err) {
      if (err instanceof URIError) return null;
      throw err;
    }
    let answer;
    try {
      answer = this.ctx.authority.resolve(handle);
    } catch (err) {
      // Errors are answered by the full application, with its error mapping.
      if (err instanceof IdnsError) return null;
      throw err;
    }
    const zone = this.ctx.zones.cachedZone(answer.zone);
    if (!zone) return null;
    const body = JSON.stringify(answer);
    return {
      zone: answer.zone,
      version: zone.version,
      builtAt: now,
      status: answer.status === 'denial' ? 404 : 200,
      outcome: answer.status,
      body,
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`,
      maxAge: answer.ttl,
    };
  }
}
