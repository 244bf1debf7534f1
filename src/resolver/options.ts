import type { Dispatcher } from 'undici';
import type { Clock } from '../clock.js';
import { parseDnsServer, type DnsServer } from '../discovery/dns-server.js';
import { DEFAULT_WITNESS_FRESHNESS_SECONDS, type WitnessPolicy } from '../transparency/witnessed.js';

/** How to build a resolver. Each option is documented with its default. */
export interface ResolverOptions {
  /**
   * Trust anchors: zone name → thumbprints of keys trusted for it (normally just the root's). Without
   * them the resolver finds zones through their DNS and HTTPS publications (`discovery`) and bridges the
   * rest through WebFinger: `createResolver()` works on the internet as it is.
   */
  trustAnchors?: Record<string, string[]> | ReadonlyMap<string, readonly string[]>;
  /** Iterative mode: URLs of the servers of the anchored zone (the root servers). */
  rootServers?: string[];
  /** Forwarding mode: upstream resolvers asked instead of walking (their proofs are still verified here). */
  forwarders?: string[];
  /**
   * Finding zones without a root (docs/protocol.md, section 12): the closest enclosing zone a host's
   * domain publishes in DNS (`_idns` TXT) or on its own HTTPS (`/.well-known/idns`). On by default when
   * no trustAnchors are given; with anchors, tried only for hosts they verifiably do not delegate.
   * `false` turns it off.
   */
  discovery?: boolean | DiscoveryOptions;
  /**
   * Resolve handles whose host publishes no zone by plain WebFinger (RFC 7033), marked
   * `verified: false, source: "webfinger"`. Default: on whenever discovery is.
   */
  webfinger?: boolean;
  /** Reach http URLs and loopback/private addresses (tests, local demos). Default false. */
  allowPrivate?: boolean;
  /**
   * Witnessed answers (docs/protocol.md §13.5, §14): accept an answer, a denial or a referral only when
   * the zone's checkpoint binding it was cosigned by `quorum` of these witnesses (RFC 7638 thumbprints of
   * their keys, as `idns witness show` prints them) within `freshnessSeconds`. Default: none required.
   * `quorum` defaults to every witness given, `freshnessSeconds` to 3,600. Iterative mode only.
   */
  witnesses?: { thumbprints: string[]; quorum?: number; freshnessSeconds?: number };
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

/** How zones are found without a root. */
export interface DiscoveryOptions {
  /**
   * DNS servers (`IP`, `IPv4:PORT` or `[IPv6]:PORT`, port 53 by default) named as validating: their AD flag anchors a
   * publication by DNSSEC. Default: the system's resolvers (/etc/resolv.conf), whose AD flag is not
   * believed, so a TXT publication then needs its HTTPS document to confirm it.
   */
  dnsServers?: string[];
  /**
   * Whether `dnsServers` validate DNSSEC, so that their AD flag is believed. Default true when servers
   * are named (the operator vouches for them), false for the system's resolvers.
   */
  dnsServersValidate?: boolean;
  /** Accept only zones anchored by DNSSEC (no HTTPS anchors, no WebFinger bridge). Default false. */
  requireDnssec?: boolean;
  /** Time limit of one DNS query to one server, ms. Default 2,000. */
  dnsTimeoutMs?: number;
}

/** Default bound of a resolver cache's memory, bytes (256 MB). */
export const DEFAULT_CACHE_BYTES = 256_000_000;
/** Default largest cache entry, bytes: a proof of a few zones is a few KiB; 128 KiB leaves room for deep ones. */
export const DEFAULT_CACHE_ENTRY_BYTES = 128 * 1024;

/** The options with every default filled in. */
export interface ResolvedOptions {
  anchors: Map<string, string[]>;
  /** Null when discovery is off. */
  discovery: { dnsServers: DnsServer[] | null; validating: boolean; requireDnssec: boolean; dnsTimeoutMs: number } | null;
  webfinger: boolean;
  rootServers: string[];
  forwarders: string[];
  allowPrivate: boolean;
  /** The witnesses required, or null. */
  witnesses: WitnessPolicy | null;
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
  const given = o.trustAnchors ?? {};
  const anchors = new Map<string, string[]>(given instanceof Map ? [...given].map(([k, v]) => [k, [...v]]) : Object.entries(given as Record<string, string[]>));
  const rootServers = o.rootServers ?? [];
  const forwarders = o.forwarders ?? [];
  const wantsDiscovery = o.discovery === undefined ? anchors.size === 0 : o.discovery !== false;
  if (anchors.size === 0 && !wantsDiscovery) throw new TypeError('createResolver: give trustAnchors, or leave discovery on');
  if (anchors.size > 0 && rootServers.length === 0 && forwarders.length === 0)
    throw new TypeError('createResolver: give rootServers (iterative) or forwarders (forwarding) with trustAnchors');
  const d = typeof o.discovery === 'object' ? o.discovery : {};
  const discovery = wantsDiscovery
    ? {
        dnsServers: d.dnsServers === undefined ? null : d.dnsServers.map(parseDnsServer),
        validating: d.dnsServers !== undefined && (d.dnsServersValidate ?? true),
        requireDnssec: d.requireDnssec ?? false,
        dnsTimeoutMs: Math.max(1, d.dnsTimeoutMs ?? 2_000),
      }
    : null;
  if (discovery?.dnsServers?.length === 0) throw new TypeError('createResolver: discovery.dnsServers, when given, names at least one server');
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
    discovery,
    witnesses: witnessPolicyOf(o.witnesses),
    // The bridge trusts nothing it can check: requireDnssec rules it out.
    webfinger: discovery !== null && !discovery.requireDnssec && (o.webfinger ?? true),
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

const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

/** The witness policy of the options, checked; null when no witness is required. */
function witnessPolicyOf(w: ResolverOptions['witnesses']): WitnessPolicy | null {
  if (w === undefined) return null;
  const thumbprints = [...new Set(w.thumbprints)];
  if (thumbprints.length === 0 || thumbprints.length > 100 || !thumbprints.every((t) => THUMBPRINT.test(t))) {
    throw new TypeError('createResolver: witnesses.thumbprints are 1 to 100 key thumbprints (43 base64url characters)');
  }
  const quorum = w.quorum ?? thumbprints.length;
  if (!Number.isInteger(quorum) || quorum < 1 || quorum > thumbprints.length)
    throw new TypeError(`createResolver: witnesses.quorum is 1 to ${thumbprints.length}`);
  const freshnessSeconds = w.freshnessSeconds ?? DEFAULT_WITNESS_FRESHNESS_SECONDS;
  if (!Number.isInteger(freshnessSeconds) || freshnessSeconds < 60 || freshnessSeconds > 7 * 86_400) {
    throw new TypeError('createResolver: witnesses.freshnessSeconds is 60 to 604800');
  }
  return { witnesses: thumbprints, quorum, freshnessSeconds };
}
