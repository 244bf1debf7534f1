import type { Dispatcher } from 'undici';
import type { Clock } from '../clock.js';

/** How to build a resolver. Each option is documented with its default. */
export interface ResolverOptions {
  /** Trust anchors: zone name → thumbprints of keys trusted for it (normally just the root's). */
  trustAnchors: Record<string, string[]> | ReadonlyMap<string, readonly string[]>;
  /** Iterative mode: URLs of the servers of the anchored zone (the root servers). */
  rootServers?: string[];
  /** Forwarding mode: upstream resolvers asked instead of walking (their proofs are still verified here). */
  forwarders?: string[];
  /** Reach http URLs and loopback/private addresses (tests, local demos). Default false. */
  allowPrivate?: boolean;
  clock?: Clock;
  cache?: {
    /** Most entries kept (answers, denials and zone cuts together). Default 100,000. */
    maxEntries?: number;
    /** Most bytes the entries hold together (estimated; shared proof chains counted once). Default 256,000,000. */
    maxBytes?: number;
    /** An answer, denial or zone cut weighing more is returned but not cached, bytes. Default 131,072. */
    maxEntryBytes?: number;
    /** RFC 8767: how long past expiry an entry may be served when every server fails, seconds. Default 86,400. */
    serveStaleSeconds?: number;
    /** Serve an entry this long past expiry at once while refreshing it in the background, seconds. Default 0 (off). */
    staleWhileRevalidateSeconds?: number;
    /** Refresh entries hit at least twice when less than 10% of their TTL is left. Default true. */
    prefetch?: boolean;
  };
  limits?: {
    /** Time limit of one request to one server, ms. Default 3,000. */
    requestTimeoutMs?: number;
    /** Time limit of one whole lookup, ms. Default 10,000. */
    lookupBudgetMs?: number;
    /** Most referrals followed in one lookup. Default 16. */
    maxReferrals?: number;
    /** Most requests to servers in one lookup. Default 32. */
    maxQueries?: number;
    /** Largest response body read from a server, bytes. Default 262,144. */
    maxResponseBytes?: number;
  };
  /** The undici dispatcher for outbound requests (tests, custom TLS). Default: a keep-alive agent. */
  dispatcher?: Dispatcher;
  /** CA certificates (PEM) to trust for https servers, instead of Node's default set. */
  ca?: string[];
  /** Called with errors of background work (prefetch, stale-while-revalidate refreshes). */
  onBackgroundError?: (err: unknown) => void;
  /** Hooks for metrics: each request to a server (seconds, success), each cache lookup (hit, miss, stale). */
  events?: {
    upstream?: (seconds: number, ok: boolean) => void;
    cache?: (result: 'hit' | 'miss' | 'stale') => void;
  };
}

/** Default bound of a resolver cache's memory, bytes (256 MB). */
export const DEFAULT_CACHE_BYTES = 256_000_000;
/** Default largest cache entry, bytes: a proof of a few zones is a few KiB; 128 KiB leaves room for deep ones. */
export const DEFAULT_CACHE_ENTRY_BYTES = 128 * 1024;

/** The options with every default filled in. */
export interface ResolvedOptions {
  anchors: Map<string, string[]>;
  rootServers: string[];
  forwarders: string[];
  allowPrivate: boolean;
  maxEntries: number;
  maxBytes: number;
  maxEntryBytes: number;
  serveStaleMs: number;
  staleWhileRevalidateMs: number;
  prefetch: boolean;
  requestTimeoutMs: number;
  lookupBudgetMs: number;
  maxReferrals: number;
  maxQueries: number;
  maxResponseBytes: number;
}

/** Fills in defaults and checks the options; misuse throws at once. */
export function resolveOptions(o: ResolverOptions): ResolvedOptions {
  const anchors = new Map<string, string[]>(
    o.trustAnchors instanceof Map ? [...o.trustAnchors].map(([k, v]) => [k, [...v]]) : Object.entries(o.trustAnchors as Record<string, string[]>),
  );
  if (anchors.size === 0) throw new TypeError('createResolver: trustAnchors must name at least one zone');
  const rootServers = o.rootServers ?? [];
  const forwarders = o.forwarders ?? [];
  if (rootServers.length === 0 && forwarders.length === 0) throw new TypeError('createResolver: give rootServers (iterative) or forwarders (forwarding)');
  const positive = (v: number | undefined, d: number, name: string): number => {
    const x = v ?? d;
    if (!Number.isFinite(x) || x < 0) throw new TypeError(`createResolver: ${name} must be a non-negative number`);
    return x;
  };
  const maxBytes = Math.max(1, positive(o.cache?.maxBytes, DEFAULT_CACHE_BYTES, 'cache.maxBytes'));
  const maxEntryBytes = Math.max(1, positive(o.cache?.maxEntryBytes, Math.min(DEFAULT_CACHE_ENTRY_BYTES, maxBytes), 'cache.maxEntryBytes'));
  if (maxEntryBytes > maxBytes) throw new TypeError('createResolver: cache.maxEntryBytes must not exceed cache.maxBytes');
  return {
    anchors,
    rootServers,
    forwarders,
    allowPrivate: o.allowPrivate ?? false,
    maxEntries: Math.max(1, positive(o.cache?.maxEntries, 100_000, 'cache.maxEntries')),
    maxBytes,
    maxEntryBytes,
    serveStaleMs: positive(o.cache?.serveStaleSeconds, 86_400, 'cache.serveStaleSeconds') * 1000,
    staleWhileRevalidateMs: positive(o.cache?.staleWhileRevalidateSeconds, 0, 'cache.staleWhileRevalidateSeconds') * 1000,
    prefetch: o.cache?.prefetch ?? true,
    requestTimeoutMs: positive(o.limits?.requestTimeoutMs, 3_000, 'limits.requestTimeoutMs'),
    lookupBudgetMs: positive(o.limits?.lookupBudgetMs, 10_000, 'limits.lookupBudgetMs'),
    maxReferrals: positive(o.limits?.maxReferrals, 16, 'limits.maxReferrals'),
    maxQueries: positive(o.limits?.maxQueries, 32, 'limits.maxQueries'),
    maxResponseBytes: positive(o.limits?.maxResponseBytes, 256 * 1024, 'limits.maxResponseBytes'),
  };
}
