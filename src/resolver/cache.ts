/** One cached value with its freshness bounds (milliseconds since the epoch). */
export interface CacheEntry<V> {
  value: V;
  /** Fresh until this time. */
  expiresAt: number;
  /** May be served as stale (RFC 8767) until this time, never past the signatures' expiry. */
  staleUntil: number;
  /** The TTL it was stored with, ms, to tell when it is near expiry (prefetch). */
  ttlMs: number;
  hits: number;
  /** When its place in the LRU order was last refreshed, ms. */
  touchedAt: number;
}

/** An entry's place in the LRU order is refreshed at most this often, ms. */
const TOUCH_MS = 1000;

/**
 * A bounded LRU map of cache entries. A Map keeps insertion order, so re-inserting on a hit makes the
 * first key the least recently used; eviction drops it. The order is kept to the second (TOUCH_MS),
 * which spares a hot entry two map updates on every hit. Entries past `staleUntil` are dropped when seen.
 */
export class LruCache<V> {
  private readonly map = new Map<string, CacheEntry<V>>();

  constructor(private readonly maxEntries: number) {
    if (!(maxEntries >= 1)) throw new Error('cache size must be at least 1');
  }

  /** The entry, fresh or stale, or undefined; counts a hit and marks it recently used. */
  get(key: string, now: number): CacheEntry<V> | undefined {
    const entry = this.map.get(key);
    if (!entry) return undefined;
    if (now >= entry.staleUntil) {
      this.map.delete(key);
      return undefined;
    }
    entry.hits += 1;
    if (now - entry.touchedAt >= TOUCH_MS) {
      entry.touchedAt = now;
      this.map.delete(key);
      this.map.set(key, entry);
    }
    return entry;
  }

  /** The entry, fresh or stale, or undefined, without counting a hit or marking it used. */
  peek(key: string, now: number): CacheEntry<V> | undefined {
    const entry = this.map.get(key);
    return entry && now < entry.staleUntil ? entry : undefined;
  }

  /** Stores a value; evicts the least recently used entry when full. */
  set(key: string, value: V, now: number, ttlMs: number, staleMs: number, hardLimit: number): void {
    const expiresAt = Math.min(now + ttlMs, hardLimit);
    const entry: CacheEntry<V> = { value, expiresAt, staleUntil: Math.min(expiresAt + staleMs, hardLimit), ttlMs, hits: 0, touchedAt: now };
    this.map.delete(key);
    this.map.set(key, entry);
    if (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
    }
  }

  /** Removes an entry. */
  delete(key: string): void {
    this.map.delete(key);
  }

  /** Number of entries. */
  get size(): number {
    return this.map.size;
  }

  /** Drops everything. */
  clear(): void {
    this.map.clear();
  }
}
