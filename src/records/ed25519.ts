import { sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import { fromB64u } from './encoding.js';
import { publicKeyObject, type PublicJwk } from './keys.js';

/**
 * Ed25519 signing and verification (RFC 8032) behind one interface, with two implementations.
 *
 * libsodium (through sodium-native's prebuilt binding) is the default: on the machines idns runs on it
 * signs in ~19 µs and verifies in ~50 µs, where node:crypto (OpenSSL's portable Ed25519 code) takes ~36
 * and ~104 µs, and signatures are most of the cost of an import, a registration and a cold lookup.
 * Ed25519 signatures are deterministic, so both produce the same bytes for the same key and message.
 * node:crypto is used when the binding does not load on a platform, or when IDNS_ED25519=node asks for it.
 *
 * libsodium's verification is the stricter of the two (it refuses small-order public keys and
 * non-canonical encodings, which no honest signer produces), so whatever it accepts node:crypto accepts.
 */

/** A public key to verify with: a KeyObject, or the JWK it would be made from. */
export type Ed25519PublicKey = KeyObject | PublicJwk;

/** One Ed25519 implementation. */
export interface Ed25519 {
  readonly name: 'libsodium' | 'node:crypto';
  /** Signs a message with a private KeyObject and returns the 64-byte signature. */
  sign(message: Buffer, privateKey: KeyObject): Buffer;
  /** True when the signature of the message verifies under the public key. */
  verify(message: Buffer, signature: Buffer, publicKey: Ed25519PublicKey): boolean;
}

/** The part of sodium-native idns uses (the package ships no types). */
interface SodiumBinding {
  crypto_sign_detached(signature: Buffer, message: Buffer, secretKey: Buffer): void;
  crypto_sign_verify_detached(signature: Buffer, message: Buffer, publicKey: Buffer): boolean;
}

const isKeyObject = (key: Ed25519PublicKey): key is KeyObject => typeof (key as KeyObject).export === 'function';

/** node:crypto's Ed25519: always there. */
export const nodeEd25519: Ed25519 = {
  name: 'node:crypto',
  sign: (message, privateKey) => nodeSign(null, message, privateKey),
  verify: (message, signature, publicKey) => nodeVerify(null, message, isKeyObject(publicKey) ? publicKey : publicKeyObject(publicKey), signature),
};

/**
 * libsodium's Ed25519 over a loaded binding. It takes raw keys: a KeyObject's bytes are exported once
 * and remembered for as long as the KeyObject lives (a zone key signs millions of records).
 */
export function sodiumEd25519(sodium: SodiumBinding): Ed25519 {
  const secretKeys = new WeakMap<KeyObject, Buffer>();
  const publicKeys = new WeakMap<KeyObject, Buffer>();
  const secretKeyOf = (key: KeyObject): Buffer => {
    let raw = secretKeys.get(key);
    if (!raw) {
      const jwk = key.export({ format: 'jwk' });
      if (key.type !== 'private' || jwk.crv !== 'Ed25519') throw new TypeError('an Ed25519 private key is needed to sign');
      // libsodium's secret key is the 32-byte seed followed by the 32-byte public key.
      raw = Buffer.concat([fromB64u(jwk.d!)!, fromB64u(jwk.x!)!]);
      secretKeys.set(key, raw);
    }
    return raw;
  };
  const publicKeyOf = (key: Ed25519PublicKey): Buffer | null => {
    if (!isKeyObject(key)) return fromB64u(key.x);
    let raw = publicKeys.get(key);
    if (!raw) {
      const jwk = key.export({ format: 'jwk' });
      if (jwk.crv !== 'Ed25519') throw new TypeError('an Ed25519 public key is needed to verify');
      raw = fromB64u(jwk.x!)!;
      publicKeys.set(key, raw);
    }
    return raw;
  };
  return {
    name: 'libsodium',
    sign(message, privateKey) {
      const signature = Buffer.allocUnsafe(64);
      sodium.crypto_sign_detached(signature, message, secretKeyOf(privateKey));
      return signature;
    },
    verify(message, signature, publicKey) {
      const raw = publicKeyOf(publicKey);
      if (raw === null || raw.length !== 32 || signature.length !== 64) return false;
      return sodium.crypto_sign_verify_detached(signature, message, raw);
    },
  };
}

/** Why libsodium is not in use, when it is not: the operator sees it in the server's startup log. */
export let ed25519Fallback: string | null = null;

/** node:crypto was asked for (IDNS_ED25519=node): a choice, not a failure to warn about. */
export const ed25519NodeRequested = process.env.IDNS_ED25519 === 'node';

function choose(): Ed25519 {
  if (ed25519NodeRequested) {
    ed25519Fallback = 'IDNS_ED25519=node';
    return nodeEd25519;
  }
  try {
    // createRequire: sodium-native is a CommonJS addon, and a failed load must leave node:crypto in place.
    return sodiumEd25519(createRequire(import.meta.url)('sodium-native') as SodiumBinding);
  } catch (cause) {
    ed25519Fallback = `sodium-native did not load (${(cause as Error).message})`;
    return nodeEd25519;
  }
}

/** The implementation this process uses. */
export const ed25519: Ed25519 = choose();
