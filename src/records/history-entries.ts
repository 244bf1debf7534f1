import { IdnsError } from '../errors.js';
import { isAtOrBelow } from '../names/zone.js';
import { isNormalHandle } from '../names/handle.js';
import { parseChangeRequest } from './change-request.js';
import { decodeCompact, OPERATION_TYP, verifyDecoded } from './jws.js';
import { parseOperatorEntry, OPERATOR_TYP } from './operator-entry.js';
import { verifyPossessionProofs } from './pop.js';
import { parseHistoryKey } from './history-key.js';
import type { VerifiedZone } from './verify-core.js';

/**
 * Checks a history entry (stored type `op`) of a zone's content stored under `key`, as a secondary copies
 * it: an owner's change request that the authority's own parser accepts, or an operator entry signed by a
 * key of the zone (its signature checked when `signature`); stored under its normalised handle, in the
 * zone, and a place number. A registration's signature is checked with the key it carries (when
 * `signature`); later owner entries need the keys before them, which resolvers check along the chain.
 */
export function checkHistoryEntry(key: string, jws: unknown, zone: VerifiedZone, signature: boolean): void {
  const at = parseHistoryKey(key);
  if (at === null) throw fail(`a history entry is stored under ${JSON.stringify(key.slice(0, 300))}, not under "handle#seq"`);
  const { handle } = at;
  const zoneName = zone.record.zone;
  if (!isNormalHandle(handle)) throw fail(`the history entry ${JSON.stringify(key.slice(0, 300))} is not under a normalised handle`);
  if (!isAtOrBelow(handle.slice(handle.lastIndexOf('@') + 1), zoneName)) throw fail(`${handle} is outside zone ${zoneName} (out of bailiwick)`);
  try {
    const typ = decodeCompact(jws).header.typ;
    if (typ === OPERATOR_TYP) {
      const entry = parseOperatorEntry(jws, true);
      if (entry.handle !== handle) throw fail(`the operator entry of ${entry.handle} is stored under ${key}`);
      if (entry.zone !== zoneName) throw fail(`the operator entry of ${key} belongs to zone ${entry.zone}, not ${zoneName}`);
      const signer = zone.keys.get(entry.decoded.header.kid!);
      if (signer === undefined) throw fail(`the operator entry ${key} is signed by ${entry.decoded.header.kid}, not a key of zone ${zoneName}`);
      if (signature) verifyDecoded(entry.decoded, signer);
      return;
    }
    if (typ !== OPERATION_TYP) throw fail(`the history entry ${key} is neither an owner's change request nor an operator entry`);
    const req = parseChangeRequest(jws);
    if (req.handle !== handle) throw fail(`the history entry of ${req.handle} is stored under ${key}`);
    if (signature && req.action === 'register') {
      verifyDecoded(req.decoded, req.headerKey!);
      verifyPossessionProofs(req.proofs);
    }
  } catch (err) {
    if (err instanceof IdnsError && err.code !== 'verification_failed') throw fail(`the history entry ${key} does not verify (${err.message})`);
    throw err;
  }
}

function fail(message: string): IdnsError {
  return new IdnsError('verification_failed', message);
}
