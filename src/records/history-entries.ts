import type { KeyObject } from 'node:crypto';
import { IdnsError } from '../errors.js';
import { isAtOrBelow } from '../names/zone.js';
import { isNormalHandle } from '../names/handle.js';
import { parseChangeRequest, verifyRequestSignatures, type ChangeRequest } from './change-request.js';
import { decodeCompact, OPERATION_TYP, verifyDecoded } from './jws.js';
import { parseOperatorEntry, OPERATOR_TYP, type OperatorEntry } from './operator-entry.js';
import { parseHistoryKey } from './history-key.js';
import type { VerifiedZone } from './verify-core.js';

/** The zone whose keys sign operator entries. */
export interface HistoryZone {
  name: string;
  /** kid (thumbprint) → key. */
  keys: ReadonlyMap<string, KeyObject>;
  /** The zone record's `recoveryWindow` (seconds; absent: the default, docs/protocol.md §6.6). */
  recoveryWindow?: number | undefined;
}

/** A history entry as read: an owner's change request, or an operator entry of the zone. */
export type HistoryEntry = { owner: ChangeRequest; operator?: undefined } | { operator: OperatorEntry; owner?: undefined };

/** The zone a verified zone record describes, as a history's verifier needs it: its name, keys and recovery window. */
export function historyZoneOf(zone: VerifiedZone): HistoryZone {
  return { name: zone.record.zone, keys: zone.keys, recoveryWindow: zone.record.recoveryWindow };
}

/**
 * Reads an entry of `handle`'s history in `zone`, as every reader of histories must: by its `typ`, with
 * the authority's own parser, and only as an entry of this handle; an operator entry only of this zone and
 * signed by one of its keys (the signature checked when `verifyOperator`). An owner's signature depends on
 * the state before it: the caller checks it. Throws verification_failed saying why ("it is …"), or the
 * parser's typed error.
 */
export function readHistoryEntry(jws: unknown, handle: string, zone: HistoryZone, verifyOperator: boolean): HistoryEntry {
  const decoded = decodeCompact(jws);
  const typ = decoded.header.typ;
  if (typ === OPERATOR_TYP) {
    const entry = parseOperatorEntry(jws, true, decoded);
    if (entry.handle !== handle) throw fail(`it is an entry of ${entry.handle}`);
    if (entry.zone !== zone.name) throw fail(`it is an operator entry of zone ${entry.zone}`);
    const key = zone.keys.get(entry.decoded.header.kid!);
    if (key === undefined) throw fail('it is not signed by a key of the zone');
    if (verifyOperator) verifyDecoded(entry.decoded, key);
    return { operator: entry };
  }
  if (typ !== OPERATION_TYP) throw fail("it is neither an owner's change request nor an operator entry");
  const req = parseChangeRequest(jws, decoded);
  if (req.handle !== handle) throw fail(`it is a change of ${req.handle}`);
  return { owner: req };
}

/**
 * Checks a history entry (stored type `op`) of a zone's content stored under `key`, as a secondary copies
 * it: stored under a normalised handle in the zone and a place number, and readable as an entry of that
 * handle (readHistoryEntry), its signature checked when `signature` where it can be alone: an operator
 * entry's, a registration's (with the key it carries). Later owner entries need the keys before them,
 * which resolvers check along the chain.
 */
export function checkHistoryEntry(key: string, jws: unknown, zone: VerifiedZone, signature: boolean): void {
  const at = parseHistoryKey(key);
  if (at === null) throw fail(`a history entry is stored under ${JSON.stringify(key.slice(0, 300))}, not under "handle#seq"`);
  const { handle } = at;
  const zoneName = zone.record.zone;
  if (!isNormalHandle(handle)) throw fail(`the history entry ${JSON.stringify(key.slice(0, 300))} is not under a normalised handle`);
  if (!isAtOrBelow(handle.slice(handle.lastIndexOf('@') + 1), zoneName)) throw fail(`${handle} is outside zone ${zoneName} (out of bailiwick)`);
  try {
    const entry = readHistoryEntry(jws, handle, historyZoneOf(zone), signature);
    if (signature && entry.owner?.action === 'register') verifyRequestSignatures(entry.owner, entry.owner.headerKey!);
  } catch (err) {
    if (err instanceof IdnsError) throw fail(`the history entry ${key} does not verify: ${err.message}`);
    throw err;
  }
}

/**
 * True when a (stored, already checked) entry begins a registration, so that its id is the genesis of the
 * records after it: an owner's register, an operator's import or transfer (docs/protocol.md §6.4).
 */
export function beginsRegistration(jws: string): boolean {
  const { header, payload } = decodeCompact(jws);
  const action = (payload as { action?: unknown }).action;
  return header.typ === OPERATOR_TYP ? action === 'import' || action === 'transfer' : action === 'register';
}

function fail(message: string): IdnsError {
  return new IdnsError('verification_failed', message);
}
