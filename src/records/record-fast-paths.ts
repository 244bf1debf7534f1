import { isNormalHandle } from '../names/handle.js';
import { isNormalZoneName } from '../names/zone.js';
import { DENIAL_MAX_HASHES } from './denial.js';
import { DENIAL_SALT_HEX, ED25519_X_B64U, MAX_HANDLE_KEYS, NAME_HASH_HEX, RECORD_LIMITS, SHA256_B64U, type DenialRecord, type HandleRecord } from './types.js';
import { MAX_HISTORY_ENTRIES } from './history-key.js';
import { endpointProblem } from './urls.js';

/**
 * Accelerators of the handle and denial record schemas (schemas.ts), not second schemas. A secondary
 * checks every record it copies (a million in a full transfer): zod spends about 4 µs on each handle
 * record and 7 µs on each denial warm, and many times that in the first thousands, before its code is
 * optimised; these read the usual records in a fraction of that. They only ever ACCEPT: whatever they are
 * not sure of (a failed check, a member they do not know, such as one added to the schema after them)
 * goes to zod, which decides and words the error. So the accepted set is zod's exactly as long as
 * everything accepted here is accepted by zod with the same output, which test/record-fast-paths.test.ts
 * checks on generated valid and mutated records. A field added to a schema needs nothing here (records
 * carrying it go to zod); a bound tightened there must be tightened in the field list too, or that test fails.
 *
 * The input is a JSON.parse result (plain data: no undefined, no prototypes other than Object's and Array's).
 */

/** One member of a record: the check zod's schema makes of its value. */
type FieldCheck = (value: unknown, allowLoopbackEndpoints: boolean) => boolean;
type Fields = readonly (readonly [string, FieldCheck])[];

const int =
  (min: number, max: number): FieldCheck =>
  (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** The members every record starts with (schemas.ts, `base`), in the schema's order. */
const BASE: Fields = [
  ['v', (v) => v === 1],
  ['zone', (v) => typeof v === 'string' && v.length >= 1 && v.length <= 253 && isNormalZoneName(v)],
  ['serial', int(0, 0xffffffff)],
  ['iat', int(0, 2 ** 40)],
  ['exp', int(0, 2 ** 40)],
];

/**
 * Every member of handleSchema, in the schema's order (zod builds its output in this order), with the
 * check of its value. The record-wide checks (no other member, `exp` after `iat` within the validity)
 * are in fastRecord.
 */
const HANDLE_FIELDS: Fields = [
  ...BASE,
  ['type', (v) => v === 'handle'],
  ['handle', (v) => typeof v === 'string' && v.length <= 320 && isNormalHandle(v)],
  ['endpoint', (v, loopback) => typeof v === 'string' && endpointProblem(v, loopback) === null],
  ['keys', keysOk],
  ['ttl', int(0, RECORD_LIMITS.maxTtl)],
  ['op', (v) => typeof v === 'string' && SHA256_B64U.test(v)],
  ['genesis', (v) => typeof v === 'string' && SHA256_B64U.test(v)],
  ['seq', int(1, MAX_HISTORY_ENTRIES)],
];

const nameHash = (v: unknown): boolean => typeof v === 'string' && NAME_HASH_HEX.test(v);

/** Every member of the denial schema, in its order. */
const DENIAL_FIELDS: Fields = [
  ...BASE,
  ['type', (v) => v === 'denial'],
  ['after', (v) => v === null || nameHash(v)],
  ['next', (v) => v === null || nameHash(v)],
  ['hashes', (v) => Array.isArray(v) && v.length <= DENIAL_MAX_HASHES && v.every(nameHash)],
  ['hash', hashParamsOk],
  ['ttl', int(0, RECORD_LIMITS.maxMinimum)],
];

/** Exactly {alg: "sha256", salt: 16 hex digits}. */
function hashParamsOk(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || memberCount(v) !== 2) return false;
  const { alg, salt } = v as Record<string, unknown>;
  return alg === 'sha256' && typeof salt === 'string' && DENIAL_SALT_HEX.test(salt);
}

/** 1 to MAX_HANDLE_KEYS Ed25519 public JWKs, exactly {kty, crv, x}, no `x` twice. */
function keysOk(v: unknown): boolean {
  if (!Array.isArray(v) || v.length < 1 || v.length > MAX_HANDLE_KEYS) return false;
  for (let i = 0; i < v.length; i++) {
    const k: unknown = v[i];
    if (typeof k !== 'object' || k === null || Array.isArray(k)) return false;
    const { kty, crv, x } = k as Record<string, unknown>;
    if (memberCount(k) !== 3 || kty !== 'OKP' || crv !== 'Ed25519' || typeof x !== 'string' || !ED25519_X_B64U.test(x)) return false;
    for (let j = 0; j < i; j++) if ((v[j] as { x: string }).x === x) return false;
  }
  return true;
}

/**
 * The handle record `payload` is, as zod's handle schema would return it (same members, same order, fresh
 * objects), when this fast path can vouch for it; null when it cannot, and zod must decide.
 */
export function fastHandleRecord(payload: unknown, allowLoopbackEndpoints: boolean): HandleRecord | null {
  const out = fastRecord(payload, HANDLE_FIELDS, allowLoopbackEndpoints);
  if (out === null) return null;
  out.keys = (out.keys as { kty: string; crv: string; x: string }[]).map((k) => ({ kty: k.kty, crv: k.crv, x: k.x }));
  return out as unknown as HandleRecord;
}

/** The denial record `payload` is, as zod's denial schema would return it, or null: zod must decide. */
export function fastDenialRecord(payload: unknown): DenialRecord | null {
  const out = fastRecord(payload, DENIAL_FIELDS, false);
  if (out === null) return null;
  out.hashes = (out.hashes as string[]).slice();
  const { alg, salt } = out.hash as { alg: string; salt: string };
  out.hash = { alg, salt };
  return out as unknown as DenialRecord;
}

/**
 * A shallow copy of `payload` with `fields`' members in their order, when it has exactly those members,
 * each passes its check, and `exp` is after `iat` within the longest validity; else null.
 */
function fastRecord(payload: unknown, fields: Fields, allowLoopbackEndpoints: boolean): Record<string, unknown> | null {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return null;
  const p = payload as Record<string, unknown>;
  // As many members as fields, and each of them present: no other (the schemas are strict).
  if (memberCount(p) !== fields.length) return null;
  for (const [name, ok] of fields) {
    if (!Object.hasOwn(p, name) || !ok(p[name], allowLoopbackEndpoints)) return null;
  }
  const iat = p.iat as number;
  const exp = p.exp as number;
  if (!(exp > iat && exp - iat <= RECORD_LIMITS.maxSignatureValidity)) return null;
  const out: Record<string, unknown> = {};
  for (const [name] of fields) out[name] = p[name];
  return out;
}

/** Own enumerable members of a JSON.parse object (they have no others), without building a list of them. */
function memberCount(o: object): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}
