import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { IdnsError } from '../errors.js';
import { b64u, fromB64u } from './encoding.js';

/** A public Ed25519 key as a JWK (RFC 8037), with exactly the members idns stores. */
export interface PublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
}

/** A private Ed25519 key as a JWK. */
export interface PrivateJwk extends PublicJwk {
  d: string;
}

/** A key pair ready to sign, with its RFC 7638 thumbprint as `kid`. */
export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicJwk: PublicJwk;
}

const ALLOWED_PUBLIC_MEMBERS = new Set(['kty', 'crv', 'x', 'kid', 'alg', 'use', 'key_ops']);

/** RFC 7638 thumbprint (SHA-256, base64url) of an Ed25519 public key. */
export function thumbprint(jwk: PublicJwk): string {
  // RFC 7638 section 3.2: the required members only, lexicographic order, no whitespace.
  const canonical = `{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}"}`;
  return b64u(createHash('sha256').update(canonical).digest());
}

/**
 * Validates untrusted input as a public Ed25519 JWK and returns its canonical form {kty, crv, x}.
 * A private member (`d`) is refused rather than dropped: a client that sends its private key has a bug
 * the user must hear about.
 */
export function parsePublicJwk(input: unknown, what = 'key'): PublicJwk {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new IdnsError('invalid_key', `${what} must be a JWK object`);
  }
  const jwk = input as Record<string, unknown>;
  if ('d' in jwk) throw new IdnsError('invalid_key', `${what} contains a private key member "d"; send only the public key`);
  for (const member of Object.keys(jwk)) {
    if (!ALLOWED_PUBLIC_MEMBERS.has(member)) throw new IdnsError('invalid_key', `${what} has an unexpected member "${member}"`);
  }
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519') {
    throw new IdnsError('invalid_key', `${what} must be an Ed25519 key (kty "OKP", crv "Ed25519")`);
  }
  if (jwk.alg !== undefined && jwk.alg !== 'EdDSA' && jwk.alg !== 'Ed25519') {
    throw new IdnsError('invalid_key', `${what} has alg "${String(jwk.alg)}", expected EdDSA`);
  }
  const x = typeof jwk.x === 'string' ? fromB64u(jwk.x) : null;
  if (x === null || x.length !== 32 || b64u(x) !== jwk.x) {
    throw new IdnsError('invalid_key', `${what} has an invalid "x": 32 bytes in unpadded base64url expected`);
  }
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
}

/** Turns a validated public JWK into a Node KeyObject for verification. */
export function publicKeyObject(jwk: PublicJwk): KeyObject {
  try {
    return createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x }, format: 'jwk' });
  } catch (cause) {
    throw new IdnsError('invalid_key', 'the public key is not a valid Ed25519 point', { cause });
  }
}

/** Generates a new Ed25519 key pair as a private JWK. */
export function generatePrivateJwk(): PrivateJwk {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return { kty: 'OKP', crv: 'Ed25519', x: String(jwk.x), d: String(jwk.d) };
}

/** Validates a private Ed25519 JWK (from a key file) and makes it a signing key. */
export function signingKeyFromJwk(input: unknown, what = 'private key'): SigningKey {
  if (typeof input !== 'object' || input === null) throw new IdnsError('invalid_key', `${what} must be a JWK object`);
  const jwk = input as Record<string, unknown>;
  const { d, ...pub } = jwk;
  const publicJwk = parsePublicJwk(pub, what);
  const dBytes = typeof d === 'string' ? fromB64u(d) : null;
  if (dBytes === null || dBytes.length !== 32) throw new IdnsError('invalid_key', `${what} has no valid private member "d"`);
  try {
    const privateKey = createPrivateKey({ key: { ...publicJwk, d: d as string }, format: 'jwk' });
    const derived = createPublicKey(privateKey).export({ format: 'jwk' });
    if (derived.x !== publicJwk.x) throw new IdnsError('invalid_key', `${what}: "x" does not match "d"`);
    return { kid: thumbprint(publicJwk), privateKey, publicJwk };
  } catch (cause) {
    if (cause instanceof IdnsError) throw cause;
    throw new IdnsError('invalid_key', `${what} is not a valid Ed25519 private key`, { cause });
  }
}
