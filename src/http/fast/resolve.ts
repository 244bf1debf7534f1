import type { IncomingMessage } from 'node:http';
import type { AppContext } from '../../context.js';
import type { BoundLog } from '../../authority/zone-logs.js';
import { isIdnsError } from '../../errors.js';
import type { Tally } from '../metrics.js';
import { serialOf } from '../../records/serial.js';
import { answerEtag, boundBody, boundEtag, resolveReply } from '../routes/resolve.js';
import type { FastEndpoint, FastReply, RequestHead } from './dispatch.js';
import { RecentlyAsked } from './recently-asked.js';

interface Cached {
  zone: string;
  version: number;
  /** The zone's checkpoint it was built with: cosignatures change it without a new version. */
  checkpoint: string;
  builtAt: number;
  outcome: string;
  status: 'answer' | 'denial' | 'referral';
  ttl: number;
  etag: string;
  /** The unconditional reply. */
  reply: FastReply;
}

const ROUTE = '/v1/resolve/:handle';
/** Longest a built answer is reused, ms: its TTL cap (`exp` − now) moves with time. */
const REUSE_MS = 1000;
/** Most answers kept; the oldest go first. */
const MAX_ENTRIES = 10_000;
/**
 * An answer is kept when its URL was asked for among this many answers before. Each answer kept lives
 * long enough to reach the old generation: under random queries over a large zone, those kept by
 * chance (1 in 12 at a million handles when a slot's mark alone stood for a URL, 1 in 200 with a window
 * of 10,000, 1 in 900 with this one) brought major collections every few seconds and slower scavenges.
 * A handle asked for often is still asked twice within it.
 */
const ADMIT_WINDOW = 2_000;

/**
 * `GET /v1/resolve/{handle}` on the fast path: the request a busy server answers most, and with
 * `withLog` the same bound to the zone's log (`?log=1`, which witnessed resolvers ask). Answers are
 * reused (body, ETag, reply) until the zone's version or checkpoint changes or a second passes; the
 * status and headers come from the route's own rule (routes/resolve.ts `resolveReply`, `boundEtag`),
 * conditional requests included. Any other query string (`?zone=`) goes to the application.
 */
export class ResolveEndpoint implements FastEndpoint {
  private readonly cache = new Map<string, Cached>();
  /** URLs answered recently without being kept. */
  private readonly asked = new RecentlyAsked(ADMIT_WINDOW);
  /** The request and query counts, per status and outcome. */
  private readonly tallies = new Map<number, Map<string, Tally>>();

  constructor(
    private readonly ctx: AppContext,
    private readonly withLog: boolean,
  ) {}

  /** The reply to a handle (the path's raw segment), or null to leave it to the application. */
  answer(_req: IncomingMessage, param: string, head: RequestHead): FastReply | null {
    const now = this.ctx.clock.now();
    const cached = this.cache.get(param);
    let hit = cached;
    if (hit) {
      const zone = this.ctx.zones.cachedZone(hit.zone);
      if (!zone || zone.version !== hit.version || zone.checkpoint !== hit.checkpoint || now - hit.builtAt > REUSE_MS || this.ctx.zones.unavailable(zone)) {
        hit = undefined;
      }
    }
    if (!hit) {
      const built = this.build(param, now);
      if (!built) return null;
      hit = built;
      this.admit(param, built, cached !== undefined);
    }
    if (head.ifNoneMatch === undefined) return hit.reply;
    const r = resolveReply(hit.status, hit.ttl, hit.etag, head.ifNoneMatch);
    if (r.status !== 304) return hit.reply;
    return { status: 304, headers: r.headers, body: null, tally: this.tally(304, hit.outcome), facts: hit.reply.facts };
  }

  /**
   * Keeps an answer for reuse only when its URL was asked for recently (or was kept before): under
   * queries spread over a large zone most answers are never asked for again within REUSE_MS, and
   * keeping each one would cost more (map churn, old-generation garbage) than it saves. "Asked for
   * recently" is among the last ADMIT_WINDOW URLs answered (RecentlyAsked: no allocation per query).
   */
  private admit(key: string, answer: Cached, wasCached: boolean): void {
    if (!wasCached && !this.asked.ask(key)) return;
    if (this.cache.size >= MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value as string);
    // A body of its own: a slice of Buffer's shared pool would keep the whole pool block alive.
    const given = answer.reply.body as Buffer;
    const body = Buffer.allocUnsafeSlow(given.length);
    given.copy(body);
    this.cache.set(key, { ...answer, reply: { ...answer.reply, body } });
  }

  private tally(status: number, outcome: string): Tally {
    // Per status, then per outcome: no key to build on each answer built.
    let byOutcome = this.tallies.get(status);
    if (byOutcome === undefined) this.tallies.set(status, (byOutcome = new Map()));
    let tally = byOutcome.get(outcome);
    if (tally === undefined) {
      tally = this.ctx.metrics.tally({ route: ROUTE, method: 'GET', status: String(status) }, { role: 'authoritative', outcome });
      byOutcome.set(outcome, tally);
    }
    return tally;
  }

  /** Builds the answer; errors (an invalid handle, a zone not loaded) are thrown to the error mapping. */
  private build(param: string, now: number): Cached | null {
    let handle = param;
    if (param.includes('%')) {
      try {
        handle = decodeURIComponent(param);
      } catch (err) {
        // What the router makes of a malformed escape is the application's to say.
        if (err instanceof URIError) return null;
        throw err;
      }
    }
    const answer = this.ctx.authority.resolveSerialised(handle, this.withLog);
    let etag = answerEtag(answer.zoneRecord, answer.recordSignature, answer.ttl);
    let body = answer.body;
    // Read in the same turn as the answer: the checkpoint of the version it was given from.
    let log: BoundLog | null = null;
    if (this.withLog) {
      try {
        log = this.ctx.zoneLogs.bindLeaf(answer.zone, serialOf(answer.version), answer.status === 'answer' ? answer.leaf : undefined, answer.mapped!);
      } catch (err) {
        // A version committed elsewhere that the cached rows do not show yet: the application's route
        // reads the answer again (resolveBound).
        if (isIdnsError(err, 'zone_unavailable')) return null;
        throw err;
      }
    }
    if (log !== null) {
      etag = boundEtag(etag, log);
      body = boundBody(body, log);
    }
    const r = resolveReply(answer.status, answer.ttl, etag, undefined);
    return {
      zone: answer.zone,
      version: answer.version,
      checkpoint: this.ctx.zones.cachedZone(answer.zone)?.checkpoint ?? '',
      builtAt: now,
      outcome: answer.status,
      status: answer.status,
      ttl: answer.ttl,
      etag,
      reply: {
        status: r.status,
        headers: r.headers,
        body,
        tally: this.tally(r.status, answer.status),
        facts: { role: 'authoritative', zone: answer.zone, outcome: answer.status },
      },
    };
  }
}
