import { IdnsError, isIdnsError } from '../errors.js';
import { ed25519 } from './ed25519.js';
import { fromB64u } from './encoding.js';
import { decodeCompact, type DecodedJws, type JwsHeader } from './jws.js';
import { parsePublicJwk, thumbprint, type PublicJwk } from './keys.js';
import { MAX_HANDLE_KEYS } from './types.js';

/**
 * Checks that a handle's owner signed something: a microblog server that resolved `@alice@example.com`
 * verifies a signed request, post or token against the keys in the result. Ed25519 only (the keys idns
 * records hold), through the process's Ed25519 (node:crypto in the resolver library).
 */

/** A handle's keys, as a resolver result (ResolvedHandle, LookupResult) carries them. */
export interface HandleKeys {
  readonly keys: readonly PublicJwk[];
  /** A result marked `verified: false` (the WebFinger bridge) has no anchored keys: nothing verifies. */
  readonly verified?: boolean;
}

/** Why a signature was not accepted, for logs and error messages (not a stable code). */
export interface SignatureRefused {
  ok: false;
  reason: string;
}

/** The outcome of verifyHandleSignature: which key signed (its RFC 7638 thumbprint), or why none did. */
export type HandleSignatureCheck = { ok: true; kid: string } | SignatureRefused;

/** The outcome of verifyHandleJws: the verified header and JSON payload with the signing key, or why not. */
export type HandleJwsCheck = { ok: true; kid: string; header: JwsHeader; payload: unknown } | SignatureRefused;

const SIGNATURE_BYTES = 64;
// A 64-byte signature is 86 characters of unpadded base64url or 88 of padded base64 (RFC 4648 section 4),
// the spelling HTTP signatures (draft-cavage, RFC 9421's byte sequences) use.
const B64_PADDED = /^[A-Za-z0-9+/]{86}==$/;

/**
 * Verifies an Ed25519 signature over `data` (bytes, or a string taken as UTF-8) by one of the handle's
 * keys. `signature` is the 64 bytes, or their unpadded base64url or padded base64 text. Resolves to the
 * thumbprint of the key that signed, or to `{ ok: false, reason }` when none did or the signature is
 * malformed; throws IdnsError 'invalid_key' when `resolved.keys` is not a list of at most 8 Ed25519 JWKs.
 * A result marked `verified: false` (the WebFinger bridge) is refused whatever keys it holds: only keys
 * anchored by the resolver's checks count.
 */
export async function verifyHandleSignature(resolved: HandleKeys, data: Uint8Array | string, signature: Uint8Array | string): Promise<HandleSignatureCheck> {
  const keys = checkedKeys(resolved);
  if (resolved.verified === false) return { ok: false, reason: UNVERIFIED };
  const sig = signatureBytes(signature);
  if (sig === null) return { ok: false, reason: 'the signature is not 64 bytes (or their base64url or padded base64 text)' };
  const message = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (const key of keys) {
    if (ed25519.verify(message, sig, key)) return { ok: true, kid: thumbprint(key) };
  }
  return { ok: false, reason: keys.length === 0 ? 'the handle has no keys' : "the signature verifies under none of the handle's keys" };
}

/**
 * Verifies a compact JWS (EdDSA; header, payload and size under the rules idns applies to its own JWS:
 * I-JSON, no `crit`, at most 48 KiB) signed by one of the handle's keys. A `kid` in the header must be the
 * thumbprint of one of them; without one every key is tried. Resolves to the header, the parsed JSON
 * payload and the signing key's thumbprint, or to `{ ok: false, reason }`; throws IdnsError 'invalid_key'
 * on a malformed key list, as verifyHandleSignature does.
 */
export async function verifyHandleJws(resolved: HandleKeys, jws: string): Promise<HandleJwsCheck> {
  const keys = checkedKeys(resolved);
  if (resolved.verified === false) return { ok: false, reason: UNVERIFIED };
  let decoded: DecodedJws;
  try {
    decoded = decodeCompact(jws);
  } catch (err) {
    // Malformed input is an answer here (the caller refuses the request), with the parser's reason.
    if (isIdnsError(err, 'invalid_jws') || isIdnsError(err, 'invalid_signature')) return { ok: false, reason: err.message };
    throw err;
  }
  const kid = decoded.header.kid;
  const candidates = kid === undefined ? keys : keys.filter((key) => thumbprint(key) === kid);
  if (candidates.length === 0) {
    return { ok: false, reason: kid === undefined ? 'the handle has no keys' : `the JWS names key ${kid}, which is not one of the handle's keys` };
  }
  const message = Buffer.from(decoded.signingInput);
  for (const key of candidates) {
    if (ed25519.verify(message, decoded.signature, key)) return { ok: true, kid: kid ?? thumbprint(key), header: decoded.header, payload: decoded.payload };
  }
  return { ok: false, reason: "the JWS signature verifies under none of the handle's keys" };
}

const UNVERIFIED = "the handle's result is not verified (verified: false): it has no keys to trust";

/** The result's keys, validated: a hand-made or corrupted list is a caller's bug, reported as such. */
function checkedKeys(resolved: HandleKeys): PublicJwk[] {
  const keys: unknown = resolved?.keys;
  if (!Array.isArray(keys)) throw new IdnsError('invalid_key', 'the handle result has no "keys" array');
  if (keys.length > MAX_HANDLE_KEYS) throw new IdnsError('invalid_key', `a handle has at most ${MAX_HANDLE_KEYS} keys; got ${keys.length}`);
  return keys.map((key, i) => parsePublicJwk(key, `keys[${i}]`));
}

function signatureBytes(signature: Uint8Array | string): Buffer | null {
  if (typeof signature !== 'string') {
    return signature.byteLength === SIGNATURE_BYTES ? Buffer.from(signature.buffer, signature.byteOffset, signature.byteLength) : null;
  }
  const bytes = B64_PADDED.test(signature) ? canonicalBase64(signature) : fromB64u(signature);
  return bytes !== null && bytes.length === SIGNATURE_BYTES ? bytes : null;
}

/** Decodes padded base64, refusing a non-canonical spelling (unused trailing bits set), like fromB64u. */
function canonicalBase64(text: string): Buffer | null {
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64') === text ? bytes : null;
}
