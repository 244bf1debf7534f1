import { setImmediate as turn } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { epochSeconds, systemClock, type Clock } from '../clock.js';
import { errorFromBody, jsonRequest, type JsonResponse } from '../client/http.js';
import { IdnsError, isIdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import { ancestors, isAtOrBelow, ROOT } from '../names/zone.js';
import { decodeCompact } from '../records/jws.js';
import { noCutOf, verifyDelegation, verifyDenial, verifyHandleRecord, verifyZoneRecord, type VerifiedZone, type VerifyOptions } from '../records/verify.js';
import { assureAllowedUrl, policyAgent } from './address-policy.js';
import { LruCache, type Weigher } from './cache.js';
import { ArrayInterner } from './intern.js';
import { resolveOptions, type ResolvedOptions, type ResolverOptions } from './options.js';
import { verifyProof, type AnchorKind, type Proof, type ProofAnchor, type ProofStep, type Resolution, type TraceStep } from './proof.js';
import { raceSignal } from '../abort.js';
import type { FoundZone, ZoneDiscovery } from '../discovery/discover.js';
import type { DnsClient } from '../discovery/dns-client.js';
import type { BridgedHandle, WebFingerBridge } from '../discovery/webfinger.js';
import { parseHandleReference } from '../names/handle.js';
import { SignatureCache } from '../records/signature-cache.js';
import { verifyRecordHistory, type NumberedEntry } from '../records/history-chain.js';
import { historyZoneOf } from '../records/history-entries.js';
import { HISTORY_RESPONSE_MAX_BYTES, parseEvidence, readLog } from '../records/history-evidence.js';
import type { HandleRecord, ZoneRecord } from '../records/types.js';
import { HistoryBook } from './histories.js';
import { recordPacker, type RecordPacker, type StoredProof, type StoredResolution } from './packed-records.js';
import { ZoneVersions, type ZoneFork } from './zone-versions.js';
import { CheckpointBook, type CheckpointFork } from '../transparency/checkpoint-book.js';
import { keptBinding, verifyAnswerLog } from '../transparency/witnessed.js';
import { historyKey } from '../records/history-key.js';
import { ServerSelector } from './servers.js';
import { cutBytes, resolutionBytes, stepsBytes, traceBytes } from './weigh.js';

/** A verified lookup result: the resolution with TTL left, staleness and how its trust was rooted. */
export interface VerifiedResult extends Resolution {
  verified: true;
  /**
   * True when every zone of the proof was bound to a checkpoint cosigned by the witnesses the resolver
   * requires (`witnesses` option), within their freshness bound; false without witnesses required or for
   * a stale answer (the no-rollback rule on zone serials holds either way, docs/protocol.md §10.1).
   */
  witnessed: boolean;
  /** `configured`: a trust anchor given to the resolver; `dnssec`/`https`: a publication found by discovery. */
  anchor: AnchorKind;
  /** True when served from expired cache because the zone's servers could not be reached (RFC 8767). */
  stale: boolean;
}

/** A handle whose host publishes no zone, resolved by plain WebFinger: nothing about it is verified. */
export interface BridgedResult extends BridgedHandle {
  status: 'found';
  /** No zone answered: the host publishes none. */
  zone: null;
  stale: boolean;
}

/** A lookup's result: verified (with its proof), or bridged from WebFinger (`verified: false`). */
export type LookupResult = VerifiedResult | BridgedResult;

/** Per-call options of lookups. */
export interface LookupOptions {
  /** Abandons this call (its error is the signal's reason); a lookup other calls share goes on. */
  signal?: AbortSignal;
  /** Skips the cache: asks the zone's servers (or the WebFinger host) again. */
  forceRefresh?: boolean;
}

/** The part of a handle's record a microblog server needs. */
export type ResolvedHandle = {
  handle: string;
  endpoint: string;
  /** The handle's public keys (none from the WebFinger bridge: take them from the actor document). */
  keys: NonNullable<Resolution['keys']>;
  ttl: number;
  stale: boolean;
  /** Owner-signed (verified results only): the profile page, other names of the account, and a move. A move is reported, never followed. */
  profile?: string;
  alsoKnownAs?: string[];
  movedTo?: string;
} & (
  | {
      verified: true;
      /** Cosigned by the required witnesses, fresh (see VerifiedResult). */
      witnessed: boolean;
      anchor: AnchorKind;
      zone: string;
      /** The id of the entry that began the handle's current registration: a new one means the handle was deleted and registered again, perhaps by someone else. */
      genesis: string;
      /** True while the handle's state rests on an operator entry (an import, a court-ordered transfer), with no change of its owner since. */
      operatorAsserted: boolean;
    }
  | { verified: false; witnessed: false; source: 'webfinger'; zone: null; aliases: string[]; profile?: string }
);

/** One result of lookupMany: a lookup result or the typed error of that handle. */
export type BatchResult = { handle: string; result: LookupResult } | { handle: string; error: IdnsError };

/**
 * @internal A verified result as the resolver keeps it, its proof packed (packed-records.ts): what the HTTP layer
 * serialises (lookup-wire.ts, which unpacks as it writes) without unpacking it into strings first.
 */
export type StoredResult = Omit<VerifiedResult, 'proof'> & { proof: StoredProof };
/** A lookup's result with its proof packed, or a bridged one. */
export type StoredLookupResult = StoredResult | BridgedResult;
/** One result of lookupManyStored. */
export type StoredBatchResult = { handle: string; result: StoredLookupResult } | { handle: string; error: IdnsError };

/** One result of resolveMany: the handle's record, or its typed error (handle_not_found when it does not exist, as resolve throws). */
export type ResolveManyResult = { handle: string; result: ResolvedHandle } | { handle: string; error: IdnsError };

/** Most bytes of JSON each of the proof-chain and trace interners remembers (their arrays besides). */
const INTERNER_BYTES = 8 * 1024 * 1024;

/** Zones whose newest version a resolver remembers (~100 bytes each; a zone record is kept for a fork's evidence only). */
const MAX_ZONE_VERSIONS = 10_000;

/** Most handles in one batch. */
export const MAX_BATCH = 100;

/** A zone cut the resolver knows: where to ask, which keys to trust, and the proof that leads there. */
interface ZoneCut {
  name: string;
  servers: string[];
  trusted: readonly string[];
  /** Proof steps from the anchor down to (not including) this zone. */
  prefix: readonly ProofStep[];
  /** How the proof's first zone was anchored when discovery found it; null for a configured trust anchor. */
  anchor: ProofAnchor | null;
  /** Earliest signature expiry (seconds) of the records in `prefix` and the delegation: the cut is no good after it. */
  exp: number;
}

/**
 * What the cache holds: a handle's resolution under the handle itself, a zone cut under `z:` + its name
 * (a zone name has no `@`, so the two kinds of key never meet). No wrapper object: at 100,000 handles
 * each object an entry needs costs megabytes.
 */
type Cached = StoredResolution | ZoneCut;

const isCut = (v: Cached): v is ZoneCut => 'prefix' in v;

/**
 * What a cache entry weighs: a resolution its own record, gaps, endpoint and keys, with the proof chain
 * and trace it shares with other resolutions counted once; a zone cut everything it holds.
 */
const weigher: Weigher<Cached> = {
  own: (v) => (isCut(v) ? cutBytes(v) : resolutionBytes(v)),
  shared: (v) => (isCut(v) ? [] : v.trace ? [v.proof.steps, v.trace] : [v.proof.steps]),
  sharedBytes: (part) => {
    const items = part as readonly (ProofStep | TraceStep)[];
    return items.length > 0 && 'zoneRecord' in items[0]! ? stepsBytes(items as readonly ProofStep[]) : traceBytes(items as readonly TraceStep[]);
  },
};

/** The work one lookup may still do. */
class Budget {
  private queries: number;
  readonly deadline: number;
  constructor(
    private readonly clock: Clock,
    opts: ResolvedOptions,
  ) {
    this.queries = opts.maxQueries;
    this.deadline = clock.now() + opts.lookupBudgetMs;
  }
  /** Takes one upstream request from the budget, or throws when the lookup has used its share. */
  spend(): number {
    const left = this.deadline - this.clock.now();
    if (left <= 0) throw new IdnsError('budget_exceeded', 'the lookup ran out of time');
    if (this.queries-- <= 0) throw new IdnsError('budget_exceeded', 'the lookup made as many requests as it may');
    return left;
  }
}

/**
 * The work, or budget_exceeded when the lookup's time runs out first. Discovery and the bridge are
 * shared between lookups and bounded by their own limits (DNS and HTTPS timeouts); this holds each
 * lookup to its own budget all the same.
 */
async function within<T>(budget: Budget, clock: Clock, work: Promise<T>): Promise<T> {
  const left = budget.deadline - clock.now();
  if (left <= 0) throw new IdnsError('budget_exceeded', 'the lookup ran out of time');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new IdnsError('budget_exceeded', 'the lookup ran out of time finding or asking the zone')), left);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A referral from `zone` to `child` goes strictly deeper towards `host`: this rules out loops and sideways jumps. */
function leadsDeeper(child: string, zone: string, host: string): boolean {
  return child !== zone && isAtOrBelow(child, zone) && isAtOrBelow(host, child);
}

/** A server's reply to `GET /v1/resolve/{handle}?zone=Z` as checkZoneReply leaves it: an answer's history not yet verified. */
type CheckedAnswer = { status: 'answer'; zone: VerifiedZone; record: string; evidence: NumberedEntry[]; parsed: HandleRecord };
type CheckedReply = CheckedAnswer | DistributiveOmit<Exclude<ZoneReply, { status: 'answer' }>, 'server' | 'rttMs'>;

/** A walk's request sent ahead to the next zone's first server while a referral is verified. */
interface Ahead {
  next: { zone: string; server: string; started: number; response: Promise<JsonResponse> } | null;
}

/** A server's verified reply to `GET /v1/resolve/{handle}?zone=Z`. */
type ZoneReply = (
  | { status: 'answer'; zone: VerifiedZone; record: string; history: readonly NumberedEntry[] }
  | { status: 'denial'; zone: VerifiedZone; record: string; noCut?: string[] }
  | { status: 'referral'; zone: VerifiedZone; record: string; child: ZoneCut }
) & {
  server: string;
  rttMs: number;
  /** With witnesses required: until when the reply's checkpoint is fresh enough, epoch s, and its binding as a proof keeps it. */
  bound?: { freshUntil: number; binding: ReturnType<typeof keptBinding> };
};

/**
 * The caching, verifying resolver: walks the hierarchy from its trust anchors (or asks upstream resolvers
 * and checks their proofs), verifies every signature, and caches answers, denials and zone cuts.
 */
export class Resolver {
  readonly options: ResolvedOptions;
  private readonly clock: Clock;
  private readonly cache: LruCache<Cached>;
  private readonly inflight = new Map<string, Promise<StoredResolution | BridgedHandle>>();
  private readonly selector: ServerSelector;
  private readonly dispatcher: Dispatcher;
  private readonly ownsDispatcher: boolean;
  private readonly onBackgroundError: (err: unknown) => void;
  private readonly events: NonNullable<ResolverOptions['events']>;
  /** Requests sent to servers, for metrics and tests. */
  upstreamRequests = 0;
  /** Signatures this resolver has checked: each walk re-checks its whole proof, and a zone's records recur. */
  private readonly signatures = new SignatureCache();
  /** The proof chains and traces the cached resolutions share. */
  private readonly chains: ArrayInterner<ProofStep>;
  private readonly traces: ArrayInterner<TraceStep>;
  /** allowPrivate is also the verifier's development mode: loopback endpoints pass only with it. */
  private readonly verifyOptions: VerifyOptions;
  /** The handles' histories verified so far: later changes are checked from there (histories.ts). */
  private readonly histories: HistoryBook;
  /** The compact form of the records the cache and the history book keep (packed-records.ts). */
  private readonly packer: RecordPacker = recordPacker;
  /** The newest version of each zone verified: an older one is refused (zone-versions.ts). */
  private readonly versions: ZoneVersions;
  /** With witnesses required: the largest checkpoint of each zone accepted (no rollback, forks kept). */
  private readonly checkpoints: CheckpointBook;
  /**
   * Finding zones without a root (DNS, HTTPS documents) and the WebFinger bridge, each null when off,
   * loaded at first use: a resolver that only walks its root's hierarchy never needs them, and their
   * modules (tldts, dns-packet) are a tenth of a second of every server's start.
   */
  private open: Promise<OpenWorld> | null = null;

  constructor(options: ResolverOptions) {
    this.options = resolveOptions(options);
    this.clock = options.clock ?? systemClock;
    this.verifyOptions = { allowLoopbackEndpoints: this.options.allowPrivate };
    this.cache = new LruCache({ maxEntries: this.options.maxEntries, maxBytes: this.options.maxBytes, maxEntryBytes: this.options.maxEntryBytes }, weigher);
    // A chain too big to be cached is not worth remembering either.
    this.chains = new ArrayInterner(1024, INTERNER_BYTES, this.options.maxEntryBytes);
    this.traces = new ArrayInterner(1024, INTERNER_BYTES, this.options.maxEntryBytes);
    this.selector = new ServerSelector(this.clock);
    // Entries are shared with the cached proofs that carry them; a quarter of the cache's bytes bounds the rest.
    this.histories = new HistoryBook(this.options.maxEntries, Math.floor(this.options.maxBytes / 4), this.packer);
    this.versions = new ZoneVersions(MAX_ZONE_VERSIONS);
    this.checkpoints = new CheckpointBook(MAX_ZONE_VERSIONS);
    this.ownsDispatcher = options.dispatcher === undefined;
    this.dispatcher =
      options.dispatcher ??
      policyAgent({
        connectTimeoutMs: this.options.requestTimeoutMs,
        connections: 16,
        allowPrivate: this.options.allowPrivate,
        ...(options.ca ? { ca: options.ca } : {}),
      });
    this.onBackgroundError = options.onBackgroundError ?? (() => {});
    this.events = options.events ?? {};
  }

  /** The discovery and the bridge, made at the first lookup that needs either. */
  private openWorld(): Promise<OpenWorld> {
    return (this.open ??= this.makeOpenWorld());
  }

  private async makeOpenWorld(): Promise<OpenWorld> {
    const d = this.options.discovery;
    let dns: DnsClient | null = null;
    let discovery: ZoneDiscovery | null = null;
    if (d) {
      const [{ DnsClient, readSystemServers }, { ZoneDiscovery }, { wellKnownFetcher }] = await Promise.all([
        import('../discovery/dns-client.js'),
        import('../discovery/discover.js'),
        import('../discovery/well-known.js'),
      ]);
      dns = new DnsClient({ servers: d.dnsServers ?? readSystemServers(), validating: d.validating, timeoutMs: d.dnsTimeoutMs, clock: this.clock });
      discovery = new ZoneDiscovery({
        dns,
        // Through the resolver's own agent: its address policy and CAs hold for documents too.
        fetchDocument: wellKnownFetcher({ dispatcher: this.dispatcher, timeoutMs: this.options.requestTimeoutMs }),
        requireDnssec: d.requireDnssec,
        clock: this.clock,
      });
    }
    let bridge: WebFingerBridge | null = null;
    if (this.options.webfinger) {
      const { WebFingerBridge } = await import('../discovery/webfinger.js');
      bridge = new WebFingerBridge({ dispatcher: this.dispatcher, allowPrivate: this.options.allowPrivate, clock: this.clock });
    }
    return { dns, discovery, bridge };
  }

  /**
   * Resolves a handle (`alice@host`, `@alice@host` or `acct:alice@host`) to its endpoint and keys; throws
   * handle_not_found when it does not exist. Check `verified` before trusting the keys.
   */
  async resolve(handle: string, options: LookupOptions = {}): Promise<ResolvedHandle> {
    return resolvedHandle(await this.lookupStored(handle, options));
  }

  /** Resolves up to 100 handles at once; each gets its record or its own error, a missing handle handle_not_found as resolve throws. */
  async resolveMany(handles: readonly string[], options: LookupOptions = {}): Promise<ResolveManyResult[]> {
    const results = await this.lookupManyStored(handles, options);
    return results.map((item): ResolveManyResult => {
      if (!('result' in item)) return item;
      try {
        return { handle: item.handle, result: resolvedHandle(item.result) };
      } catch (error) {
        return batchError(item.handle, error);
      }
    });
  }

  /** Looks up to 100 handles at once with their proofs (denials included); each gets its result or its own error. */
  async lookupMany(handles: readonly string[], options: LookupOptions = {}): Promise<BatchResult[]> {
    const results = await this.lookupManyStored(handles, options);
    return results.map((item): BatchResult => {
      if (!('result' in item)) return item;
      const r = item.result;
      return { handle: item.handle, result: r.verified ? this.unpacked(r) : r };
    });
  }

  /** @internal lookupMany with each proof packed, as the resolver keeps it (for the HTTP layer, which writes it unpacked). */
  async lookupManyStored(handles: readonly string[], options: LookupOptions = {}): Promise<StoredBatchResult[]> {
    if (handles.length > MAX_BATCH) throw new IdnsError('invalid_request', `at most ${MAX_BATCH} handles per batch`);
    // Cache hits are answered in one synchronous pass; only the misses wait for upstream.
    const results = new Array<StoredBatchResult>(handles.length);
    const misses: Promise<void>[] = [];
    for (let i = 0; i < handles.length; i++) {
      const handle = handles[i]!;
      try {
        const hit = options.forceRefresh ? undefined : this.cachedStored(handle);
        if (hit) results[i] = { handle, result: hit };
        else {
          misses.push(
            this.lookupStored(handle, options).then(
              (result) => void (results[i] = { handle, result }),
              (error: unknown) => void (results[i] = batchError(handle, error)),
            ),
          );
        }
      } catch (error) {
        results[i] = batchError(handle, error);
      }
    }
    if (misses.length > 0) await Promise.all(misses);
    options.signal?.throwIfAborted();
    return results;
  }

  /**
   * The result `lookup` would give when the cache can give it at once (fresh, or stale within the
   * stale-while-revalidate window, which starts the refresh); undefined when the lookup has to ask the
   * zone's servers. Throws invalid_handle as `lookup` does.
   */
  lookupCached(input: string): VerifiedResult | undefined {
    const hit = this.cachedStored(input);
    return hit === undefined ? undefined : this.unpacked(hit);
  }

  /** @internal lookupCached with the proof packed, as the resolver keeps it (for the HTTP layer, which writes it unpacked). */
  cachedStored(input: string): StoredResult | undefined {
    const now = this.clock.now();
    // Hot path: cache keys are normalised handles, so an input found as it is needs no parsing (IDNA is
    // the costliest step of a hit); anything else is parsed and looked up by its normal form.
    let entry = input.includes('@') ? this.cache.get(input, now) : undefined;
    const handle = entry ? input : parseHandleReference(input).handle;
    if (!entry && handle !== input) entry = this.cache.get(handle, now);
    if (!entry || isCut(entry.value)) return undefined;
    const cached = entry.value;
    const fresh = this.cache.freshFor(entry, now);
    if (fresh > 0) {
      // Prefetch: a hot entry near expiry is refreshed before anyone has to wait for it.
      if (this.options.prefetch && entry.hits >= 2 && fresh < entry.ttlMs / 10) this.background(handle);
      this.events.cache?.('hit');
      return result(cached, Math.ceil(fresh / 1000), false, this.options.witnesses !== null);
    }
    if (-fresh < this.options.staleWhileRevalidateMs) {
      this.background(handle);
      this.events.cache?.('stale');
      return result(cached, 0, true, false);
    }
    return undefined;
  }

  /**
   * The full result of a lookup: verified, found or not found, with its proof; or, for a host that
   * publishes no zone, what its WebFinger says (`verified: false`).
   */
  async lookup(input: string, options: LookupOptions = {}): Promise<LookupResult> {
    const r = await this.lookupStored(input, options);
    return r.verified ? this.unpacked(r) : r;
  }

  /** @internal lookup with the proof packed, as the resolver keeps it (for the HTTP layer and resolve(), which need no unpacked proof). */
  async lookupStored(input: string, options: LookupOptions = {}): Promise<StoredLookupResult> {
    options.signal?.throwIfAborted();
    if (!options.forceRefresh) {
      const hit = this.cachedStored(input);
      if (hit) return hit;
    }
    const normal = parseHandleReference(input).handle;
    // The input itself when it is already normal: it is flat, where the parsed form is a rope of its
    // parts, and it becomes the cache key and the resolution's `handle`.
    const handle = normal === input ? input : normal;
    // An expired entry still held is what serve-stale falls back on should the refresh fail.
    const entry = this.cache.peek(handle, this.clock.now());
    const cached = entry && !isCut(entry.value) ? entry.value : undefined;
    this.events.cache?.('miss');
    try {
      const fresh = await raceSignal(this.refresh(handle, options.forceRefresh ?? false), options.signal);
      return isBridged(fresh) ? { ...fresh, status: 'found', zone: null, stale: false } : result(fresh, fresh.ttl, false, this.options.witnesses !== null);
    } catch (err) {
      if (options.signal?.aborted) throw err;
      // RFC 8767: when the zone's servers cannot give an answer, expired data (still validly signed) is
      // better than none, for a bounded window, and marked as stale.
      if (entry && cached) {
        this.events.cache?.('stale');
        return result(cached, 0, true, false);
      }
      throw err;
    }
  }

  /** A result as lookups give it out: its proof unpacked (a new object). */
  private unpacked(r: StoredResult): VerifiedResult {
    return { ...r, proof: this.packer.unpackProof(r.proof) };
  }

  /** Number of cache entries. */
  get cacheSize(): number {
    return this.cache.size;
  }

  /** Estimated bytes the cache holds (bounded by cache.maxBytes). */
  get cacheBytes(): number {
    return this.cache.bytes;
  }

  /**
   * Evidence of forks met: zone records of one zone and serial, signed by its key, with different
   * contents (the zone showed this resolver two histories). Oldest first, at most MAX_ZONE_FORKS.
   */
  zoneForks(): readonly ZoneFork[] {
    return this.versions.forks();
  }

  /**
   * With witnesses required: evidence of forks of zones' logs met, two checkpoints of one zone that cannot
   * both be true (one size, two roots). Oldest first, at most MAX_FORKS.
   */
  checkpointForks(): readonly CheckpointFork[] {
    return this.checkpoints.forks();
  }

  /** Empties the cache (the zone versions seen stay: they are what a rollback is judged by). */
  clearCache(): void {
    this.cache.clear();
  }

  /** Closes the connections and sockets this resolver opened. */
  async close(): Promise<void> {
    // Parts that failed to load opened nothing, and their error went to the lookup that asked for them.
    const open = this.open === null ? null : await this.open.catch(() => null);
    open?.dns?.close();
    await open?.bridge?.close();
    if (this.ownsDispatcher) await this.dispatcher.close();
  }

  private background(handle: string): void {
    if (this.inflight.has(handle)) return;
    this.refresh(handle, false).catch(this.onBackgroundError);
  }

  /**
   * One upstream resolution per name at a time: concurrent lookups share the pending promise. Verified
   * resolutions are cached here; bridged ones in the bridge's own cache.
   */
  private refresh(handle: string, force: boolean): Promise<StoredResolution | BridgedHandle> {
    const pending = this.inflight.get(handle);
    if (pending) return pending;
    const p = (this.options.forwarders.length > 0 ? this.forward(handle, force) : this.walk(handle, force)).then((r) => {
      if (isBridged(r)) return r;
      const now = this.clock.now();
      // Kept past expiry for whichever window is longer: serve-stale on failure, or stale-while-revalidate.
      const staleMs = Math.max(this.options.serveStaleMs, this.options.staleWhileRevalidateMs);
      this.cache.set(handle, r, now, r.ttl * 1000, staleMs, r.exp * 1000);
      return r;
    });
    this.inflight.set(handle, p);
    const done = () => this.inflight.delete(handle);
    p.then(done, done);
    return p;
  }

  /**
   * Iterative resolution from the closest known zone cut, or, for a host no configured anchor delegates,
   * from the zone its domain publishes; a host that publishes none goes to the WebFinger bridge.
   */
  private async walk(handle: string, force: boolean): Promise<StoredResolution | BridgedHandle> {
    const host = handle.slice(handle.lastIndexOf('@') + 1);
    const budget = new Budget(this.clock, this.options);
    const cut = this.closestCut(host);
    if (cut !== null) {
      const r = await this.walkFrom(cut, handle, host, budget);
      // A denial from a configured anchor's own zone says the hierarchy holds no zone for this host
      // (noCut proved no delegation on the way): only then is the host's own publication tried.
      if (this.options.discovery === null || r.status !== 'not_found' || r.proof.steps.length !== 1 || cut.anchor !== null) return r;
      const { discovery, bridge } = await within(budget, this.clock, this.openWorld());
      const found = await within(budget, this.clock, discovery!.discover(host));
      if (found.found === null) return bridge ? within(budget, this.clock, bridge.lookup(handle, { forceRefresh: force })) : r;
      return this.walkFrom(discoveredCut(found.found, this.clock), handle, host, budget);
    }
    if (this.options.discovery === null) throw new IdnsError('no_trust_anchor', `no trust anchor covers ${host}`);
    const { discovery, bridge } = await within(budget, this.clock, this.openWorld());
    const found = await within(budget, this.clock, discovery!.discover(host));
    if (found.found !== null) return this.walkFrom(discoveredCut(found.found, this.clock), handle, host, budget);
    // Only a host verifiably without a publication gets here: discovery throws when DNS or HTTPS fail.
    if (bridge) return within(budget, this.clock, bridge.lookup(handle, { forceRefresh: force }));
    throw new IdnsError('no_trust_anchor', `no trust anchor covers ${host}, and its domain publishes no idns zone`);
  }

  /** Walks from `start` down the referrals to the zone that answers for the handle. */
  private async walkFrom(start: ZoneCut, handle: string, host: string, budget: Budget): Promise<StoredResolution> {
    let cut = start;
    // Step objects are shared (the cut's prefix, interned chains): new ones are made, none is changed.
    const steps: ProofStep[] = [...cut.prefix];
    let exp = cut.exp;
    // With witnesses required: until when every reply of this walk is fresh enough (the cut's own are, while it is cached).
    let freshUntil = Infinity;
    const trace: TraceStep[] = [];
    const ahead: Ahead = { next: null };
    for (let referrals = 0; ; referrals++) {
      const reply = await this.askZone(cut, handle, host, budget, referrals < this.options.maxReferrals ? ahead : null);
      trace.push({ zone: cut.name, server: reply.server, rttMs: reply.rttMs });
      // A witnessed reply is good only while its checkpoint's cosignatures are fresh enough.
      exp = Math.min(exp, reply.zone.record.exp, reply.bound?.freshUntil ?? Infinity);
      freshUntil = Math.min(freshUntil, reply.bound?.freshUntil ?? Infinity);
      if (this.rememberServers(cut, reply.zone)) this.cache.reweigh(`z:${cut.name}`);
      // Its binding, checked, goes with the step: a resolver forwarding to this one checks it again.
      const log = reply.bound === undefined ? {} : { log: reply.bound.binding.log };
      if (reply.status !== 'referral') {
        steps.push({ zone: cut.name, zoneRecord: reply.zone.jws, ...log });
        const entry = reply.bound?.binding.entry;
        const proof: Proof =
          reply.status === 'answer'
            ? { steps, record: reply.record, history: reply.history }
            : { steps, record: reply.record, ...(reply.noCut ? { noCut: reply.noCut } : {}) };
        const anchors = start.anchor === null ? this.options.anchors : new Map([[steps[0]!.zone, start.anchor.ds]]);
        const r = this.signatures.during(() =>
          verifyProof(proof, handle, anchors, epochSeconds(this.clock), undefined, this.verifyOptions, this.histories, this.versions),
        );
        // Verified, the chain is swapped for the shared one with the same content (verifyProof keeps no
        // bindings: these steps are this walk's own, each binding checked as its reply came).
        r.proof.steps = this.chains.intern(steps);
        if (reply.status === 'answer' && entry !== undefined) r.proof.entry = entry;
        if (start.anchor !== null) r.proof.anchor = start.anchor;
        // Kept no longer than every reply of the walk stays fresh enough (its checkpoints' cosignatures):
        // past that it is asked for again, and served stale (not witnessed) only if that fails.
        r.ttl = Math.max(0, Math.min(r.ttl, freshUntil - epochSeconds(this.clock)));
        return stored(r, this.traces.intern(trace), handle, this.packer);
      }
      if (referrals >= this.options.maxReferrals) {
        throw new IdnsError('referral_limit', `more than ${this.options.maxReferrals} referrals for ${handle}`);
      }
      steps.push({ zone: cut.name, zoneRecord: reply.zone.jws, delegation: reply.record, ...log });
      const d = this.signatures.during(() => verifyDelegation(reply.record, reply.zone, epochSeconds(this.clock)));
      exp = Math.min(exp, d.exp);
      const child: ZoneCut = { ...reply.child, prefix: [...steps], exp, anchor: cut.anchor };
      // Nothing cached outlives the earliest signature on the proof that leads to it.
      this.cache.set(`z:${child.name}`, child, this.clock.now(), d.ttl * 1000, this.options.serveStaleMs, exp * 1000);
      cut = child;
    }
  }

  /**
   * The deepest fresh cached zone cut above the host, else the deepest trust anchor above it; null when
   * no configured anchor covers the host and no cut below a discovered zone is cached. Under a configured
   * anchor, cuts below discovered zones are passed over: the configured hierarchy's delegations win.
   */
  private closestCut(host: string): ZoneCut | null {
    const now = this.clock.now();
    const names = ancestors(host);
    const configured = names.some((name) => this.options.anchors.has(name));
    for (const name of names) {
      const entry = this.cache.get(`z:${name}`, now);
      if (entry && this.cache.freshFor(entry, now) > 0 && isCut(entry.value) && (entry.value.anchor === null || !configured)) return entry.value;
      const anchor = this.options.anchors.get(name);
      if (anchor) return { name, servers: [...this.options.rootServers], trusted: anchor, prefix: [], exp: Infinity, anchor: null };
    }
    return null;
  }

  /** The zone record lists the zone's own servers (secondaries included): ask those too next time. True when the cut grew. */
  private rememberServers(cut: ZoneCut, zone: VerifiedZone): boolean {
    const before = cut.servers.length;
    for (const s of zone.record.servers) if (!cut.servers.includes(s) && cut.servers.length < 32) cut.servers.push(s);
    return cut.servers.length > before;
  }

  /**
   * Asks the zone's servers, best first, until one gives a reply that verifies. A timeout, an error, a
   * redirect, an oversized body or a bad signature all count against that server and move on to the next.
   */
  private async askZone(cut: ZoneCut, handle: string, host: string, budget: Budget, ahead: Ahead | null = null): Promise<ZoneReply> {
    const zoneParam = cut.name === ROOT ? '_root' : cut.name;
    let lastError: unknown = new IdnsError('resolution_failed', `zone ${cut.name} lists no servers`);
    let verificationFailed = false;
    const sent = ahead?.next?.zone === cut.name ? ahead.next : null;
    if (ahead) ahead.next = null;
    const servers = this.selector.order(cut.servers);
    // The request sent ahead (see sendAhead) goes first, when it went to one of this zone's servers.
    const at = sent ? servers.indexOf(sent.server) : -1;
    if (at > 0) servers.unshift(...servers.splice(at, 1));
    for (const server of servers) {
      const early = sent?.server === server ? sent : null;
      const left = early ? 0 : budget.spend();
      const started = early ? early.started : this.clock.now();
      try {
        assureAllowedUrl(server, this.options.allowPrivate);
        const res = await (early ? early.response : this.get(this.resolveUrl(server, handle, zoneParam), left));
        if (ahead && this.sendAhead(res, cut, handle, host, budget, ahead)) {
          // Two turns of the event loop let the request ahead connect and leave before the verification
          // below holds the thread (~0.2 ms): then the next server works on it meanwhile. Measured, one
          // turn gains little (the connection is not made yet), two gain ~10% of a cold lookup.
          await turn();
          await turn();
        }
        const checked = this.signatures.during(() => this.checkZoneReply(res, cut, handle, host));
        const reply: DistributiveOmit<ZoneReply, 'server' | 'rttMs'> =
          checked.status === 'answer' ? await this.withHistory(checked, cut, server, handle, budget) : checked;
        const bound = this.options.witnesses === null ? undefined : this.signatures.during(() => this.boundToLog(res.body, reply, cut));
        const rttMs = this.clock.now() - started;
        this.selector.success(server, rttMs);
        return { ...reply, server, rttMs, ...(bound === undefined ? {} : { bound }) };
      } catch (err) {
        // A request sent ahead on this server's referral is not wanted now that the reply failed.
        if (ahead) ahead.next = null;
        if (isIdnsError(err, 'budget_exceeded')) throw err;
        this.selector.failure(server);
        verificationFailed ||= isIdnsError(err, 'verification_failed');
        lastError = err;
      }
    }
    const reason = lastError instanceof Error ? lastError.message : String(lastError);
    // A lie or a refused address says more than "failed": pass it on as it is.
    if ((verificationFailed && isIdnsError(lastError, 'verification_failed')) || isIdnsError(lastError, 'address_refused')) throw lastError;
    throw new IdnsError('resolution_failed', `no server of zone ${cut.name} gave a usable answer (last: ${reason})`, { cause: lastError });
  }

  private resolveUrl(server: string, handle: string, zoneParam: string): string {
    const log = this.options.witnesses === null ? '' : '&log=1';
    return `${server.replace(/\/+$/, '')}/v1/resolve/${encodeURIComponent(handle)}?zone=${encodeURIComponent(zoneParam)}${log}`;
  }

  /**
   * With witnesses required (docs/protocol.md §13.5): the reply's binding to the zone's log, checked
   * against the policy, its checkpoint no older than one seen before for the zone (kept as evidence of a
   * fork when it cannot extend it); then the reply's zone version is remembered. Returns until when the
   * checkpoint's cosignatures are fresh enough (epoch s), and the binding as the proof keeps it. Throws
   * verification_failed: the next server is tried.
   */
  private boundToLog(body: unknown, reply: DistributiveOmit<ZoneReply, 'server' | 'rttMs'>, cut: ZoneCut): NonNullable<ZoneReply['bound']> {
    const entry = reply.status === 'answer' ? loggedEntry((decodeCompact(reply.record).payload as { handle: string }).handle, reply.history) : undefined;
    const log = (body as { log?: unknown } | null)?.log;
    const records = reply.status === 'denial' ? [reply.record, ...(reply.noCut ?? [])] : [reply.record];
    return this.bind(cut.name, reply.zone.record, reply.zone.jws, log, records, entry);
  }

  /**
   * Checks a zone's binding to its log against the policy (verifyAnswerLog), takes its checkpoint (no
   * older than one seen, a fork kept as evidence), then remembers the zone's version: only once the
   * binding holds, so that a fork's newer serial cannot make the genuine zone look old.
   */
  private bind(
    zone: string,
    record: ZoneRecord,
    jws: string,
    log: unknown,
    records: readonly string[],
    entry: { key: string; jws: string } | undefined,
  ): NonNullable<ZoneReply['bound']> {
    const bound = verifyAnswerLog(zone, jws, record.keys, log, this.options.witnesses, epochSeconds(this.clock), records, entry);
    this.checkpoints.accept(zone, { size: bound.size, root: bound.root, note: bound.note });
    this.versions.check(zone, record, jws);
    return { freshUntil: bound.freshUntil, binding: keptBinding(log, entry !== undefined) };
  }

  /**
   * A referral's next request, sent before the referral is verified so that the round trip overlaps
   * the verification (as validating DNS resolvers do). Nothing else is taken from the unverified reply:
   * the request goes to an address the policy allows, counts against the lookup's budget, and its
   * response is used only if the referral then verifies and names that server (askZone); otherwise it
   * is dropped. Anything odd in the reply just means nothing is sent ahead.
   */
  private sendAhead(res: JsonResponse, cut: ZoneCut, handle: string, host: string, budget: Budget, ahead: Ahead): boolean {
    const b = res.body as { status?: unknown; zone?: unknown; record?: unknown } | null;
    if (res.status !== 200 || !b || typeof b !== 'object' || b.status !== 'referral' || b.zone !== cut.name || typeof b.record !== 'string') return false;
    let next: { name?: unknown; servers?: unknown };
    try {
      next = decodeCompact(b.record).payload as { name?: unknown; servers?: unknown };
    } catch {
      return false; // malformed: verification will say so
    }
    const { name, servers } = next;
    if (typeof name !== 'string' || !leadsDeeper(name, cut.name, host)) return false;
    if (!Array.isArray(servers) || !servers.every((x): x is string => typeof x === 'string')) return false;
    const server = this.selector.order(servers)[0];
    if (server === undefined) return false;
    try {
      assureAllowedUrl(server, this.options.allowPrivate);
    } catch {
      return false; // refused: askZone refuses it again, with the error
    }
    let left: number;
    try {
      left = budget.spend();
    } catch {
      return false; // out of budget: the walk says so when it next asks
    }
    const started = this.clock.now();
    const response = this.get(this.resolveUrl(server, handle, name), left);
    // Observed here too: a request sent ahead may never be awaited (its referral did not verify).
    response.catch(() => undefined);
    ahead.next = { zone: name, server, started, response };
    return true;
  }

  /**
   * An answer's record with its whole history, verified (docs/protocol.md §6.5): the entries the answer
   * carries, after those this resolver verified before (its history book) or, when neither reaches back
   * to the first entry, those the same server's log gives, a bounded page at a time.
   */
  private async withHistory(
    reply: CheckedAnswer,
    cut: ZoneCut,
    server: string,
    handle: string,
    budget: Budget,
  ): Promise<DistributiveOmit<ZoneReply, 'server' | 'rttMs'>> {
    const tail = reply.evidence;
    const first = tail[0]![0];
    const readBefore = () =>
      // Each page is a request of the lookup's budget.
      readLog(server, handle, first - 1, async (url) => {
        const res = await this.get(url, budget.spend(), HISTORY_RESPONSE_MAX_BYTES);
        const err = errorFromBody(res.body);
        if (err) throw new IdnsError('bad_response', `the server's log of ${handle} answered ${err.code}: ${err.message}`);
        return res.body;
      });
    const verify = (before: readonly NumberedEntry[]) => {
      const entries = before.length === 0 ? tail : [...before, ...tail];
      this.signatures.during(() => {
        const history = verifyRecordHistory(reply.parsed, entries, historyZoneOf(reply.zone), this.histories.point(cut.name, handle));
        this.histories.verified(cut.name, { ...history, handle }, entries);
      });
      return entries;
    };
    // The entries kept before the evidence's first: they and the evidence are the history with a gap at
    // most, which verifies when only updates that keep the key set lie in it.
    const kept = first > 1 ? this.histories.entries(cut.name, handle)?.filter((e) => e[0] < first) : undefined;
    let entries: readonly NumberedEntry[];
    if (first === 1) entries = verify([]);
    else if (kept === undefined || kept.length === 0) entries = verify(await readBefore());
    else {
      try {
        entries = verify(kept);
      } catch (err) {
        // The entries kept are not this history's start (a zone made anew, restored from a backup), or
        // what lies between them and the evidence changed the keys: the server's log decides.
        if (!isIdnsError(err, 'verification_failed')) throw err;
        entries = verify(await readBefore());
      }
    }
    return { status: 'answer', zone: reply.zone, record: reply.record, history: entries };
  }

  private checkZoneReply(res: JsonResponse, cut: ZoneCut, handle: string, host: string): CheckedReply {
    if (res.status >= 300 && res.status < 400) throw new IdnsError('bad_response', `redirect (${res.status}) refused: redirects are not followed`);
    const err = errorFromBody(res.body);
    if (err) throw new IdnsError('bad_response', `the server answered ${err.code}: ${err.message}`);
    const b = res.body as { status?: unknown; zone?: unknown; record?: unknown; history?: unknown; zoneRecord?: unknown; noCut?: unknown } | null;
    if (!b || typeof b !== 'object' || Array.isArray(b)) throw new IdnsError('bad_response', 'the reply is not an object');
    // Bailiwick: we asked zone `cut.name`; only that zone may answer.
    if (b.zone !== cut.name) throw new IdnsError('verification_failed', `asked zone ${cut.name}, the reply is from ${String(b.zone)}`);
    const now = epochSeconds(this.clock);
    const zone = verifyZoneRecord(b.zoneRecord, cut.name, now, cut.trusted);
    // Before the rest: a server answering from an older version of the zone is refused, and the next tried.
    // With witnesses required, the version is remembered only once its checkpoint binding verifies (boundToLog).
    this.versions.check(cut.name, zone.record, zone.jws, this.options.witnesses === null);
    if (typeof b.record !== 'string') throw new IdnsError('bad_response', 'the reply carries no record');
    if (b.status === 'answer') {
      const r = verifyHandleRecord(b.record, handle, zone, now, this.verifyOptions);
      return { status: 'answer', zone, record: b.record, evidence: parseEvidence(b.history, r.seq), parsed: r };
    }
    if (b.status === 'denial') {
      const noCut = noCutOf(b.noCut);
      verifyDenial(b.record, handle, zone, now, noCut);
      return { status: 'denial', zone, record: b.record, ...(noCut.length > 0 ? { noCut: noCut as string[] } : {}) };
    }
    if (b.status === 'referral') {
      const d = verifyDelegation(b.record, zone, now);
      if (!leadsDeeper(d.name, cut.name, host)) {
        throw new IdnsError('verification_failed', `zone ${cut.name} referred to ${d.name}, which is not below it on the way to ${handle}`);
      }
      return {
        status: 'referral',
        zone,
        record: b.record,
        child: { name: d.name, servers: [...d.servers], trusted: d.ds, prefix: [], exp: d.exp, anchor: cut.anchor },
      };
    }
    throw new IdnsError('bad_response', `unknown reply status ${JSON.stringify(b.status)}`);
  }

  /**
   * Forwarding: ask upstream resolvers, and verify their proofs against our own anchors. A proof rooted
   * in a discovered zone is checked against this resolver's own discovery of the host, and a bridged
   * answer (nothing to verify) is replaced by this resolver's own discovery and bridge.
   */
  private async forward(handle: string, force: boolean): Promise<StoredResolution | BridgedHandle> {
    const budget = new Budget(this.clock, this.options);
    let lastError: unknown = new IdnsError('resolution_failed', 'no upstream resolver configured');
    for (const upstream of this.selector.order(this.options.forwarders)) {
      const left = budget.spend();
      const started = this.clock.now();
      try {
        assureAllowedUrl(upstream, this.options.allowPrivate);
        // A proof carries the handle's whole history, which may be longer than other answers.
        const res = await this.get(`${upstream.replace(/\/+$/, '')}/v1/lookup/${encodeURIComponent(handle)}`, left, HISTORY_RESPONSE_MAX_BYTES);
        if (res.status >= 300 && res.status < 400) throw new IdnsError('bad_response', `redirect (${res.status}) refused`);
        const err = errorFromBody(res.body);
        if (err) throw new IdnsError('bad_response', `the upstream answered ${err.code}: ${err.message}`);
        const body = res.body as { proof?: unknown; verified?: unknown } | null;
        if (body?.verified === false && this.options.discovery !== null) return await this.walk(handle, force);
        const proof = body?.proof;
        const first = (proof as { steps?: { zone?: unknown }[] } | null)?.steps?.[0]?.zone;
        const anchor =
          typeof first === 'string' && this.options.discovery !== null && !this.options.anchors.has(first) ? await this.discoveredAnchor(handle, first) : null;
        const anchors = anchor === null ? this.options.anchors : new Map([[first as string, anchor.ds]]);
        const witnessed = this.options.witnesses !== null;
        // With witnesses required, a zone's version is remembered only once its binding holds (boundForwarded).
        const resolution = this.signatures.during(() =>
          verifyProof(proof, handle, anchors, epochSeconds(this.clock), undefined, this.verifyOptions, this.histories, witnessed ? undefined : this.versions),
        );
        if (witnessed) this.signatures.during(() => this.boundForwarded(proof as { steps: unknown[]; entry?: unknown }, resolution));
        if (anchor !== null) resolution.proof.anchor = anchor;
        // Verified, the chain is swapped for the shared one with the same content (the proof is this
        // reply's own object, fresh from JSON.parse).
        resolution.proof.steps = this.chains.intern(resolution.proof.steps);
        const rttMs = this.clock.now() - started;
        this.selector.success(upstream, rttMs);
        return stored(resolution, this.traces.intern([{ zone: '(upstream resolver)', server: upstream, rttMs }]), handle, this.packer);
      } catch (err) {
        if (isIdnsError(err, 'budget_exceeded')) throw err;
        this.selector.failure(upstream);
        lastError = err;
      }
    }
    if (isIdnsError(lastError, 'verification_failed') || isIdnsError(lastError, 'no_trust_anchor') || isIdnsError(lastError, 'address_refused'))
      throw lastError;
    throw new IdnsError('resolution_failed', `no upstream resolver gave a usable answer (last: ${(lastError as Error).message})`, { cause: lastError });
  }

  /**
   * With witnesses required, a forwarded proof's bindings (docs/protocol.md §7): every step's zone record
   * bound to a checkpoint of its zone cosigned as the policy asks, and a handle's history entry in the
   * last one, each checked as a walk checks a reply's (bind). The resolution then keeps the bindings
   * (only what was read), and is fresh only while every checkpoint is (its TTL).
   */
  private boundForwarded(input: { steps: unknown[]; entry?: unknown }, r: Resolution): void {
    const steps: ProofStep[] = [];
    const logged = r.proof.history === undefined ? undefined : loggedEntry(r.handle, r.proof.history);
    let freshUntil = Infinity;
    r.proof.steps.forEach((step, i) => {
      const log = (input.steps[i] as { log?: unknown }).log;
      const last = i === r.proof.steps.length - 1;
      const entry = last ? logged : undefined;
      // verifyProof checked this zone record: its payload is a zone record's; and the records each step vouches for.
      const record = decodeCompact(step.zoneRecord).payload as unknown as ZoneRecord;
      const records = last ? [r.proof.record, ...(r.proof.noCut ?? [])] : [step.delegation!];
      const bound = this.bind(step.zone, record, step.zoneRecord, entry === undefined ? log : { ...(log as object), entry: input.entry }, records, entry);
      freshUntil = Math.min(freshUntil, bound.freshUntil);
      steps.push({ ...step, log: bound.binding.log });
      if (bound.binding.entry !== undefined) r.proof.entry = bound.binding.entry;
    });
    r.proof.steps = steps;
    r.ttl = Math.max(0, Math.min(r.ttl, freshUntil - epochSeconds(this.clock)));
  }

  /** This resolver's own anchor for `zone`, found by discovering the handle's host; throws unless discovery finds that very zone. */
  private async discoveredAnchor(handle: string, zone: string): Promise<ProofAnchor> {
    const host = handle.slice(handle.lastIndexOf('@') + 1);
    const budget = new Budget(this.clock, this.options);
    const { discovery } = await within(budget, this.clock, this.openWorld());
    const found = await within(budget, this.clock, discovery!.discover(host));
    if (found.found === null || found.found.zone !== zone) {
      throw new IdnsError('no_trust_anchor', `the proof starts at zone ${zone}, which is neither configured here nor what ${host} publishes`);
    }
    return anchorOf(found.found);
  }

  /** A GET of JSON within the lookup's time left; bodies up to maxResponseBytes (or `atLeastBytes`, for what may carry a whole history). */
  private async get(url: string, budgetLeftMs: number, atLeastBytes = 0): Promise<JsonResponse> {
    this.upstreamRequests += 1;
    const started = performance.now();
    let ok = false;
    try {
      const res = await jsonRequest(url, {
        timeoutMs: Math.max(1, Math.min(this.options.requestTimeoutMs, budgetLeftMs)),
        maxBytes: Math.max(this.options.maxResponseBytes, atLeastBytes),
        dispatcher: this.dispatcher,
      });
      ok = res.status < 500;
      return res;
    } finally {
      this.events.upstream?.((performance.now() - started) / 1000, ok);
    }
  }
}

/**
 * Creates a resolver (see ResolverOptions for every setting and its default). With no options it works on
 * the internet as it is: zones found through their DNS and HTTPS publications, other handles bridged
 * through WebFinger.
 */
export function createResolver(options: ResolverOptions = {}): Resolver {
  return new Resolver(options);
}

/**
 * A lookup result: the stored resolution with the TTL left and its staleness, member by member (see stored);
 * `witnessed` when every zone of it was bound to a checkpoint the required witnesses cosigned, still fresh.
 */
function result(r: StoredResolution, ttl: number, stale: boolean, witnessed: boolean): StoredResult {
  return {
    handle: r.handle,
    status: r.status,
    zone: r.zone,
    endpoint: r.endpoint,
    keys: r.keys,
    ttl,
    exp: r.exp,
    proof: r.proof,
    trace: r.trace,
    profile: r.profile,
    alsoKnownAs: r.alsoKnownAs,
    movedTo: r.movedTo,
    genesis: r.genesis,
    operatorAsserted: r.operatorAsserted,
    verified: true,
    witnessed,
    anchor: r.proof.anchor?.type ?? 'configured',
    stale,
  };
}

/** The resolver's parts for names outside its hierarchy, each null when off. */
interface OpenWorld {
  dns: DnsClient | null;
  discovery: ZoneDiscovery | null;
  bridge: WebFingerBridge | null;
}

const isBridged = (r: StoredResolution | BridgedHandle): r is BridgedHandle => (r as BridgedHandle).verified === false;

/** The cut a discovered zone starts a walk from: its servers and keys as the publication names them. */
function discoveredCut(found: FoundZone, clock: Clock): ZoneCut {
  return { name: found.zone, servers: [...found.servers], trusted: found.ds, prefix: [], exp: epochSeconds(clock) + found.ttl, anchor: anchorOf(found) };
}

function anchorOf(found: FoundZone): ProofAnchor {
  return found.anchor.type === 'dnssec'
    ? { type: 'dnssec', name: found.anchor.name, ds: [...found.ds] }
    : { type: 'https', url: found.anchor.url, ds: [...found.ds] };
}

/** A lookup result as resolve() gives it; handle_not_found for a verified denial. */
function resolvedHandle(r: StoredLookupResult): ResolvedHandle {
  if (r.verified === false) {
    return {
      handle: r.handle,
      endpoint: r.endpoint,
      keys: [],
      ttl: r.ttl,
      stale: r.stale,
      verified: false,
      witnessed: false,
      source: 'webfinger',
      zone: null,
      aliases: r.aliases,
      ...(r.profile ? { profile: r.profile } : {}),
    };
  }
  if (r.status === 'not_found') throw new IdnsError('handle_not_found', `${r.handle} does not exist (verified denial from zone ${r.zone})`);
  // Most handles have no owner links: one literal, one hidden class. The spreads below make a new object
  // shape by a slower path on every call (library cache hits: ~3.7M/s with them, ~4.2M/s without).
  if (r.profile === undefined && r.alsoKnownAs === undefined && r.movedTo === undefined) {
    return {
      handle: r.handle,
      endpoint: r.endpoint!,
      keys: r.keys!,
      ttl: r.ttl,
      stale: r.stale,
      verified: true,
      witnessed: r.witnessed,
      anchor: r.anchor,
      zone: r.zone,
      genesis: r.genesis!,
      operatorAsserted: r.operatorAsserted!,
    };
  }
  return {
    handle: r.handle,
    endpoint: r.endpoint!,
    keys: r.keys!,
    ttl: r.ttl,
    stale: r.stale,
    ...(r.profile !== undefined ? { profile: r.profile } : {}),
    ...(r.alsoKnownAs !== undefined ? { alsoKnownAs: r.alsoKnownAs } : {}),
    ...(r.movedTo !== undefined ? { movedTo: r.movedTo } : {}),
    verified: true,
    witnessed: r.witnessed,
    anchor: r.anchor,
    zone: r.zone,
    genesis: r.genesis!,
    operatorAsserted: r.operatorAsserted!,
  };
}

/**
 * The resolution as the cache keeps it: with its trace, its proof packed (packed-records.ts), built member
 * by member: a spread here gave the cached resolutions hundreds of different hidden classes, and every
 * cache hit that read them paid for it (~1.5 µs). `handle` is the cache key (equal to `r.handle`), so
 * that the entry holds one string for both.
 */
function stored(r: Resolution, trace: readonly TraceStep[], handle: string, packer: RecordPacker): StoredResolution {
  return {
    handle,
    status: r.status,
    zone: r.zone,
    endpoint: r.endpoint,
    keys: r.keys,
    ttl: r.ttl,
    exp: r.exp,
    proof: packer.packProof(r.proof),
    trace,
    profile: r.profile,
    alsoKnownAs: r.alsoKnownAs,
    movedTo: r.movedTo,
    genesis: r.genesis,
    operatorAsserted: r.operatorAsserted,
  };
}

/** A handle answer's entry in its zone's log: the last of its verified history, the one its record's `seq` names (none for an empty history). */
function loggedEntry(handle: string, history: readonly NumberedEntry[]): { key: string; jws: string } | undefined {
  const last = history.at(-1);
  return last === undefined ? undefined : { key: historyKey(handle, last[0]), jws: last[1] };
}

/** A handle's failure in a batch, as its typed error; anything else is a bug and propagates. */
function batchError(handle: string, error: unknown): { handle: string; error: IdnsError } {
  if (!isIdnsError(error)) throw error;
  return { handle, error };
}

/** Omit over each member of a union (the built-in Omit would merge the members). */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
