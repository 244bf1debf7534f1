import { IdnsError } from '../errors.js';
import { assureProofsFor, requestId, verifyRequestSignatures, type ChangeRequest } from './change-request.js';
import { definedLinks } from './handle-links.js';
import { readHistoryEntry, type HistoryZone } from './history-entries.js';
import { thumbprint, type PublicJwk } from './keys.js';
import { MAX_HISTORY_CHARS, MAX_HISTORY_ENTRIES } from './history-key.js';

/** The state a history leaves a handle in (null once deleted): what its record must say. */
export interface HistoryState {
  endpoint: string;
  keys: PublicJwk[];
  profile?: string;
  alsoKnownAs?: string[];
  movedTo?: string;
  /** The owner's recovery keys (docs/protocol.md §6.6), absent when it names none. */
  recovery?: PublicJwk[];
}

/** A state a recovery may go back to (docs/protocol.md §6.6): an entry whose state names recovery keys, and the iat of the entry after it. */
export interface RecoverablePoint {
  seq: number;
  op: string;
  genesis: string;
  state: HistoryState & { recovery: PublicJwk[] };
  /** The iat of the change after it: a recovery to this point must come within the recovery window of it. */
  changedAt: number;
}

/** Where a verified history stands: enough to go on verifying its later entries alone. */
export interface VerifiedHistory {
  handle: string;
  /** The number of the last entry verified. */
  seq: number;
  /** The id of the last entry verified: the `op` the handle's record must name. */
  op: string;
  /** The id of the entry that began the current registration (null after a delete). */
  genesis: string | null;
  /** The handle's state after the last entry; null when it is deleted (or has no entry yet). */
  state: HistoryState | null;
  /** True while the state rests on an operator entry, with no owner's change since. */
  operatorAsserted: boolean;
  /** The id an upgraded import line had (operator entries' `legacyOp`), which the next entry may name as `prev`. */
  legacyOp: string | null;
  /** The latest `iat` of the entries verified (0 for none). */
  latestIat: number;
  /** Earlier states of the handle a recovery may still go back to, oldest first (within the recovery window). */
  recoverable: readonly RecoverablePoint[];
  /** The recoveries among the entries after the oldest recoverable point: their number, and the entry each went back to. */
  recoveries: readonly { seq: number; to: number }[];
}

export type { HistoryZone } from './history-entries.js';

/** Most entries verified in one call: a handle's whole history at first contact (docs/protocol.md §6.4). */
export const MAX_VERIFIED_ENTRIES = MAX_HISTORY_ENTRIES;

/** The starting point of a handle that has no history yet. */
export function emptyHistory(handle: string): VerifiedHistory {
  return { handle, seq: 0, op: '', genesis: null, state: null, operatorAsserted: false, legacyOp: null, latestIat: 0, recoverable: NONE, recoveries: NONE };
}

/** The empty list of recoverable points and recoveries, shared: most points have none, and resolvers keep a point per handle. */
const NONE: readonly never[] = Object.freeze([]);

/** How long after a change a recovery key may undo it when the zone record names no `recoveryWindow`: 72 hours. */
export const DEFAULT_RECOVERY_WINDOW = 72 * 3600;
/**
 * How much earlier than the entries before it a recovery's `iat` may be: an authority accepts an `iat`
 * within 300 s of its clock, so two entries it accepted one after the other are at most 600 s out of order.
 */
export const RECOVERY_IAT_SLACK = 600;

/** A history entry with its number (from 1), `[seq, jws]`: as answers and proofs carry them (JSON), and as they are kept. */
export type NumberedEntry = readonly [seq: number, jws: string];

/**
 * Verifies entries of a handle's history (docs/protocol.md §6.4) that follow `from` (the handle's
 * empty history, or a point verified before), in order, each with its number: every owner's entry
 * signed by its own key (a register) or by a key of the state before it, with its proofs of possession,
 * naming the entry before it as `prev`; every operator entry signed by a key of the zone. An entry may
 * follow a gap (entries left out of a compact history, §6.5): it is then checked against the state before
 * the gap, in full, and may not be a recovery. Returns where the history then stands. Throws
 * verification_failed, naming the entry and why, for anything else.
 */
export function verifyHistory(from: VerifiedHistory, entries: readonly NumberedEntry[], zone: HistoryZone): VerifiedHistory {
  if (entries.length > MAX_VERIFIED_ENTRIES) throw fail(from.handle, 0, `more than ${MAX_VERIFIED_ENTRIES} entries to verify at once`);
  let at = from;
  // The signature check of an update that keeps the key set, until the next entry shows whether it
  // names that update as `prev` (then the hash chain holds it) or not (then it is checked after all).
  let unchecked: (() => void) | null = null;
  for (const [seq, jws] of entries) {
    // Entry 1 begins the history: a compact history leaves out only entries after it.
    const gap = seq > at.seq + 1 && at.seq >= 1;
    if (seq !== at.seq + 1 && !gap) throw fail(from.handle, seq, `entry ${seq} does not follow entry ${at.seq}`);
    const step = next(at, seq, jws, zone, gap);
    if (unchecked !== null && !step.chained) unchecked();
    unchecked = step.unchecked;
    at = step.point;
  }
  unchecked?.();
  return at;
}

/**
 * Verifies that a handle record follows from its owner's signed history (docs/protocol.md §6.5):
 * `entries` are the history up to the entry the record names, in order from entry 1 to entry record.seq,
 * whole or compact (with gaps, §6.5), checked from the start or, when `known` (a point verified before)
 * is one of them, from there on: one signature per new change. Returns where the history stands, the
 * record's genesis and whether its state is operator-asserted. Throws verification_failed saying why.
 */
export function verifyRecordHistory(
  record: { handle: string; op: string; genesis: string; seq: number } & HistoryState,
  entries: readonly NumberedEntry[],
  zone: HistoryZone,
  known?: VerifiedHistory,
): VerifiedHistory {
  const handle = record.handle;
  assureHistoryForm(handle, entries, record.seq);
  // A point verified before fixes every entry up to it (each names the id of the one before): when it
  // is among these entries, only the ones after it are new.
  const at = known !== undefined && known.handle === handle && known.seq >= 1 ? entries.findIndex((e) => e[0] === known.seq) : -1;
  if (at >= 0 && requestId(entries[at]![1]) === known!.op) {
    try {
      return followsTo(record, verifyHistory(known!, entries.slice(at + 1), zone));
    } catch (err) {
      // The point may lack what this history needs (a recovery to an entry a compact history left out
      // when the point was verified): the whole history decides.
      if (!(err instanceof IdnsError)) throw err;
    }
  }
  return followsTo(record, verifyHistory(emptyHistory(handle), entries, zone));
}

/** Throws verification_failed unless `entries` are in form a history up to entry `seq`: entries 1 … seq in order, within the bounds. */
function assureHistoryForm(handle: string, entries: readonly unknown[], seq: number): void {
  if (entries.length === 0 || entries.length > MAX_HISTORY_ENTRIES) {
    throw new IdnsError('verification_failed', `the history of ${handle} has ${entries.length} entries, not 1 to ${MAX_HISTORY_ENTRIES}`);
  }
  let chars = 0;
  let last = 0;
  for (const e of entries as readonly unknown[]) {
    const [seq, jws] = Array.isArray(e) ? (e as unknown[]) : [];
    if (typeof jws !== 'string' || typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq <= last || (last === 0 && seq !== 1)) {
      throw new IdnsError('verification_failed', `the history of ${handle} is not entries numbered from 1 upwards, each a JWS`);
    }
    last = seq;
    chars += jws.length;
  }
  if (last !== seq)
    throw new IdnsError('verification_failed', `the record of ${handle} names entry ${seq} of its history, but its history ends at entry ${last}`);
  if (chars > MAX_HISTORY_CHARS) throw new IdnsError('verification_failed', `the history of ${handle} is longer than ${MAX_HISTORY_CHARS} characters`);
}

/** `verified`, once the record is checked to be its result with its genesis. */
function followsTo(record: { handle: string; op: string; genesis: string } & HistoryState, verified: VerifiedHistory): VerifiedHistory {
  assureRecordFollows(verified, record);
  if (record.genesis !== verified.genesis) {
    throw new IdnsError(
      'verification_failed',
      `the record of ${record.handle} names genesis ${record.genesis}, but its history's is ${String(verified.genesis)}`,
    );
  }
  return verified;
}

/** Throws verification_failed unless `record` is exactly the state the verified history leaves. */
export function assureRecordFollows(history: VerifiedHistory, record: { handle: string; op: string } & HistoryState): void {
  const why =
    history.state === null
      ? 'its history ends with the handle deleted'
      : record.op !== history.op
        ? `it names op ${record.op}, but its history's last entry is ${history.op}`
        : !sameState(record, history.state)
          ? "its endpoint, keys or links are not the state its owner's last change set"
          : null;
  if (why !== null) throw new IdnsError('verification_failed', `the record of ${record.handle} does not follow from its history: ${why}`);
}

/**
 * One entry verified after `at`: where the history then stands; whether the entry names `at` as its
 * `prev` (`chained`); and, for an update that keeps the key set, its signature check, left `unchecked`:
 * when the entry after it names it as `prev`, the hash chain holds it up to a later entry whose signature
 * is checked, so it cannot change who controls the handle and its state is replaced by a later one.
 * Everything that can (a register, a delete, a change of keys, a recovery) and an entry after a gap are
 * checked at once (docs/protocol.md §6.4).
 */
function next(at: VerifiedHistory, seq: number, jws: string, zone: HistoryZone, gap: boolean): Step {
  const handle = at.handle;
  const read = guard(handle, seq, () => readHistoryEntry(jws, handle, zone, true));
  const op = requestId(jws);
  const base = { handle, seq, op, legacyOp: null, recoverable: NONE, recoveries: NONE };
  if (read.operator) {
    const entry = read.operator;
    if (entry.action === 'import') {
      if (at.state !== null) throw fail(handle, seq, 'an operator import of a handle that exists');
    } else {
      if (at.state === null) throw fail(handle, seq, `an operator ${entry.action} of a handle that does not exist`);
      if (!gap && !follows(at, entry.prev)) throw fail(handle, seq, `its prev is not entry ${at.seq}`);
    }
    // An operator entry ends what a recovery could go back across: the states before it are gone.
    const latestIat = Math.max(at.latestIat, entry.iat);
    // Only an owner's entry vouches for the owner's entry before it (chained): an operator's is the zone key's word.
    if (entry.action === 'takedown') return checked({ ...base, genesis: null, state: null, operatorAsserted: false, latestIat }, false);
    // An import or a transfer gives the handle a state its owner did not sign: a new genesis, operator-asserted.
    const state: HistoryState = { endpoint: entry.endpoint!, keys: entry.keys!, ...definedLinks(entry) };
    return checked({ ...base, genesis: op, state, operatorAsserted: true, legacyOp: entry.legacyOp ?? null, latestIat }, false);
  }
  const req = read.owner;
  // After a gap the states left out are unknown: no recovery may go back to one, nor across the gap.
  const kept = gap ? { latestIat: Math.max(at.latestIat, req.iat), recoverable: NONE, recoveries: NONE } : keepRecoverable(at, req.iat, zone);
  if (req.action === 'register') {
    if (at.state !== null) throw fail(handle, seq, 'a registration of a handle that exists');
    guard(handle, seq, () => verifyRequestSignatures(req, req.headerKey!));
    return checked({ ...kept, handle, seq, op, genesis: op, state: requestState(req), operatorAsserted: false, legacyOp: null }, false);
  }
  if (!gap && !follows(at, req.prev)) return checked(recover(at, kept, seq, op, req, zone), false);
  if (at.state === null) throw fail(handle, seq, `an ${req.action} of a handle that does not exist`);
  // Signed by a key of the state, or by one of its recovery keys (which may sign any change).
  const held = heldKeys(at.state);
  const signer = held.get(req.kid!);
  if (signer === undefined)
    throw fail(handle, seq, gap ? 'after a gap, it is not signed by a key the handle had before it' : 'it is not signed by a key the handle had');
  const sameKeys = req.keyIds !== null && sameSet(requestHeld(req), held);
  const check = () =>
    guard(handle, seq, () => {
      verifyRequestSignatures(req, signer);
      assureProofsFor(
        req.proofs,
        requestHeld(req).filter((kid) => !held.has(kid)),
      );
    });
  const deferred = sameKeys && req.action === 'update' && !gap;
  if (!deferred) check();
  const unchecked = deferred ? check : null;
  const chained = !gap;
  if (req.action === 'delete')
    return { point: { ...kept, handle, seq, op, genesis: null, state: null, operatorAsserted: false, legacyOp: null }, chained, unchecked };
  return { point: { ...kept, handle, seq, op, genesis: at.genesis, state: requestState(req), operatorAsserted: false, legacyOp: null }, chained, unchecked };
}

interface Step {
  point: VerifiedHistory;
  chained: boolean;
  unchecked: (() => void) | null;
}

/** A step whose entry is checked in full already. */
function checked(point: VerifiedHistory, chained: boolean): Step {
  return { point, chained, unchecked: null };
}

/**
 * A recovery (docs/protocol.md §6.6): an update naming as `prev` an earlier entry of the history, within
 * the recovery window after the change that followed it, signed by a recovery key of that entry's state,
 * that no recovery since has gone back beyond. Its state replaces the current one; the registration goes
 * on (the genesis of the state it went back to).
 */
function recover(at: VerifiedHistory, kept: KeptRecoverable, seq: number, op: string, req: ChangeRequest, zone: HistoryZone): VerifiedHistory {
  const handle = at.handle;
  const target = at.recoverable.find((p) => p.op === req.prev);
  if (req.action !== 'update' || target === undefined) throw fail(handle, seq, `its prev is not entry ${at.seq}, nor an entry a recovery may go back to`);
  const window = zone.recoveryWindow ?? DEFAULT_RECOVERY_WINDOW;
  if (req.iat > target.changedAt + window) throw fail(handle, seq, `a recovery to entry ${target.seq} comes after the recovery window (${window} s)`);
  if (req.iat < at.latestIat - RECOVERY_IAT_SLACK) throw fail(handle, seq, 'a recovery dated before the entries it undoes');
  if (at.recoveries.some((r) => r.seq > target.seq && r.to <= target.seq)) {
    throw fail(handle, seq, `a recovery to entry ${target.seq}, which a later recovery already went back beyond`);
  }
  const recoveryKeys = new Map(target.state.recovery.map((k) => [thumbprint(k), k]));
  const signer = recoveryKeys.get(req.kid!);
  if (signer === undefined) throw fail(handle, seq, `a recovery to entry ${target.seq} not signed by a recovery key of that state`);
  const before = heldKeys(target.state);
  guard(handle, seq, () => {
    verifyRequestSignatures(req, signer);
    assureProofsFor(
      req.proofs,
      requestHeld(req).filter((kid) => !before.has(kid)),
    );
  });
  return {
    ...kept,
    recoveries: [...kept.recoveries, { seq, to: target.seq }],
    handle,
    seq,
    op,
    genesis: target.genesis,
    state: requestState(req),
    operatorAsserted: false,
    legacyOp: null,
  };
}

type KeptRecoverable = Pick<VerifiedHistory, 'latestIat' | 'recoverable' | 'recoveries'>;

/**
 * The points a recovery may still go back to once an owner's entry dated `iat` follows `at`: those kept
 * before, and `at` itself when its state names recovery keys, less those whose window has closed for any
 * recovery that can still come (one is dated at most RECOVERY_IAT_SLACK before the latest entry).
 */
function keepRecoverable(at: VerifiedHistory, iat: number, zone: HistoryZone): KeptRecoverable {
  const latestIat = Math.max(at.latestIat, iat);
  const window = zone.recoveryWindow ?? DEFAULT_RECOVERY_WINDOW;
  const points = [...at.recoverable];
  if (at.state?.recovery !== undefined && at.genesis !== null) {
    points.push({ seq: at.seq, op: at.op, genesis: at.genesis, state: at.state as RecoverablePoint['state'], changedAt: iat });
  }
  const kept = points.filter((p) => p.changedAt + window >= latestIat - RECOVERY_IAT_SLACK);
  if (kept.length === 0) return { latestIat, recoverable: NONE, recoveries: NONE };
  const oldest = kept[0]!.seq;
  return { latestIat, recoverable: kept, recoveries: at.recoveries.filter((r) => r.seq > oldest) };
}

/** A state's keys and recovery keys, by thumbprint: the keys that may sign its next change. */
function heldKeys(state: HistoryState): Map<string, PublicJwk> {
  return new Map([...state.keys, ...(state.recovery ?? [])].map((k) => [thumbprint(k), k]));
}

/** The thumbprints of the keys and recovery keys a request states. */
function requestHeld(req: ChangeRequest): string[] {
  return [...(req.keyIds ?? []), ...(req.recoveryIds ?? [])];
}

function sameSet(ids: readonly string[], held: ReadonlyMap<string, unknown>): boolean {
  return ids.length === held.size && ids.every((id) => held.has(id));
}

/** True when `prev` names the last entry verified (or the import line it stands for, `legacyOp`). */
function follows(at: VerifiedHistory, prev: string | null | undefined): boolean {
  return prev === at.op || (at.legacyOp !== null && prev === at.legacyOp);
}

/** The state a request sets: its endpoint, keys, links and recovery keys (the absent ones left out, as in a record). */
function requestState(req: ChangeRequest): HistoryState {
  return { endpoint: req.endpoint!, keys: req.keys!, ...definedLinks(req), ...(req.recovery !== null ? { recovery: req.recovery } : {}) };
}

/** Same endpoint, the same keys and recovery keys in the same order (by thumbprint), the same links. */
function sameState(a: HistoryState, b: HistoryState): boolean {
  const kids = (s: HistoryState) => s.keys.map(thumbprint).join(' ');
  const recovery = (s: HistoryState) => (s.recovery ?? []).map(thumbprint).join(' ');
  return (
    a.endpoint === b.endpoint &&
    kids(a) === kids(b) &&
    recovery(a) === recovery(b) &&
    a.profile === b.profile &&
    a.movedTo === b.movedTo &&
    JSON.stringify(a.alsoKnownAs ?? null) === JSON.stringify(b.alsoKnownAs ?? null)
  );
}

/** Runs a check of entry `seq`; its typed error becomes verification_failed naming the entry. */
function guard<T>(handle: string, seq: number, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof IdnsError) throw fail(handle, seq, err.message);
    throw err;
  }
}

function fail(handle: string, seq: number, why: string): IdnsError {
  return new IdnsError('verification_failed', `the history of ${handle} does not verify at entry ${seq}: ${why}`);
}
