import { checkpointSize, logOrigin } from '../../transparency/zone-log.js';
import { parseNote } from '../../transparency/note.js';
import { serialLess, serialOf, serialsFrom } from '../../records/serial.js';
import type { AppContext } from '../../context.js';
import { IdnsError, type ErrorCode } from '../../errors.js';
import { decodeCompact } from '../../records/jws.js';
import { thumbprint } from '../../records/keys.js';
import { describeRollover } from '../../authority/rollover-state.js';
import type { DelegationRecord, DenialRecord, HandleRecord, ZoneRecord } from '../../records/types.js';
import { describeAnchor, type AnchorKind } from '../../resolver/proof.js';
import type { VerifiedResult } from '../../resolver/resolver.js';

/**
 * What the operator page shows, gathered from the server context into plain data (no HTML here): the
 * zones held, their replication state, and the result of a lookup through the resolver role with its
 * chain of trust taken apart step by step. Rendering is in render.ts, from this data alone.
 */
export interface OperatorPageData {
  /** When the page was gathered, ms since the epoch (the server's clock). */
  now: number;
  server: ServerView;
  zones: ZoneView[];
  /** The lookup asked for with `?lookup=`, or null. */
  lookup: LookupView | null;
}

export interface ServerView {
  publicUrl: string | null;
  /** The resolver role, or null when the server does not run it. */
  resolver: ResolverView | null;
}

export interface ResolverView {
  mode: 'iterative' | 'forwarding';
  rootServers: string[];
  forwarders: string[];
  /** Zones found without a root: which DNS servers (null: the system's, not validating), DNSSEC required. */
  discovery: { dnsServers: string[] | null; requireDnssec: boolean } | null;
  webfinger: boolean;
  anchors: { zone: string; thumbprints: string[] }[];
}

export interface ZoneView {
  name: string;
  role: 'primary' | 'secondary';
  /** Null while a secondary has no copy yet. */
  serial: number | null;
  /** Who may register; null on a secondary (the primary decides). */
  policy: string | null;
  /**
   * Records the signed zone record counts (handles, their histories, denials, delegations), or null when it
   * states none: the page is anyone's to ask for, so it counts nothing itself (a count of a million
   * handles reads them all).
   */
  records: number | null;
  /** Servers listed in the zone record. */
  servers: string[];
  /** Thumbprints of the zone's keys. */
  keys: string[];
  /** Why the zone cannot be answered from now (ZoneReader.unavailable), or null. */
  unavailable: string | null;
  secondary: SecondaryView | null;
  /** A primary's delegations: each child zone, its servers and the key thumbprints vouched for. */
  delegations: { name: string; servers: string[]; ds: string[] }[];
  /** A primary fenced by a newer zone record elsewhere (ZoneSettings.fencedBy), or null. */
  fencedBy: { primary: string; serial: number } | null;
  /** A primary's key rollover under way, in words (rollover.ts describeRollover), or null. */
  rollover: string | null;
  /** The zone's log as held here (docs/protocol.md §13): its size and how many cosignatures its checkpoint carries; null without one. */
  log: { size: number; cosignatures: number } | null;
  /** Evidence this server, as a witness of the zone, keeps of a fork of its log (the newest), or null. */
  fork: { why: string; at: number } | null;
  /**
   * The servers copying a primary zone, as this server saw them since it started: the targets it
   * notified (the last notify to each) and the clients that took transfers (the last transfer of each).
   */
  peers: { notifies: PeerNotify[]; transfers: PeerTransfer[] };
}

export interface PeerNotify {
  target: string;
  /** Seconds since the notify. */
  age: number;
  ok: boolean;
  detail: string | null;
}

export interface PeerTransfer {
  /** A named secondary's credential name, or the client's address. */
  client: string;
  age: number;
  serial: number;
  mode: 'full' | 'incremental';
}

export interface SecondaryView {
  /** Servers the copy is transferred from, in order of preference. */
  sources: string[];
  /** Last successful check against a source, ms since the epoch. */
  lastSuccess: number | null;
  /** Seconds since the last successful check. */
  lastSuccessAge: number | null;
  lastError: string | null;
  /** The serial the source announced at the last check. */
  primarySerial: number | null;
  /** primarySerial − ours in RFC 1982 arithmetic; null when unknown or undefined (2^31 apart). */
  lag: number | null;
  /** True when the copy has expired (or was never loaded) and is not answered from. */
  expired: boolean;
  transfers: { full: number; incremental: number; failed: number } | null;
}

/** A lookup as the page shows it: the handle asked, then the verified result or the typed error. */
export interface LookupView {
  input: string;
  /** Set when this server does not run the resolver role. */
  noResolver: boolean;
  error: { code: ErrorCode; message: string } | null;
  result: ChainView | null;
  /** A handle whose host publishes no zone, as its WebFinger gave it (nothing verified). */
  bridged: BridgedView | null;
}

export interface BridgedView {
  handle: string;
  endpoint: string;
  subject: string;
  aliases: string[];
  profile: string | null;
  ttl: number;
}

export interface ChainView {
  handle: string;
  status: 'found' | 'not_found';
  zone: string;
  /** Seconds the result may still be used (what is left of the cached result). */
  ttlLeft: number;
  stale: boolean;
  /** Answered from this resolver's cache: the servers named are those of the walk that filled it. */
  cached: boolean;
  /** Earliest signature expiry of the whole proof, seconds since the epoch. */
  exp: number;
  steps: ChainStep[];
  record: FinalRecord;
}

/** Who answered for a zone of the chain, as this resolver saw it. */
export type AnsweredBy = { kind: 'server'; url: string; rttMs: number } | { kind: 'upstream'; url: string; rttMs: number } | { kind: 'cache' };

export interface ChainStep {
  zone: string;
  answeredBy: AnsweredBy;
  /** The `kid` of the zone record's JWS: the key that signed the zone record. */
  signedBy: string;
  /** Thumbprints of the keys the zone record publishes. */
  zoneKeys: string[];
  serial: number;
  /** Signature expiry of the zone record, seconds since the epoch. */
  exp: number;
  /** Why the signing key is trusted: a configured trust anchor, or the parent's delegation. */
  vouchedBy:
    | { kind: 'anchor'; thumbprints: string[]; via: AnchorKind; words: string }
    | { kind: 'delegation'; parent: string; signedBy: string; ds: string[]; exp: number };
  /** The delegation this zone signs for the next step, or null on the last step. */
  delegates: { name: string; servers: string[]; ds: string[] } | null;
}

export type FinalRecord =
  | {
      type: 'handle';
      handle: string;
      endpoint: string;
      keys: string[];
      ttl: number;
      serial: number;
      signedBy: string;
      exp: number;
      zone: string;
      /** The owner's signed changes the record was verified to follow from, and the registration they began with. */
      changes: number;
      genesis: string;
      /** The state rests on an operator entry (an import, a court-ordered transfer), not on its owner's signature. */
      operatorAsserted: boolean;
    }
  | {
      type: 'denial';
      after: string | null;
      next: string | null;
      hashes: number;
      ttl: number;
      serial: number;
      signedBy: string;
      exp: number;
      zone: string;
      noCut: number;
    };

/**
 * How many serials the primary is ahead of our copy, in RFC 1982 arithmetic: positive when behind,
 * negative when the source is behind us, null when unknown or when the two are exactly 2^31 apart.
 */
export function serialLag(primary: number | null, ours: number | null): number | null {
  if (primary === null || ours === null) return null;
  if (primary === ours) return 0;
  if (serialLess(ours, primary)) return serialsFrom(ours, primary);
  if (serialLess(primary, ours)) return -serialsFrom(primary, ours);
  return null;
}

/** Everything the page shows; `lookup` is the raw `?lookup=` value (empty or missing: no lookup). */
export async function gatherOperatorPage(ctx: AppContext, lookup: string | undefined, options: { beforeLookup?: () => void } = {}): Promise<OperatorPageData> {
  const now = ctx.clock.now();
  return { now, server: serverView(ctx), zones: zoneViews(ctx, now), lookup: await gatherLookup(ctx, lookup, options) };
}

/** The server's own settings that matter to a reader of the page. */
export function serverView(ctx: AppContext): ServerView {
  const r = ctx.resolver;
  return {
    publicUrl: ctx.config.publicUrl,
    resolver: r
      ? {
          mode: r.options.forwarders.length > 0 ? 'forwarding' : 'iterative',
          rootServers: [...r.options.rootServers],
          forwarders: [...r.options.forwarders],
          discovery: r.options.discovery
            ? { dnsServers: r.options.discovery.dnsServers?.map((d) => `${d.host}:${d.port}`) ?? null, requireDnssec: r.options.discovery.requireDnssec }
            : null,
          webfinger: r.options.webfinger,
          anchors: [...r.options.anchors].map(([zone, thumbprints]) => ({ zone, thumbprints: [...thumbprints] })),
        }
      : null,
  };
}

/** Every zone held here, with the replication state of secondaries. */
export function zoneViews(ctx: AppContext, now: number): ZoneView[] {
  const statuses = new Map(ctx.replicator.statuses().map((s) => [s.zone, s]));
  const forks = ctx.store.witness.forks();
  return ctx.zones.list().map((row): ZoneView => {
    const info = ctx.zones.summary(row.name);
    const record = ctx.zones.zoneRecord(row);
    const unavailable = ctx.zones.unavailable(row);
    const serial = row.role === 'secondary' && record === null ? null : serialOf(row.version);
    let secondary: SecondaryView | null = null;
    if (row.role === 'secondary') {
      const status = statuses.get(row.name);
      const lastSuccess = status?.lastSuccess ?? row.refreshedAt;
      const primarySerial = status?.primarySerial ?? null;
      secondary = {
        sources: info.secondary?.primaries ?? [],
        lastSuccess,
        lastSuccessAge: lastSuccess === null ? null : Math.max(0, Math.floor((now - lastSuccess) / 1000)),
        lastError: status?.lastError ?? null,
        primarySerial,
        lag: serialLag(primarySerial, serial),
        expired: unavailable !== null,
        transfers: status ? { ...status.transfers } : null,
      };
    }
    const settings = row.role === 'primary' ? info.settings : null;
    const delegations =
      row.role === 'primary'
        ? ctx.store.records
            .keys(row.content, 'delegation')
            .slice(0, MAX_DELEGATIONS_SHOWN)
            .map((child) => {
              const d = decodeCompact(ctx.store.records.jws(row.content, 'delegation', child)!).payload as DelegationRecord;
              return { name: d.name, servers: [...d.servers], ds: [...d.ds] };
            })
        : [];
    const seen = ctx.peers.of(row.name);
    const ageOf = (at: number) => Math.max(0, Math.floor((now - at) / 1000));
    const peers = {
      notifies: [...seen.notifies].map(([target, n]): PeerNotify => ({ target, age: ageOf(n.at), ok: n.ok, detail: n.detail })),
      transfers: [...seen.transfers].map(([client, t]): PeerTransfer => ({ client, age: ageOf(t.at), serial: t.serial, mode: t.mode })),
    };
    const fork = forks.filter((f) => f.origin === logOrigin(row.name)).at(-1);
    return {
      name: row.name,
      role: row.role,
      log: row.checkpoint === '' ? null : { size: checkpointSize(row.checkpoint), cosignatures: parseNote(row.checkpoint).signatures.length - 1 },
      fork: fork === undefined ? null : { why: fork.why, at: fork.at },
      delegations,
      peers,
      fencedBy: settings?.fencedBy ?? null,
      rollover: settings?.rollover ? describeRollover(settings.rollover) : null,
      serial,
      policy: row.role === 'primary' ? row.policy : null,
      records: record?.count ?? null,
      servers: record?.servers ?? info.servers,
      keys: record ? record.keys.map((k) => thumbprint(k)) : info.keyThumbprints,
      unavailable,
      secondary,
    };
  });
}

/**
 * Resolves `input` through this server's resolver role and takes the proof apart into the chain of
 * trust. Typed errors become part of the view; anything else is a bug and is thrown.
 */
export async function gatherLookup(ctx: AppContext, input: string | undefined, options: { beforeLookup?: () => void } = {}): Promise<LookupView | null> {
  const asked = (input ?? '').trim();
  if (asked === '') return null;
  if (!ctx.resolver) return { input: asked, noResolver: true, error: null, result: null, bridged: null };
  try {
    options.beforeLookup?.();
    // A result the cache gives at once is marked so: its trace is the walk that filled the cache.
    const hit = ctx.resolver.lookupCached(asked);
    const result = hit ?? (await ctx.resolver.lookup(asked));
    if (!result.verified) {
      const bridged = {
        handle: result.handle,
        endpoint: result.endpoint,
        subject: result.subject,
        aliases: [...result.aliases],
        profile: result.profile ?? null,
        ttl: result.ttl,
      };
      return { input: asked, noResolver: false, error: null, result: null, bridged };
    }
    return {
      input: asked,
      noResolver: false,
      error: null,
      result: { ...chainOf(result, ctx.resolver.options.anchors), cached: hit !== undefined },
      bridged: null,
    };
  } catch (err) {
    if (!(err instanceof IdnsError)) throw err;
    return { input: asked, noResolver: false, error: { code: err.code, message: err.message }, result: null, bridged: null };
  }
}

/** Most delegations a zone's row lists (a parent of many zones shows the first ones). */
const MAX_DELEGATIONS_SHOWN = 50;

/** The chain of trust of a verified lookup result, step by step. */
export function chainOf(r: VerifiedResult, anchors: ReadonlyMap<string, readonly string[]> = new Map()): ChainView {
  const trace = r.trace ?? [];
  const upstream = trace.find((t) => t.zone === '(upstream resolver)');
  const steps = r.proof.steps.map((step, i): ChainStep => {
    const zoneJws = decodeCompact(step.zoneRecord);
    const zone = zoneJws.payload as ZoneRecord;
    const seen = trace.find((t) => t.zone === step.zone);
    const answeredBy: AnsweredBy = seen
      ? { kind: 'server', url: seen.server, rttMs: seen.rttMs }
      : upstream
        ? { kind: 'upstream', url: upstream.server, rttMs: upstream.rttMs }
        : { kind: 'cache' };
    const parent = i > 0 ? r.proof.steps[i - 1]! : null;
    let vouchedBy: ChainStep['vouchedBy'];
    if (parent?.delegation) {
      const d = decodeCompact(parent.delegation);
      const p = d.payload as DelegationRecord;
      vouchedBy = { kind: 'delegation', parent: parent.zone, signedBy: d.header.kid ?? '', ds: [...p.ds], exp: p.exp };
    } else {
      const anchor = r.proof.anchor;
      vouchedBy = {
        kind: 'anchor',
        thumbprints: anchor ? [...anchor.ds] : [...(anchors.get(step.zone) ?? [])],
        via: anchor?.type ?? 'configured',
        words: describeAnchor(anchor),
      };
    }
    let delegates: ChainStep['delegates'] = null;
    if (step.delegation) {
      const p = decodeCompact(step.delegation).payload as DelegationRecord;
      delegates = { name: p.name, servers: [...p.servers], ds: [...p.ds] };
    }
    return {
      zone: step.zone,
      answeredBy,
      signedBy: zoneJws.header.kid ?? '',
      zoneKeys: zone.keys.map((k) => thumbprint(k)),
      serial: zone.serial,
      exp: zone.exp,
      vouchedBy,
      delegates,
    };
  });
  const rec = decodeCompact(r.proof.record);
  const kid = rec.header.kid ?? '';
  let record: FinalRecord;
  if (r.status === 'found') {
    const h = rec.payload as HandleRecord;
    record = {
      type: 'handle',
      handle: h.handle,
      endpoint: h.endpoint,
      keys: h.keys.map((k) => thumbprint(k)),
      ttl: h.ttl,
      serial: h.serial,
      signedBy: kid,
      exp: h.exp,
      zone: h.zone,
      changes: h.seq,
      genesis: h.genesis,
      operatorAsserted: r.operatorAsserted === true,
    };
  } else {
    const d = rec.payload as DenialRecord;
    record = {
      type: 'denial',
      after: d.after,
      next: d.next,
      hashes: d.hashes.length,
      ttl: d.ttl,
      serial: d.serial,
      signedBy: kid,
      exp: d.exp,
      zone: d.zone,
      noCut: r.proof.noCut?.length ?? 0,
    };
  }
  return { handle: r.handle, status: r.status, zone: r.zone, ttlLeft: r.ttl, stale: r.stale, cached: false, exp: r.exp, steps, record };
}
