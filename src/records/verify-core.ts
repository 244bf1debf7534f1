import type { KeyObject } from 'node:crypto';
import { IdnsError } from '../errors.js';
import { isNormalHandle, normaliseHandle } from '../names/handle.js';
import { ancestors, isAtOrBelow, parseZoneName } from '../names/zone.js';
import { denialCovers, denialWellFormed, nameHash } from './denial.js';
import { fastDenialRecord, fastHandleRecord } from './record-fast-paths.js';
import { decodeCompact, RECORD_TYP, verifyDecoded, type DecodedJws } from './jws.js';
import { activeSignatureCache } from './signature-cache.js';
import { publicKeyObject, thumbprint } from './keys.js';
import type { AnyRecord, DelegationRecord, DenialRecord, HandleRecord, RecordType, ZoneRecord } from './types.js';

/** How far in the future an `iat` may be before a record is refused, seconds (clock skew between peers). */
export const MAX_FUTURE_IAT = 300;

/** A zone's verified keys, ready to check records with. */
export interface VerifiedZone {
  record: ZoneRecord;
  jws: string;
  /** kid (RFC 7638 thumbprint) → key. */
  keys: Map<string, KeyObject>;
  /** The kid of the key that signed the zone record. */
  signer: string;
}

/** The payload type of each record type, as verified. */
interface Records {
  zone: ZoneRecord;
  handle: HandleRecord;
  delegation: DelegationRecord;
  denial: DenialRecord;
}

/**
 * Reads a record payload the fast paths could not vouch for: the record schemas (schemas.ts, zod);
 * returns the record or throws verification_failed. verify.ts installs it: the verifier everyone
 * imports. Only a thread that checks copied records imports this module alone, without zod.
 */
export type SchemaCheck = (type: RecordType, payload: unknown, allowLoopbackEndpoints: boolean) => unknown;
let schemaCheck: SchemaCheck | null = null;

/**
 * Checks a copied history entry (stored type `op`) stored under `key` in `zone`: the change request's own
 * schema (the authority's parser), its place, and, when `signature`, what can be checked of it alone.
 * src/replication/content-checks.ts installs it (history-entries.ts), for copies; without it the entry
 * is handed back (SchemaNeeded).
 */
export type HistoryCheck = (key: string, jws: unknown, zone: VerifiedZone, signature: boolean) => void;
let historyCheck: HistoryCheck | null = null;

/** Installs the check of copied history entries (content-checks.ts does, with history-entries.ts). */
export function installHistoryCheck(check: HistoryCheck): void {
  historyCheck = check;
}

/** Installs the reader of payloads the fast paths do not vouch for (verify.ts does, with the zod schemas). */
export function installSchemaCheck(check: SchemaCheck): void {
  schemaCheck = check;
}

/**
 * Thrown, in a module graph without the schemas (a digest thread), for a record only the schemas can
 * decide: the caller hands it to a thread that has them. Never an answer about the record itself.
 */
export class SchemaNeeded extends Error {}

/** How a verifier reads records. */
export interface VerifyOptions {
  /**
   * Development mode (a resolver's `allowPrivate`: tests, the demo): accept handle endpoints on loopback
   * hosts, as development zones sign them. Off, such a record fails verification like any forbidden URL.
   */
  allowLoopbackEndpoints?: boolean;
}

/**
 * Verifies a signed record of the given type with the zone's keys and returns its payload. Checks, in
 * order: the JWS form, `typ`, that `kid` is one of the zone's keys, the signature, the payload's schema,
 * that it belongs to `zone`, and that the signature is current (`iat` not in the future, `exp` not past).
 */
export function verifyRecord<T extends RecordType>(
  jws: unknown,
  type: T,
  zone: VerifiedZone,
  nowSeconds: number,
  options: VerifyOptions = {},
  signature = true,
): Records[T] {
  const decoded = asVerificationFailure(() => decodeCompact(jws), type);
  if (decoded.header.typ !== RECORD_TYP) throw fail(`a ${type} record must have typ "${RECORD_TYP}"`);
  const kid = decoded.header.kid;
  const key = kid === undefined ? undefined : zone.keys.get(kid);
  if (!key) throw fail(`the ${type} record is signed by key ${kid ?? '(none)'}, not a key of zone ${zone.record.zone}`);
  if (signature) checkSignature(jws as string, kid!, decoded, key, type);
  return checkPayload(decoded.payload, type, zone.record.zone, nowSeconds, options);
}

/**
 * Verifies a zone record. It is signed by one of the keys it lists; `trusted` (thumbprints from a trust
 * anchor or the parent's `ds`) says which of those keys may vouch for the zone. Without `trusted` the
 * record is only self-consistent, which callers must say when they report it.
 */
export function verifyZoneRecord(jws: unknown, zoneName: string, nowSeconds: number, trusted?: readonly string[]): VerifiedZone {
  const decoded = asVerificationFailure(() => decodeCompact(jws), 'zone');
  if (decoded.header.typ !== RECORD_TYP) throw fail(`a zone record must have typ "${RECORD_TYP}"`);
  const record = checkPayload(decoded.payload, 'zone', zoneName, nowSeconds);
  const keys = new Map<string, KeyObject>();
  for (const jwk of record.keys)
    keys.set(
      thumbprint(jwk),
      asVerificationFailure(() => publicKeyObject(jwk), 'zone'),
    );
  const kid = decoded.header.kid;
  if (kid === undefined || !keys.has(kid)) throw fail(`the zone record of ${zoneName} is not signed by one of its own keys`);
  if (trusted && !trusted.includes(kid)) {
    throw fail(`the zone record of ${zoneName} is signed by key ${kid}, which is not among the trusted keys ${trusted.join(', ')}`);
  }
  checkSignature(jws as string, kid, decoded, keys.get(kid)!, 'zone');
  return { record, jws: jws as string, keys, signer: kid };
}

/**
 * The VerifiedZone of a zone record that verifyZoneRecord accepted, on another thread of this process:
 * its keys, ready to check records with, without verifying it again (which takes the zod schema).
 */
export function verifiedZoneOf(record: ZoneRecord, jws: string): VerifiedZone {
  const keys = new Map<string, KeyObject>(record.keys.map((jwk) => [thumbprint(jwk), publicKeyObject(jwk)]));
  const signer = decodeCompact(jws).header.kid;
  if (signer === undefined || !keys.has(signer)) throw fail(`the zone record of ${record.zone} is not signed by one of its own keys`);
  return { record, jws, keys, signer };
}

/** Verifies a handle record and that it is the record of `handle`. */
export function verifyHandleRecord(jws: unknown, handle: string, zone: VerifiedZone, nowSeconds: number, options: VerifyOptions = {}): HandleRecord {
  const record = verifyRecord(jws, 'handle', zone, nowSeconds, options) as HandleRecord;
  if (record.handle !== handle) throw fail(`the record is for ${record.handle}, not ${handle}`);
  assureInZone(handle, zone.record.zone);
  return record;
}

/** The names strictly below `zone` and at or above `host`: each could be a zone cut on the way to the host. */
export function namesBetween(host: string, zone: string): string[] {
  const up = ancestors(host);
  const at = up.indexOf(zone);
  return at <= 0 ? [] : up.slice(0, at);
}

/** Most extra gaps a denial may bring (one per label between the zone and the host). */
export const MAX_NO_CUT_PROOFS = 127;

/**
 * Verifies that `handle` does not exist in the zone: `jws` is a signed denial covering the handle's name
 * hash, and `noCut` holds signed denials covering the hash of every name between the zone and the
 * handle's host. The zone's hashed names include its delegated child zones, so those gaps prove that no child
 * zone holds the handle: without them a genuine parent denial could be passed off in place of a referral.
 *
 * `noCut` must hold only what that proof needs, or the denial is refused: no more gaps than names
 * between (none when the host is the zone's own name), none twice, and each covering a name between
 * that `jws` does not. So no junk or unneeded gap rides along to be kept, cached and served by whoever
 * checks it. (Two gaps may still cover one name: a server reading its gaps while a change splits one
 * can send the old and the new, both validly signed; refusing that would fail an honest server.)
 */
export function verifyDenial(jws: unknown, handle: string, zone: VerifiedZone, nowSeconds: number, noCut: readonly unknown[] = []): DenialRecord {
  const record = verifyGap(jws, zone, nowSeconds);
  assureInZone(handle, zone.record.zone);
  if (!denialCovers(record.after, record.next, record.hashes, nameHash(record.hash.salt, handle))) throw fail(`the denial does not cover ${handle}`);
  const host = handle.slice(handle.lastIndexOf('@') + 1);
  const between = namesBetween(host, zone.record.zone);
  // Counted before any signature is checked: more gaps than names can never all be needed.
  if (noCut.length > Math.min(between.length, MAX_NO_CUT_PROOFS))
    throw fail(`the denial carries ${noCut.length} noCut gaps for ${between.length} names between zone and host`);
  if (new Set(noCut).size !== noCut.length) throw fail('the denial carries a noCut gap twice');
  const gaps = noCut.map((g) => verifyGap(g, zone, nowSeconds));
  const used = new Array<boolean>(gaps.length).fill(false);
  for (const name of between) {
    const hash = nameHash(record.hash.salt, name);
    if (denialCovers(record.after, record.next, record.hashes, hash)) continue;
    let covered = false;
    gaps.forEach((g, i) => {
      if (denialCovers(g.after, g.next, g.hashes, hash)) covered = used[i] = true;
    });
    if (!covered) throw fail(`the denial does not prove that ${name} is not a delegated zone`);
  }
  if (used.includes(false)) throw fail('the denial carries noCut gaps its proof does not need');
  return record;
}

function verifyGap(jws: unknown, zone: VerifiedZone, nowSeconds: number, signature = true): DenialRecord {
  const record = verifyRecord(jws, 'denial', zone, nowSeconds, {}, signature) as DenialRecord;
  if (record.hash.salt !== zone.record.denial.salt || record.hash.alg !== zone.record.denial.alg) {
    throw fail('the denial uses hash parameters other than its zone record');
  }
  if (!denialWellFormed(record.after, record.next, record.hashes)) throw fail("the denial's hashes are not ascending inside its range");
  return record;
}

/** Verifies a delegation record of the zone. */
export function verifyDelegation(jws: unknown, zone: VerifiedZone, nowSeconds: number): DelegationRecord {
  return verifyRecord(jws, 'delegation', zone, nowSeconds) as DelegationRecord;
}

/**
 * A secondary copies development zones too, whose handle records may name loopback endpoints: it checks
 * them as a verifier in development mode would. Every verifier outside development mode still refuses
 * them, so such a copy vouches for nothing a production resolver would accept.
 */
const COPY_OPTIONS: VerifyOptions = { allowLoopbackEndpoints: true };

/** A record of a zone's content: what a secondary stores under (type, key). */
export type ContentRecord = HandleRecord | DelegationRecord | DenialRecord;

/**
 * Verifies a record of a zone's content as a secondary receives it, stored under (type, key): everything
 * a resolver will check before it accepts the record (the JWS form, `typ`, a key of the zone, the type's
 * schema, the zone, `iat`/`exp`, and the signature unless `signature` is false: the caller then vouches
 * for it otherwise), and that the record belongs at its position: a handle record under its normalised
 * handle inside the zone, a delegation under its normalised child zone strictly below the zone, a denial
 * under its `after` (`""` for the first) with the zone's hash parameters and its hashes in order.
 */
export function verifyContentRecord(type: string, key: string, jws: unknown, zone: VerifiedZone, nowSeconds: number, signature = true): ContentRecord | null {
  const zoneName = zone.record.zone;
  if (type === 'op') {
    if (historyCheck === null) throw new SchemaNeeded('a history entry');
    historyCheck(key, jws, zone, signature);
    return null;
  }
  if (type === 'handle') {
    const record = verifyRecord(jws, 'handle', zone, nowSeconds, COPY_OPTIONS, signature) as HandleRecord;
    if (record.handle !== key) throw fail(`the handle record of ${record.handle} is stored under ${JSON.stringify(key)}`);
    // isNormalHandle(key) is normaliseHandle(key) === key (record-schema.test.ts fuzzes the two) without
    // IDNA's 2 µs a record; the schema has checked it already, this keeps the position check self-contained.
    if (!isNormalHandle(key))
      throw fail(
        `the handle record of ${JSON.stringify(key)} is not under its normalised handle ${asVerificationFailure(() => normaliseHandle(key), 'handle')}`,
      );
    assureInZone(key, zoneName);
    return record;
  }
  if (type === 'delegation') {
    const record = verifyRecord(jws, 'delegation', zone, nowSeconds, COPY_OPTIONS, signature) as DelegationRecord;
    if (record.name !== key) throw fail(`the delegation of ${record.name} is stored under ${JSON.stringify(key)}`);
    const normalised = asVerificationFailure(() => parseZoneName(key), 'delegation');
    if (normalised !== key || key === zoneName || !isAtOrBelow(key, zoneName))
      throw fail(`the delegation of ${JSON.stringify(key)} is not of a normalised zone strictly below ${zoneName}`);
    return record;
  }
  if (type === 'denial') {
    const record = verifyGap(jws, zone, nowSeconds, signature);
    if ((record.after ?? '') !== key) throw fail(`the denial after ${String(record.after)} is stored under ${JSON.stringify(key)}`);
    return record;
  }
  throw fail(`a zone holds no ${JSON.stringify(type)} records`);
}
function checkPayload<T extends RecordType>(payload: unknown, type: T, zoneName: string, nowSeconds: number, options: VerifyOptions = {}): Records[T] {
  const allowLoopback = options.allowLoopbackEndpoints === true;
  // Handle records and denials are what is verified most (a full transfer checks every one): the fast
  // paths read the usual ones, zod everything else, and words every refusal (record-fast-paths.ts).
  let data: unknown = type === 'handle' ? fastHandleRecord(payload, allowLoopback) : type === 'denial' ? fastDenialRecord(payload) : null;
  if (data === null) {
    if (schemaCheck === null) throw new SchemaNeeded(`a ${type} record the fast paths do not vouch for`);
    data = schemaCheck(type, payload, allowLoopback);
  }
  const record = data as Records[T] & AnyRecord;
  if (record.zone !== zoneName) throw fail(`the ${type} record belongs to zone ${record.zone}, not ${zoneName}`);
  if (record.exp <= nowSeconds) throw fail(`the ${type} record's signature expired at ${new Date(record.exp * 1000).toISOString()}`);
  if (record.iat > nowSeconds + MAX_FUTURE_IAT) throw fail(`the ${type} record is signed in the future (${new Date(record.iat * 1000).toISOString()})`);
  return record;
}

function assureInZone(handle: string, zone: string): void {
  const host = handle.slice(handle.lastIndexOf('@') + 1);
  if (!isAtOrBelow(host, zone)) throw fail(`${handle} is outside zone ${zone} (out of bailiwick)`);
}

/** Checks the signature, unless the active signature cache already saw this JWS verify under this key. */
function checkSignature(jws: string, kid: string, decoded: DecodedJws, key: KeyObject, type: string): void {
  const cache = activeSignatureCache();
  if (cache?.has(kid, jws)) return;
  asVerificationFailure(() => verifyDecoded(decoded, key), type);
  cache?.add(kid, jws);
}

/** Whatever was wrong with a record from the network, the caller hears one code: verification_failed. */
function asVerificationFailure<R>(fn: () => R, type: string): R {
  try {
    return fn();
  } catch (err) {
    if (err instanceof IdnsError) throw new IdnsError('verification_failed', `${type} record: ${err.message}`, { cause: err });
    throw err;
  }
}

function fail(message: string): IdnsError {
  return new IdnsError('verification_failed', message);
}

/** The optional `noCut` gaps of a denial reply, as a list (their contents are verified by verifyDenial). */
export function noCutOf(value: unknown): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new IdnsError('verification_failed', "the denial's noCut must be a list of signed gaps");
  return value;
}
