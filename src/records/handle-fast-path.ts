import { isNormalHandle } from '../names/handle.js';
import { isNormalZoneName } from '../names/zone.js';
import { ED25519_X_B64U, MAX_HANDLE_KEYS, RECORD_LIMITS, SHA256_B64U, type HandleRecord } from './types.js';
import { endpointProblem } from './urls.js';

/**
 * An accelerator of the handle record schema (types.ts, handleSchema), not a second schema. A secondary
 * checks every record it copies (a million in a full transfer) and zod spends about 4 µs on each handle
 * record; this reads the usual record in well under half that. It only ever ACCEPTS: whatever it is not
 * sure of (a failed check, a member it does not know, such as one added to the schema after it) goes to
 * zod, which decides and words the error. So the accepted set is zod's exactly as long as everything
 * accepted here is accepted by zod with the same output, which test/handle-fast-path.test.ts checks
 * on generated valid and mutated records. A field added to handleSchema needs nothing here (records
 * carrying it go to zod); a bound tightened there must be tightened in FIELDS too, or that test fails.
 *
 * The input is a JSON.parse result (plain data: no undefined, no prototypes other than Object's and Array's).
 */

/** One member of the handle record: the check zod's schema makes of its value. */
type FieldCheck = (value: unknown, allowLoopbackEndpoints: boolean) => boolean;

const int =
  (min: number, max: number): FieldCheck =>
  (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/**
 * Every member of handleSchema, in the schema's order (zod builds its output in this order), with the
 * check of its value. The record-wide checks (no other member, `exp` after `iat` within the validity)
 * are in fastHandleRecord.
 */
const FIELDS: readonly (readonly [string, FieldCheck])[] = [
  ['v', (v) => v === 1],
  ['zone', (v) => typeof v === 'string' && v.length >= 1 && v.length <= 253 && isNormalZoneName(v)],
  ['serial', int(0, 0xffffffff)],
  ['iat', int(0, 2 ** 40)],
  ['exp', int(0, 2 ** 40)],
  ['type', (v) => v === 'handle'],
  ['handle', (v) => typeof v === 'string' && v.length <= 320 && isNormalHandle(v)],
  ['endpoint', (v, loopback) => typeof v === 'string' && endpointProblem(v, loopback) === null],
  ['keys', keysOk],
  ['ttl', int(0, RECORD_LIMITS.maxTtl)],
  ['op', (v) => typeof v === 'string' && SHA256_B64U.test(v)],
];

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
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return null;
  const p = payload as Record<string, unknown>;
  // As many members as FIELDS, and each of FIELDS present: no other (the schema is strict).
  if (memberCount(p) !== FIELDS.length) return null;
  for (const [name, ok] of FIELDS) {
    if (!Object.hasOwn(p, name) || !ok(p[name], allowLoopbackEndpoints)) return null;
  }
  const iat = p.iat as number;
  const exp = p.exp as number;
  if (!(exp > iat && exp - iat <= RECORD_LIMITS.maxSignatureValidity)) return null;
  const out: Record<string, unknown> = {};
  for (const [name] of FIELDS) out[name] = p[name];
  out.keys = (p.keys as { kty: string; crv: string; x: string }[]).map((k) => ({ kty: k.kty, crv: k.crv, x: k.x }));
  return out as unknown as HandleRecord;
}

/** Own enumerable members of a JSON.parse object (they have no others), without building a list of them. */
function memberCount(o: object): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}
