import { sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { nodeEd25519Requested } from '../environment.js';
import { publicKeyObject, type PublicJwk } from './keys.js';

/**
 * Ed25519 signing and verification (RFC 8032) behind one interface, with two implementations.
 *
 * libsodium (through sodium-native's prebuilt binding) is the server's default: on the machines idns runs on
 * it signs in ~19 µs and verifies in ~50 µs, where node:crypto (OpenSSL's portable Ed25519 code) takes ~36
 * and ~104 µs, and signatures are most of the cost of an import, a registration and a cold lookup.
 * Ed25519 signatures are deterministic, so both produce the same bytes for the same key and message.
 * This module knows only node:crypto, so that the resolver library (src/resolver-library.ts), which
 * microblog servers install without the server's native dependencies, never names sodium-native: the
 * server's entry points import ed25519-sodium.ts, which loads the binding and installs it here. node:crypto
 * stays in use when the binding does not load on a platform, or when IDNS_ED25519=node asks for it.
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

const isKeyObject = (key: Ed25519PublicKey): key is KeyObject => typeof (key as KeyObject).export === 'function';

/** node:crypto's Ed25519: always there. */
export const nodeEd25519: Ed25519 = {
  name: 'node:crypto',
  sign: (message, privateKey) => nodeSign(null, message, privateKey),
  verify: (message, signature, publicKey) => nodeVerify(null, message, isKeyObject(publicKey) ? publicKey : publicKeyObject(publicKey), signature),
};

let active: Ed25519 = nodeEd25519;

/**
 * Why libsodium is not in use when the server's loader (ed25519-sodium.ts) ran and could not load it; null
 * otherwise. The operator sees it in the server's startup log.
 */
export let ed25519Fallback: string | null = null;

/** node:crypto was asked for (IDNS_ED25519=node): a choice, not a failure to warn about. */
export const ed25519NodeRequested = nodeEd25519Requested();

/**
 * Makes `impl` the implementation this process uses (called once, at start, by ed25519-sodium.ts), with the
 * reason when it is node:crypto because the faster one did not load.
 */
export function useEd25519(impl: Ed25519, fallback: string | null = null): void {
  active = impl;
  ed25519Fallback = fallback;
}

/**
 * The implementation this process uses: node:crypto unless the server's entry points loaded libsodium
 * (src/records/ed25519-sodium.ts). One stable object that forwards, so that callers holding it see the
 * choice whenever it was made, and the resolver library never names the native module.
 */
export const ed25519: Ed25519 = {
  get name() {
    return active.name;
  },
  sign: (message, privateKey) => active.sign(message, privateKey),
  verify: (message, signature, publicKey) => active.verify(message, signature, publicKey),
};
