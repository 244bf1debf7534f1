import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { IdnsError } from '../errors.js';
import { readKeyFile, writeKeyFile } from '../authority/keyring.js';
import { generatePrivateJwk, type SigningKey } from '../records/keys.js';
import { witnessName } from './witness-name.js';

/**
 * A server's witness key (../shared/DESIGN.md, "Witnessed zones"): `DATA/keys/witness.jwk`, mode 0600,
 * made on first use. Its cosignatures are signed under a name derived from its thumbprint, so a resolver
 * configured with the thumbprint alone (`--witness THUMBPRINT`) knows the name too.
 */
export interface WitnessKey {
  name: string;
  key: SigningKey;
}

/**
 * The witness key of a data directory, made (0600) when it has none yet. Refuses a data directory that
 * does not exist: a mistyped --data must not leave a new directory behind.
 */
export function witnessKeyOf(dataDir: string): WitnessKey & { created: boolean } {
  if (!existsSync(dataDir)) throw new IdnsError('invalid_config', `the data directory ${dataDir} does not exist`);
  const dir = join(dataDir, 'keys');
  const path = join(dir, 'witness.jwk');
  let created = false;
  if (!existsSync(path)) {
    try {
      // A key another process wrote meanwhile is kept (EEXIST), and read below.
      writeKeyFile(dir, 'witness.jwk', generatePrivateJwk());
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const key = readKeyFile(path, 'the witness key');
  return { name: witnessName(key.kid), key, created };
}
