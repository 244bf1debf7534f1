import { IdnsError } from '../errors.js';
import { ed25519, type Ed25519PublicKey } from './ed25519.js';
import { b64u, fromB64u } from './encoding.js';
import { parseIJson } from './ijson.js';
import type { PublicJwk, SigningKey } from './keys.js';

/**
 * Compact JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037), written directly over ed25519.ts because
 * it signs synchronously (the write path signs inside a transaction) and several times faster than an
 * async wrapper. The output is plain compact JWS: jose's compactVerify accepts it, and tests check that.
 */

/** `typ` of records signed by a zone key. */
export const RECORD_TYP = 'idns-record';
/** `typ` of change requests signed by a handle's key. Distinct from records so one can't pass as the other. */
export const OPERATION_TYP = 'idns-op';

/** The protected header idns reads. */
export interface JwsHeader {
  alg: 'EdDSA';
  typ?: string;
  kid?: string;
  jwk?: unknown;
}

/** A compact JWS split into its parts, not yet verified. */
export interface DecodedJws {
  header: JwsHeader;
  payload: unknown;
  /** The exact bytes that were signed: `base64url(header) "." base64url(payload)`. */
  signingInput: string;
  signature: Buffer;
}

/** The first 16 characters of a compact JWS's signature (part of an answer's ETag): what tells two signed records apart. */
export function signaturePrefix(jws: string): string {
  const at = jws.lastIndexOf('.') + 1;
  return jws.slice(at, at + 16);
}

/** signaturePrefix of the compact JWS `bytes[start, end)` (ASCII). */
export function signaturePrefixOf(bytes: Buffer, start: number, end: number): string {
  const dot = bytes.lastIndexOf(0x2e, end - 1);
  const at = dot < start ? start : dot + 1;
  return bytes.toString('latin1', at, Math.min(at + 16, end));
}

/** Largest JWS idns will look at; records and requests are a few KiB at most. */
export const MAX_JWS_LENGTH = 48 * 1024;

/** Signs a JSON payload with a zone or handle key and returns the compact serialisation. */
export function signCompact(payload: unknown, key: SigningKey, typ: string, extraHeader: Record<string, unknown> = {}): string {
  return signCompactText(JSON.stringify(payload), key, typ, extraHeader);
}

/** Like signCompact, for a payload already serialised as JSON text. */
export function signCompactText(
  payloadJson: string,
  key: Pick<SigningKey, 'kid' | 'privateKey'>,
  typ: string,
  extraHeader: Record<string, unknown> = {},
): string {
  const header = { alg: 'EdDSA', typ, kid: key.kid, ...extraHeader };
  const signingInput = `${b64u(JSON.stringify(header))}.${b64u(payloadJson)}`;
  const signature = ed25519.sign(Buffer.from(signingInput), key.privateKey);
  return `${signingInput}.${b64u(signature)}`;
}

/** Splits and decodes a compact JWS without verifying it; throws invalid_jws on anything malformed. */
export function decodeCompact(jws: unknown): DecodedJws {
  if (typeof jws !== 'string') throw new IdnsError('invalid_jws', 'a JWS must be a string');
  if (jws.length > MAX_JWS_LENGTH) throw new IdnsError('invalid_jws', `the JWS is longer than ${MAX_JWS_LENGTH} characters`);
  const parts = jws.split('.');
  if (parts.length !== 3) throw new IdnsError('invalid_jws', 'a compact JWS has exactly three dot-separated parts');
  const [h, p, s] = parts as [string, string, string];
  const header = h === lastHeader.text ? lastHeader.header : decodeHeader(h);
  const payloadBytes = fromB64u(p);
  const signature = fromB64u(s);
  if (!payloadBytes || !signature) throw new IdnsError('invalid_jws', 'the JWS is not valid base64url');
  if (signature.length !== 64) throw new IdnsError('invalid_signature', 'an Ed25519 signature is 64 bytes');
  return {
    header,
    payload: parseJson(payloadBytes, 'payload'),
    signingInput: `${h}.${p}`,
    signature,
  };
}

/**
 * The last header decoded, by its exact base64url text. A zone's records all share one header, so a
 * transfer or a batch of answers decodes and checks it once; it is frozen, since every caller shares it.
 */
let lastHeader: { text: string; header: JwsHeader } = { text: '', header: Object.freeze({ alg: 'EdDSA' }) };

function decodeHeader(h: string): JwsHeader {
  const headerBytes = fromB64u(h);
  if (!headerBytes) throw new IdnsError('invalid_jws', 'the JWS is not valid base64url');
  const header = parseJson(headerBytes, 'header');
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new IdnsError('invalid_jws', 'the JWS header is not a JSON object');
  }
  const hdr = header as Record<string, unknown>;
  if (hdr.alg !== 'EdDSA') throw new IdnsError('invalid_jws', `unsupported JWS alg ${JSON.stringify(hdr.alg)}; only EdDSA is accepted`);
  // RFC 7515 4.1.11: a header with "crit" names extensions we do not implement, so it must be rejected.
  if ('crit' in hdr || 'b64' in hdr) throw new IdnsError('invalid_jws', 'JWS header extensions ("crit", "b64") are not supported');
  if (hdr.kid !== undefined && typeof hdr.kid !== 'string') throw new IdnsError('invalid_jws', 'JWS "kid" must be a string');
  if (hdr.typ !== undefined && typeof hdr.typ !== 'string') throw new IdnsError('invalid_jws', 'JWS "typ" must be a string');
  const frozen = Object.freeze(hdr) as unknown as JwsHeader;
  lastHeader = { text: h, header: frozen };
  return frozen;
}

/** Checks the signature of a decoded JWS with a public key; throws invalid_signature if it does not hold. */
export function verifyDecoded(decoded: DecodedJws, key: Ed25519PublicKey): void {
  let ok = false;
  try {
    ok = ed25519.verify(Buffer.from(decoded.signingInput), decoded.signature, key);
  } catch (cause) {
    throw new IdnsError('invalid_signature', 'the signature could not be checked', { cause });
  }
  if (!ok) throw new IdnsError('invalid_signature', 'the JWS signature does not verify');
}

/** Finds the key a JWS names by `kid` among candidate public keys (thumbprints precomputed by the caller). */
export function keyForKid<K extends { kid: string; jwk: PublicJwk }>(decoded: DecodedJws, keys: readonly K[]): K {
  const kid = decoded.header.kid;
  if (kid === undefined) throw new IdnsError('invalid_jws', 'the JWS header has no "kid"');
  const found = keys.find((k) => k.kid === kid);
  if (!found) throw new IdnsError('unauthorized_key', `the signing key ${kid} is not one of the expected keys`);
  return found;
}

/** Header and payload are I-JSON (RFC 7493): a member twice would let two readers see two statements. */
function parseJson(bytes: Buffer, what: string): unknown {
  return parseIJson(bytes, `the JWS ${what}`, 'invalid_jws');
}
