/**
 * One cached value with its freshness bounds. Its times are milliseconds after the cache's base time (see
 * LruCache: `freshFor` gives the time left), small integers where milliseconds since the epoch are not:
 * V8 boxes those as heap numbers, 16 bytes each (bench target 8).
 */
export interface CacheEntry<V> {
  /**
   * The key it was stored under: a move to the back re-inserts the entry under this string, not the
   * caller's equal one, so that the map and the value (a resolution's `handle` is its key) keep holding one string.
   */
  key: string;
  value: V;
  /** Fresh until this time (after the base). */
  expires: number;
  /** May be served as stale (RFC 8767) until this time (after the base), never past the signatures' expiry. */
  staleEnd: number;
  /** The TTL it was stored with, ms, to tell when it is near expiry (prefetch). */
  ttlMs: number;
  hits: number;
  /** Read since it was last placed at the back of the order: it gets a second chance before eviction. */
  used: boolean;
  /** Estimated bytes the entry holds alone (Weigher.own), its shared parts apart. */
  bytes: number;
}

/** Used entries an eviction moves to the back at most, before it takes the oldest used or not (a bounded pause). */
const SECOND_CHANCES = 32;
/**
 * When the time since the base passes this (about 12 days), the base moves to now and every entry's
 * times with it: they stay small integers (a V8 small integer holds ±2^31 here).
 */
const REBASE_MS = 2 ** 30;

/** How the cache weighs its values (estimates of the memory they hold). */
export interface Weigher<V> {
  /** Bytes the value and its cache entry hold alone, shared parts excluded. */
  own(value: V): number;
  /** Objects the value shares with other values: each is counted once, however many entries hold it. */
  shared(value: V): readonly object[];
  /** Bytes of one shared part (asked once per part while some entry holds it). */
  sharedBytes(part: object): number;
}

/** Size bounds of an LruCache. */
export interface CacheLimits {
  maxEntries: number;
  /** Most bytes held by all entries together, shared parts counted once. Default unbounded. */
  maxBytes?: number;
  /** A value weighing more than this (its shared parts included) is not stored. Default unbounded. */
  maxEntryBytes?: number;
}

const unweighed: Weigher<unknown> = { own: () => 0, shared: () => [], sharedBytes: () => 0 };

/**
 * A bounded map of cache entries, evicting as CLOCK does (second chance), an approximation of least
 * recently used: a Map keeps insertion order; a hit only marks its entry used; an eviction looks at the
 * oldest entry, moves it to the back (unmarked) if it was used since it was placed there, and takes the
 * first one that was not (after SECOND_CHANCES moves, the oldest whatever it is). A hit makes no map
 * update: moving each hit to the back, even once a second, left a deleted slot in the Map's table per
 * move, which doubled the table of a large cache (bench target 8). Entries past their stale window are dropped when seen.
 * Bounded by entries and by bytes: the weigher's estimate of each entry, with the parts entries share
 * (a zone's proof chain) counted once while any entry holds them.
 */
export class LruCache<V> {
  private readonly map = new Map<string, CacheEntry<V>>();
  /** Shared parts held by some entry: how many entries hold each, and its bytes. */
  private readonly parts = new Map<object, { refs: number; bytes: number }>();
  private total = 0;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly maxEntryBytes: number;
  /** The time entries' times count from, ms since the epoch: the first `now` the cache was given, then moved every REBASE_MS. */
  private base = NaN;

  constructor(
    limits: number | CacheLimits,
    private readonly weigher: Weigher<V> = unweighed as Weigher<V>,
  ) {
    const l = typeof limits === 'number' ? { maxEntries: limits } : limits;
    if (!(l.maxEntries >= 1)) throw new Error('cache size must be at least 1');
    this.maxEntries = l.maxEntries;
    this.maxBytes = l.maxBytes ?? Infinity;
    this.maxEntryBytes = Math.min(l.maxEntryBytes ?? Infinity, this.maxBytes);
  }

  /** The entry, fresh or stale, or undefined; counts a hit and marks it recently used. */
  get(key: string, now: number): CacheEntry<V> | undefined {
    const entry = this.map.get(key);
    if (!entry) return undefined;
    const t = this.since(now);
    if (t >= entry.staleEnd) {
      this.remove(key, entry);
      return undefined;
    }
    entry.hits += 1;
    entry.used = true;
    return entry;
  }

  /** The entry, fresh or stale, or undefined, without counting a hit or marking it used. */
  peek(key: string, now: number): CacheEntry<V> | undefined {
    const entry = this.map.get(key);
    return entry && this.since(now) < entry.staleEnd ? entry : undefined;
  }

  /** Milliseconds an entry stays fresh after `now`: zero or less once it has expired (it may still be served stale). */
  freshFor(entry: CacheEntry<V>, now: number): number {
    return entry.expires - this.since(now);
  }

  /** Milliseconds an entry may still be served after `now`, fresh or stale. */
  usableFor(entry: CacheEntry<V>, now: number): number {
    return entry.staleEnd - this.since(now);
  }

  /**
   * Stores a value; evicts the least recently used entries while over either bound. A value heavier than
   * `maxEntryBytes` is not stored, and any older entry under its key is dropped (it is superseded).
   * Returns whether the value was stored.
   */
  set(key: string, value: V, now: number, ttlMs: number, staleMs: number, hardLimit: number): boolean {
    const own = this.weigher.own(value);
    const shared = this.weigher.shared(value);
    let weight = own;
    for (const part of shared) weight += this.parts.get(part)?.bytes ?? this.weigher.sharedBytes(part);
    const old = this.map.get(key);
    if (old) this.remove(key, old);
    if (weight > this.maxEntryBytes) return false;
    const t = this.since(now);
    const limit = hardLimit - this.base;
    const expires = Math.min(t + ttlMs, limit);
    const entry: CacheEntry<V> = { key, value, expires, staleEnd: Math.min(expires + staleMs, limit), ttlMs, hits: 0, used: false, bytes: own };
    this.map.set(key, entry);
    this.total += own;
    for (const part of shared) {
      const held = this.parts.get(part);
      if (held) held.refs += 1;
      else {
        const bytes = this.weigher.sharedBytes(part);
        this.parts.set(part, { refs: 1, bytes });
        this.total += bytes;
      }
    }
    while (this.map.size > this.maxEntries || this.total > this.maxBytes) this.evictOne(entry);
    return true;
  }

  /** Weighs an entry again after its value grew in place (a zone cut learning more servers); evicts if over. */
  reweigh(key: string): void {
    const entry = this.map.get(key);
    if (!entry) return;
    const own = this.weigher.own(entry.value);
    this.total += own - entry.bytes;
    entry.bytes = own;
    while (this.map.size > 1 && this.total > this.maxBytes) this.evictOne(null);
  }

  /** Removes an entry. */
  delete(key: string): void {
    const entry = this.map.get(key);
    if (entry) this.remove(key, entry);
  }

  /** Number of entries. */
  get size(): number {
    return this.map.size;
  }

  /** Estimated bytes held by the entries, shared parts counted once. */
  get bytes(): number {
    return this.total;
  }

  /** Drops everything. */
  clear(): void {
    this.map.clear();
    this.parts.clear();
    this.total = 0;
  }

  /**
   * Evicts one entry: the oldest not used since it was placed, giving the used ones before it a second
   * chance (at most SECOND_CHANCES), and never `keep` (the entry being stored) while another is left.
   */
  private evictOne(keep: CacheEntry<V> | null): void {
    for (let moved = 0; ; moved++) {
      const oldest = this.map.values().next().value as CacheEntry<V>;
      if (this.map.size === 1 || (oldest !== keep && (!oldest.used || moved >= SECOND_CHANCES))) {
        this.remove(oldest.key, oldest);
        return;
      }
      oldest.used = false;
      this.map.delete(oldest.key);
      this.map.set(oldest.key, oldest);
    }
  }

  /** `now` after the base (set at the first call, moved when far behind). */
  private since(now: number): number {
    if (!(now - this.base < REBASE_MS)) this.rebase(now);
    return now - this.base;
  }

  /** Moves the base to `now` (the first time, or every REBASE_MS): every entry's times move with it, O(entries). */
  private rebase(now: number): void {
    if (Number.isNaN(this.base)) {
      this.base = now;
      return;
    }
    const by = now - this.base;
    for (const entry of this.map.values()) {
      entry.expires -= by;
      entry.staleEnd -= by;
    }
    this.base = now;
  }

  private remove(key: string, entry: CacheEntry<V>): void {
    this.map.delete(key);
    this.total -= entry.bytes;
    for (const part of this.weigher.shared(entry.value)) {
      const held = this.parts.get(part)!;
      if (--held.refs === 0) {
        this.parts.delete(part);
        this.total -= held.bytes;
      }
    }
  }
}
