import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generatePrivateJwk, thumbprint, type PrivateJwk, type PublicJwk } from '../../src/records/keys.js';

/** A handle owner's key pair. */
export interface UserKey {
  private: PrivateJwk;
  public: PublicJwk;
  kid: string;
}

/** Makes a new Ed25519 key for a test user. */
export function newUserKey(): UserKey {
  const priv = generatePrivateJwk();
  const pub: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: priv.x };
  return { private: priv, public: pub, kid: thumbprint(pub) };
}

/** Writes a key to `dir/name` with mode 0600, as `idns keygen` does, and returns the path. */
export function writeUserKey(dir: string, name: string, key: UserKey): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(key.private), { mode: 0o600 });
  return path;
}
