import { createRequire } from 'node:module';
import { fromB64u } from './encoding.js';
import { ed25519NodeRequested, nodeEd25519, useEd25519, type Ed25519, type Ed25519PublicKey } from './ed25519.js';
import type { KeyObject } from 'node:crypto';

/**
 * The server's Ed25519: libsodium through sodium-native, installed into ed25519.ts when this module is
 * imported. Only the server's entry points import it (src/index.ts, src/context.ts, src/cli/main.ts and the
 * worker threads' modules); the resolver library does not, so it neither installs nor loads the binding.
 */

/** The part of sodium-native idns uses (the package ships no types). */
interface SodiumBinding {
  crypto_sign_detached(signature: Buffer, message: Buffer, secretKey: Buffer): void;
  crypto_sign_verify_detached(signature: Buffer, message: Buffer, publicKey: Buffer): boolean;
}

const isKeyObject = (key: Ed25519PublicKey): key is KeyObject => typeof (key as KeyObject).export === 'function';

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

function install(): void {
  if (ed25519NodeRequested) {
    useEd25519(nodeEd25519, 'IDNS_ED25519=node');
    return;
  }
  try {
    // createRequire: sodium-native is a CommonJS addon, and a failed load must leave node:crypto in place.
    useEd25519(sodiumEd25519(createRequire(import.meta.url)('sodium-native') as SodiumBinding));
  } catch (cause) {
    useEd25519(nodeEd25519, `sodium-native did not load (${(cause as Error).message})`);
  }
}

install();
