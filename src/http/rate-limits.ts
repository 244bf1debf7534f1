import type { IncomingMessage } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import type { Clock } from '../clock.js';
import type { Bucket } from '../config.js';
import { IdnsError } from '../errors.js';
import { AddressSet, normalAddress, parseAddress } from '../resolver/address-bytes.js';
import type { RateLimitConfig } from '../config.js';

/**
 * A table of token buckets keyed by client address, handle or zone, in a bounded LRU map: an attacker
 * with many addresses can only push old entries out (which resets those clients' buckets to full,
 * erring on the side of serving), never grow the table.
 */
export class BucketTable {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly bucket: Bucket,
    private readonly clock: Clock,
    private readonly maxKeys: number,
  ) {}

  /** Takes `cost` tokens for `key`, or throws rate_limited with the seconds to wait. */
  take(key: string, cost = 1): void {
    const wait = this.tryTake(key, cost);
    if (wait > 0) {
      throw new IdnsError('rate_limited', `too many requests; retry in ${wait} s`, { details: { retryAfter: wait } });
    }
  }

  /** Seconds until `key` has a whole token again (0: it has one now); takes nothing. */
  blocked(key: string): number {
    const b = this.refill(key);
    return b.tokens >= 1 ? 0 : Math.max(1, Math.ceil((1 - b.tokens) / (this.bucket.rate / this.bucket.per)));
  }

  /** Takes tokens if there are enough; returns 0, or the whole seconds to wait until there would be. */
  tryTake(key: string, cost = 1): number {
    const b = this.refill(key);
    if (b.tokens >= cost) {
      b.tokens -= cost;
      return 0;
    }
    return Math.max(1, Math.ceil((cost - b.tokens) / (this.bucket.rate / this.bucket.per)));
  }

  private refill(key: string): { tokens: number; at: number } {
    const now = this.clock.now();
    const perMs = this.bucket.rate / (this.bucket.per * 1000);
    let b = this.buckets.get(key);
    if (b) {
      this.buckets.delete(key);
      b.tokens = Math.min(this.bucket.burst, b.tokens + (now - b.at) * perMs);
      b.at = now;
    } else {
      b = { tokens: this.bucket.burst, at: now };
    }
    this.buckets.set(key, b);
    if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);
    return b;
  }

  /** Keys tracked (for tests of the bound). */
  get size(): number {
    return this.buckets.size;
  }
}

/** The limiters of one server. */
export class RateLimits {
  readonly lookups: BucketTable;
  readonly writes: BucketTable;
  readonly changes: BucketTable;
  readonly inviteFailures: BucketTable;
  private readonly proxies: AddressSet;

  constructor(
    readonly config: RateLimitConfig,
    clock: Clock,
  ) {
    this.proxies = new AddressSet(config.trustedProxies);
    this.lookups = new BucketTable(config.lookups, clock, config.maxKeys);
    this.writes = new BucketTable(config.writes, clock, config.maxKeys);
    this.changes = new BucketTable(config.changesPerHandle, clock, config.maxKeys);
    this.inviteFailures = new BucketTable(config.inviteFailuresPerZone, clock, config.maxKeys);
  }

  /**
   * Charges one request to its client's bucket in `table`: the fast paths (src/http/fast/) and the
   * application's middleware both call this. Throws rate_limited when the bucket is empty.
   */
  charge(table: ClientTable, key: string): void {
    if (this.config.enabled) this[table].take(key, 1);
  }

  /** Marks a request a fast path charged and then hands to the application, which must not charge it again. */
  handedOver(req: IncomingMessage): void {
    if (this.config.enabled) charged.add(req);
  }

  /**
   * The limit key of a request's client: the one key function of the application and the fast paths.
   * Its socket's address, or, when that is a trusted proxy (`rateLimits.trustedProxies`), the address
   * that proxy names in `X-Forwarded-For`: read right to left (each proxy appends the address it saw),
   * skipping trusted proxies; a malformed or overlong header counts as the proxy itself.
   */
  keyOf(req: IncomingMessage): string {
    return clientKeyOf(this.addressOf(req));
  }

  /** The address of a request's client (keyOf's, before IPv6 clients are grouped by /64): what the request log shows. */
  addressOf(req: IncomingMessage): string {
    const remote = normalAddress(req.socket.remoteAddress ?? '');
    if (!this.proxies.has(remote)) return remote;
    const header = req.headers['x-forwarded-for'];
    const text = Array.isArray(header) ? header.join(',') : header;
    if (text === undefined || text.length > MAX_FORWARDED_CHARS) return remote;
    const hops = text.split(',');
    let client = remote;
    for (let i = hops.length - 1; i >= 0 && hops.length - i <= MAX_FORWARDED_HOPS; i--) {
      const hop = normalAddress(hops[i]!.trim());
      if (parseAddress(hop) === undefined) break;
      client = hop;
      if (!this.proxies.has(hop)) break;
    }
    return client;
  }

  /** keyOf for a hono context; requests made in-process (app.request in tests) share one bucket. */
  keyOfContext(c: Context): string {
    const req = incomingOf(c);
    return req === undefined ? 'local' : this.keyOf(req);
  }

  /** addressOf for a hono context ('local' for a request made in-process). */
  addressOfContext(c: Context): string {
    const req = incomingOf(c);
    return req === undefined ? 'local' : this.addressOf(req);
  }

  /** Middleware charging a table per client address (the same charge as the fast paths'). */
  perClient(table: ClientTable): MiddlewareHandler {
    const limits = this;
    const rateLimit: MiddlewareHandler = async (c, next) => {
      if (limits.config.enabled) {
        const req = incomingOf(c);
        if (req === undefined || !charged.has(req)) limits.charge(table, limits.keyOfContext(c));
      }
      await next();
    };
    // Named by its table: the fast paths' startup check (src/http/fast/routes.ts) compares chains by name.
    Object.defineProperty(rateLimit, 'name', { value: `rateLimit:${table}` });
    return rateLimit;
  }
}

/** The per-client tables. */
export type ClientTable = 'lookups' | 'writes';

/** Requests already charged to their client (by a fast path that then handed them to the application). */
const charged = new WeakSet<IncomingMessage>();

/** The node request under a hono context, or undefined for one made in-process (app.request in tests). */
function incomingOf(c: Context): IncomingMessage | undefined {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
}

/** Longest X-Forwarded-For read, and most hops of it looked at: a client may send one of any length. */
const MAX_FORWARDED_CHARS = 2048;
const MAX_FORWARDED_HOPS = 16;

/**
 * The limit key of a client address. IPv6 clients are grouped by /64, the block one subscriber usually
 * gets, so one client cannot multiply its allowance by rotating addresses within it.
 */
export function clientKeyOf(address: string): string {
  address = normalAddress(address);
  if (!address.includes(':')) return address;
  // On the parsed bytes (address-policy.ts), not the text: `2001:db8::1` and `2001:db8:0:0:1::1` share a /64.
  const bytes = parseAddress(address);
  if (bytes === undefined || bytes.length !== 16) return address;
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return `${groups.join(':')}::/64`;
}
