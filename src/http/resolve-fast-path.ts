import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppContext } from '../context.js';
import { IdnsError } from '../errors.js';
import type { Tally } from './metrics.js';
import { answerEtag } from './routes/resolve.js';
import { requestIdFor } from './observe.js';
import { fnv1a } from '../records/encoding.js';

interface Cached {
  zone: string;
  version: number;
  builtAt: number;
  status: number;
  outcome: string;
  body: Buffer;
  etag: string;
  maxAge: number;
  tally: Tally;
}

const ROUTE = '/v1/resolve/:handle';
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
  /** Per hashed URL, the generation in which it was last answered without being kept. */
  private readonly marks = new Uint16Array(65_536);
  private generation = 1;
  private marked = 0;
  /** The request and query counts, per outcome. */
  private readonly tallies = new Map<string, Tally>();

  constructor(private readonly ctx: AppContext) {}

  /** Answers the request and returns true, or returns false to leave it to the full application. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url;
    if (req.method !== 'GET' || url === undefined || !url.startsWith('/v1/resolve/') || url.includes('?')) return false;
    if (this.ctx.rateLimits.config.enabled) return false;
    // The two headers that matter, read from the raw list: `req.headers` is built on first use, for every header.
    let conditional = false;
    let given: string | undefined;
    let ids = 0;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.length === 13 && name.toLowerCase() === 'if-none-match') conditional = true;
      else if (name.length === 12 && name.toLowerCase() === 'x-request-id') {
        given = raw[i + 1];
        ids += 1;
      }
    }
    if (conditional) return false;
    const started = performance.now();
    const now = this.ctx.clock.now();
    const cached = this.cache.get(url);
    let hit = cached;
    if (hit) {
      const zone = this.ctx.zones.cachedZone(hit.zone);
      if (!zone || zone.version !== hit.version || now - hit.builtAt > REUSE_MS || this.ctx.zones.unavailable(zone)) hit = undefined;
    }
    if (!hit) {
      const built = this.build(url, now);
      if (!built) return false;
      hit = built;
      this.admit(url, built, cached !== undefined);
    }
    // Repeated, the id would reach the full application joined with ", ", which is not a sane id either.
    const id = requestIdFor(ids === 1 ? given : undefined);
    // A flat list: node:http then skips enumerating an object's keys.
    res.writeHead(hit.status, [
      'content-type', 'application/json',
      'content-length', String(hit.body.length),
      'cache-control', `public, max-age=${hit.maxAge}`,
      'etag', hit.etag,
      'x-request-id', id,
    ]);
    res.end(hit.body);
    const elapsed = performance.now() - started;
    hit.tally.add(elapsed / 1000);
    if (this.ctx.log.enabled('info')) {
      const ms = Math.round(elapsed * 100) / 100;
      this.ctx.log.info('request', { reqId: id, method: 'GET', route: ROUTE, status: hit.status, ms, zone: hit.zone, outcome: hit.outcome });
    }
    return true;
  }

  /**
   * Keeps an answer for reuse only when its URL was asked for recently (or was kept before): under
   * queries spread over a large zone most answers are never asked for again within REUSE_MS, and
   * keeping each one would cost more (map churn, old-generation garbage) than it saves. "Asked for
   * recently" is a hashed mark per URL, cleared every MAX_ENTRIES marks: no allocation per query, and
   * a collision only keeps an answer that did not need keeping.
   */
  private admit(url: string, answer: Cached, wasCached: boolean): void {
    if (!wasCached) {
      const slot = fnv1a(url) & (this.marks.length - 1);
      if (this.marks[slot] !== this.generation) {
        this.marks[slot] = this.generation;
        if (++this.marked >= MAX_ENTRIES) this.nextGeneration();
        return;
      }
    }
    if (this.cache.size >= MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value as string);
    // A body of its own: a slice of Buffer's shared pool would keep the whole pool block alive.
    const body = Buffer.allocUnsafeSlow(answer.body.length);
    answer.body.copy(body);
    this.cache.set(url, { ...answer, body });
  }

  private nextGeneration(): void {
    this.marked = 0;
    this.generation = (this.generation + 1) & 0xffff;
    if (this.generation === 0) {
      this.marks.fill(0);
      this.generation = 1;
    }
  }

  private build(url: string, now: number): Cached | null {
    let handle: string;
    try {
      const raw = url.slice('/v1/resolve/'.length);
      handle = raw.includes('%') ? decodeURIComponent(raw) : raw;
    } catch (err) {
      if (err instanceof URIError) return null;
      throw err;
    }
    let answer;
    try {
      answer = this.ctx.authority.resolveSerialised(handle);
    } catch (err) {
      // Errors are answered by the full application, with its error mapping.
      if (err instanceof IdnsError) return null;
      throw err;
    }
    const status = answer.status === 'denial' ? 404 : 200;
    let tally = this.tallies.get(answer.status);
    if (tally === undefined) {
      tally = this.ctx.metrics.tally({ route: ROUTE, method: 'GET', status: String(status) }, { role: 'authoritative', outcome: answer.status });
      this.tallies.set(answer.status, tally);
    }
    return {
      zone: answer.zone,
      version: answer.version,
      builtAt: now,
      status,
      tally,
      outcome: answer.status,
      body: answer.body,
      etag: answerEtag(answer),
      maxAge: answer.ttl,
    };
  }
}
