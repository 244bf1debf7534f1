import { IdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import { isAtOrBelow } from '../names/zone.js';
import type { PublicJwk } from '../records/keys.js';
import { verifyRecordHistory, type HistoryState, type NumberedEntry, type VerifiedHistory } from '../records/history-chain.js';
import { definedLinks } from '../records/handle-links.js';
import type { HandleRecord } from '../records/types.js';
import { historyZoneOf } from '../records/history-entries.js';
import { MAX_HISTORY_ENTRIES } from '../records/history-key.js';
import type { ZoneVersions } from './zone-versions.js';
import { parseEntries } from '../records/history-evidence.js';
import type { EntryProof, StepLog } from '../transparency/witnessed.js';
import { noCutOf, verifyDelegation, verifyDenial, verifyHandleRecord, verifyZoneRecord, type VerifyOptions } from '../records/verify.js';

/**
 * The proof of a resolution: the zone records from a trust anchor down to the zone that answered, each
 * zone (but the last) with the signed delegation of the next, then the answer (a handle record) or the
 * denial. Anyone holding the anchor can check it with jose alone; a forwarding resolver checks what its
 * upstream sends this way, so the upstream cannot forge an answer.
 */
export interface ProofStep {
  zone: string;
  zoneRecord: string;
  /** The delegation, signed by this zone, of the next step's zone. Absent on the last step. */
  delegation?: string;
  /**
   * From a resolver requiring witnesses: the zone's reply's binding to its log, which it checked
   * (docs/protocol.md §7 and §13.5), for a resolver forwarding to it to check again. verifyProof leaves it.
   */
  log?: StepLog;
}

/**
 * How the first zone of a proof found without a root was anchored (docs/protocol.md, section 12.3): by
 * its DNSSEC-validated `_idns` TXT record, or by its HTTPS document. `ds` are the thumbprints that
 * publication named. A proof from a configured trust anchor carries none.
 */
export type ProofAnchor = ({ type: 'dnssec'; name: string } | { type: 'https'; url: string }) & { ds: string[] };

/** How a verified result's trust was rooted: a configured trust anchor, or a publication found by discovery. */
export type AnchorKind = 'configured' | 'dnssec' | 'https';

/** How a proof's first zone is trusted, in words: "anchored by DNSSEC at _idns.example.com", "anchored by https://…". */
export function describeAnchor(anchor: ProofAnchor | undefined): string {
  if (anchor === undefined) return 'a trust anchor configured here';
  return anchor.type === 'dnssec' ? `anchored by DNSSEC at ${anchor.name}` : `anchored by ${anchor.url}`;
}

export interface Proof {
  /** Shared between the resolutions of a zone in a resolver's cache (see ChainTable): never mutated. */
  steps: readonly ProofStep[];
  /** The handle record (found) or the denial (not found), signed by the last step's zone. */
  record: string;
  /**
   * With a handle record: its history up to the record's `seq`, whole or compact (docs/protocol.md §6.5),
   * from which the record must follow; on the wire `[[seq, jws], …]`. Shared with the resolver's history
   * book: never mutated.
   */
  history?: readonly NumberedEntry[];
  /** With a denial for a host below the last zone: gaps proving no name in between is a delegated zone. */
  noCut?: string[];
  /** Where the first step's zone was anchored, when it was found by discovery rather than configured. */
  anchor?: ProofAnchor;
  /** With a handle record, from a resolver requiring witnesses: its history entry's leaf and inclusion proof (see ProofStep.log). */
  entry?: EntryProof;
}

/** A verified resolution. */
export interface Resolution {
  handle: string;
  status: 'found' | 'not_found';
  /** The zone that answered. */
  zone: string;
  endpoint: string | null;
  keys: PublicJwk[] | null;
  /** The owner-signed links of a found handle's record, when set (docs/protocol.md §3.1). A move is reported, never followed. */
  profile?: string | undefined;
  alsoKnownAs?: string[] | undefined;
  movedTo?: string | undefined;
  /** A found handle's genesis: the id of the entry that began its current registration (changes when someone registers it anew). */
  genesis?: string | undefined;
  /** A found handle whose state rests on an operator entry (an import, a court-ordered transfer), with no change of its owner since. */
  operatorAsserted?: boolean | undefined;
  /** Seconds the result may be cached from the moment it was verified. */
  ttl: number;
  /** Signature expiry of the earliest-expiring record of the proof, seconds since the epoch. */
  exp: number;
  proof: Proof;
  /**
   * Which server answered for each zone of the proof, as this resolver saw it (not part of the proof).
   * Shared between cached resolutions with the same trace: never mutated.
   */
  trace?: readonly TraceStep[];
}

/** One zone of a resolution's trace: the server that answered for it and how long it took. */
export interface TraceStep {
  zone: string;
  server: string;
  rttMs: number;
}

/** Where the verification of handles' histories stood before (a resolver's HistoryBook): verification goes on from there. */
export interface KnownHistories {
  point(zone: string, handle: string): VerifiedHistory | undefined;
  /** Told each history verified, with its entries, so that the next verification starts from it. */
  verified(zone: string, history: VerifiedHistory, entries: readonly NumberedEntry[]): void;
}

/** Trust anchors: zone name → thumbprints of keys trusted to sign that zone's record. */
export type TrustAnchors = ReadonlyMap<string, readonly string[]>;

/**
 * Verifies a proof for `handle` against the anchors, at time `now` (seconds). Throws verification_failed
 * with the reason, or no_trust_anchor when the proof starts at a zone without an anchor. `options` is the
 * verifier's mode (development mode accepts loopback endpoints; see VerifyOptions). A resolver passes what
 * it remembers: the histories it verified (`known`) and the zone versions it saw (`versions`: a zone
 * record older than one seen, or another of the same serial, is refused).
 */
export function verifyProof(
  proof: unknown,
  input: string,
  anchors: TrustAnchors,
  now: number,
  expected?: 'answer' | 'denial',
  options: VerifyOptions = {},
  known?: KnownHistories,
  versions?: ZoneVersions,
): Resolution {
  const parsed = parseHandle(input);
  // The input itself when it is already normal: a resolver passes its cache key, which the history book
  // then keeps as the handle's key too (one string for both; the parsed form is a rope of its parts).
  const handle = parsed.handle === input ? input : parsed.handle;
  const host = parsed.host;
  const p = proof as Partial<Proof> | null;
  if (!p || !Array.isArray(p.steps) || p.steps.length === 0 || typeof p.record !== 'string') {
    throw new IdnsError('verification_failed', 'the proof must have steps and a record');
  }
  if (p.steps.length > 64) throw new IdnsError('verification_failed', 'the proof has too many steps');
  if (!p.steps.every((step) => typeof step === 'object' && step !== null && !Array.isArray(step))) {
    throw new IdnsError('verification_failed', 'every step of a proof is an object');
  }
  const first = p.steps[0] as ProofStep;
  const anchored = anchors.get(first?.zone);
  if (!anchored) throw new IdnsError('no_trust_anchor', `the proof starts at zone ${String(first?.zone)}, which has no trust anchor here`);
  let trusted: readonly string[] = anchored;
  let exp = Infinity;
  let zone = verifyZoneRecord(first.zoneRecord, first.zone, now, trusted);
  versions?.check(first.zone, zone.record, first.zoneRecord);
  if (!isAtOrBelow(host, first.zone)) throw new IdnsError('verification_failed', `${handle} is not under the anchored zone ${first.zone}`);
  exp = Math.min(exp, zone.record.exp);
  for (let i = 0; i < p.steps.length - 1; i++) {
    const step = p.steps[i] as ProofStep;
    const next = p.steps[i + 1] as ProofStep;
    if (typeof step.delegation !== 'string') throw new IdnsError('verification_failed', `step ${i} (${step.zone}) has no delegation to ${next?.zone}`);
    const d = verifyDelegation(step.delegation, zone, now);
    // Bailiwick: a zone may only delegate names strictly below itself, and only on the way to the handle.
    if (d.name !== next.zone || d.name === step.zone || !isAtOrBelow(d.name, step.zone) || !isAtOrBelow(host, d.name)) {
      throw new IdnsError('verification_failed', `zone ${step.zone} delegates ${d.name}, which is not on the way from ${step.zone} to ${handle}`);
    }
    exp = Math.min(exp, d.exp);
    trusted = d.ds;
    zone = verifyZoneRecord(next.zoneRecord, next.zone, now, trusted);
    versions?.check(next.zone, zone.record, next.zoneRecord);
    exp = Math.min(exp, zone.record.exp);
  }
  const last = p.steps[p.steps.length - 1] as ProofStep;
  if (last.delegation !== undefined) throw new IdnsError('verification_failed', 'the last step of a proof carries no delegation');
  const kind = (decodeType(p.record) ?? 'unknown') as string;
  if (kind === 'handle' && expected !== 'denial') {
    if (noCutOf(p.noCut).length > 0) throw new IdnsError('verification_failed', 'a proof of a handle record carries no noCut gaps');
    const r = verifyHandleRecord(p.record, handle, zone, now, options);
    const entries = historyOf(p.history, handle);
    const history = verifyRecordHistory(r, entries, historyZoneOf(zone), known?.point(last.zone, handle));
    // The record is that state (verifyRecordHistory checked it): the point kept shares its objects, and
    // the handle's string (see above).
    known?.verified(last.zone, { ...history, handle, state: stateOf(r) }, entries);
    return {
      handle,
      status: 'found',
      zone: last.zone,
      endpoint: r.endpoint,
      keys: r.keys,
      // Always present (maybe undefined): one object shape for every resolution the cache holds.
      profile: r.profile,
      alsoKnownAs: r.alsoKnownAs,
      movedTo: r.movedTo,
      genesis: history.genesis!,
      operatorAsserted: history.operatorAsserted,
      ttl: Math.max(0, Math.min(r.ttl, r.exp - now)),
      exp: Math.min(exp, r.exp),
      proof: verifiedProof(p.steps as ProofStep[], p.record, [], entries),
    };
  }
  if (kind === 'denial' && expected !== 'answer') {
    const noCut = noCutOf(p.noCut);
    const r = verifyDenial(p.record, handle, zone, now, noCut);
    const ttl = Math.min(r.ttl, zone.record.minimum);
    return {
      handle,
      status: 'not_found',
      zone: last.zone,
      endpoint: null,
      keys: null,
      profile: undefined,
      alsoKnownAs: undefined,
      movedTo: undefined,
      genesis: undefined,
      operatorAsserted: undefined,
      ttl: Math.max(0, Math.min(ttl, r.exp - now)),
      exp: Math.min(exp, r.exp),
      proof: verifiedProof(p.steps as ProofStep[], p.record, noCut as string[], null),
    };
  }
  throw new IdnsError('verification_failed', `the proof ends in a ${kind} record, not ${expected ?? 'a handle record or a denial'}`);
}

/**
 * The proof as the resolution keeps it: only the members verification read. Whatever else the sender
 * put in the proof or its steps (a forwarding resolver's upstream may add anything) is left behind, so
 * it is neither cached nor served.
 */
function verifiedProof(steps: readonly ProofStep[], record: string, noCut: string[], history: readonly NumberedEntry[] | null): Proof {
  const kept = steps.map((s): ProofStep =>
    s.delegation === undefined ? { zone: s.zone, zoneRecord: s.zoneRecord } : { zone: s.zone, zoneRecord: s.zoneRecord, delegation: s.delegation },
  );
  if (history !== null) return { steps: kept, record, history };
  return noCut.length > 0 ? { steps: kept, record, noCut } : { steps: kept, record };
}

/** A verified handle record's state, as a verified history states it (its own objects, not copies). */
function stateOf(r: HandleRecord): HistoryState {
  return { endpoint: r.endpoint, keys: r.keys, ...definedLinks(r), ...(r.recovery !== undefined ? { recovery: r.recovery } : {}) };
}

/** A proof's `history`, checked for form: at most MAX_HISTORY_ENTRIES numbered entries (verifyRecordHistory checks the rest). */
function historyOf(value: unknown, handle: string): readonly NumberedEntry[] {
  return parseEntries(value, MAX_HISTORY_ENTRIES, `the proof of ${handle}`);
}

function decodeType(jws: string): string | undefined {
  const payload = jws.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    return (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { type?: string }).type;
  } catch (cause) {
    throw new IdnsError('verification_failed', 'the proof record payload is not JSON', { cause });
  }
}

/** A result's proof in a `POST /v1/lookup` body: its chain of steps named by index into the body's `chains`. */
export interface BatchProof {
  chain: number;
  record: string;
  noCut?: string[];
}

/**
 * The whole proof of one result of a `POST /v1/lookup` body (docs/protocol.md, section 7): the result's
 * `proof` with `chain` replaced by `steps: chains[chain]`, ready for verifyProof. Throws
 * verification_failed when the reference does not name a chain of the body.
 */
export function proofFromBatch(chains: unknown, proof: unknown): Proof {
  if (!Array.isArray(chains)) throw new IdnsError('verification_failed', 'the batch has no chains');
  if (!proof || typeof proof !== 'object' || Array.isArray(proof)) throw new IdnsError('verification_failed', 'the result carries no proof');
  const { chain, ...rest } = proof as Partial<BatchProof>;
  if (!Number.isInteger(chain) || chain! < 0 || chain! >= chains.length || !Array.isArray(chains[chain!])) {
    throw new IdnsError('verification_failed', `the proof names chain ${String(chain)}, which the batch does not hold`);
  }
  return { steps: chains[chain!] as ProofStep[], ...rest } as Proof;
}
