import { readFileSync } from 'node:fs';
import { IdnsError } from '../errors.js';
import { parsePublicJwk, type PublicJwk } from '../records/keys.js';

/** The public key of a JWK file, public or private (as idns keygen writes it); errors name `flag`. */
export function readPublicKeyFile(file: string, flag: string): PublicJwk {
  let jwk: unknown;
  try {
    jwk = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new IdnsError('invalid_key', `${flag} ${file} is not a readable JWK file`, { cause });
  }
  const { kty, crv, x } = (jwk ?? {}) as Record<string, unknown>;
  return parsePublicJwk({ kty, crv, x }, `${flag} ${file}`);
}
