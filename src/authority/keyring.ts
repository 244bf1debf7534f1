import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IdnsError } from '../errors.js';
import { generatePrivateJwk, signingKeyFromJwk, type PrivateJwk, type SigningKey } from '../records/keys.js';

/**
 * Zone signing keys, one file per key under `<data>/keys/<zone>/<kid>.jwk`, mode 0600. Keys never enter
 * the database, so a transfer or a copy of the database cannot leak them.
 */
export class KeyRing {
  private readonly cache = new Map<string, SigningKey>();

  constructor(private readonly keysDir: string) {}

  /** Generates a new key for a zone, writes it (0600) and returns it. */
  create(zone: string): SigningKey {
    const jwk = generatePrivateJwk();
    const key = signingKeyFromJwk(jwk);
    writeKeyFile(this.zoneDir(zone), `${key.kid}.jwk`, jwk);
    this.cache.set(`${zone}/${key.kid}`, key);
    return key;
  }

  /** Loads a zone's key by kid, refusing key files that others can read. */
  load(zone: string, kid: string): SigningKey {
    const id = `${zone}/${kid}`;
    const cached = this.cache.get(id);
    if (cached) return cached;
    const key = readKeyFile(join(this.zoneDir(zone), `${kid}.jwk`), `the key of zone ${zone}`);
    if (key.kid !== kid) throw new IdnsError('key_unavailable', `key file for ${kid} holds key ${key.kid}`);
    this.cache.set(id, key);
    return key;
  }

  /**
   * Copies a zone key from another key directory (a backup of the old primary's) into this one, taking
   * the first key file there whose thumbprint is in `accepted`.
   */
  importFrom(zone: string, fromDir: string, accepted: ReadonlySet<string>): SigningKey {
    let files: string[];
    try {
      files = readdirSync(fromDir).filter((f) => f.endsWith('.jwk'));
    } catch (cause) {
      throw new IdnsError('key_unavailable', `cannot read the key directory ${fromDir}`, { cause });
    }
    for (const file of files) {
      const key = readKeyFile(join(fromDir, file), 'key file');
      if (!accepted.has(key.kid)) continue;
      const dir = this.zoneDir(zone);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
      const target = join(dir, `${key.kid}.jwk`);
      if (!existsSync(target)) copyFileSync(join(fromDir, file), target);
      chmodSync(target, 0o600);
      this.cache.set(`${zone}/${key.kid}`, key);
      return key;
    }
    throw new IdnsError('key_unavailable', `${fromDir} holds no key of zone ${zone} (the zone record lists ${[...accepted].join(', ')})`);
  }

  /** True when the key file for (zone, kid) exists. */
  has(zone: string, kid: string): boolean {
    return existsSync(join(this.zoneDir(zone), `${kid}.jwk`));
  }

  private zoneDir(zone: string): string {
    // '.' is the root zone; other names are LDH plus dots, safe as a directory name.
    return join(this.keysDir, zone === '.' ? '_root' : zone);
  }
}

/**
 * Writes a private JWK as `dir/file`, mode 0600, in a directory made 0700. Never overwrites an existing
 * key file ('wx': it throws EEXIST).
 */
export function writeKeyFile(dir: string, file: string, jwk: PrivateJwk): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  writeFileSync(join(dir, file), `${JSON.stringify(jwk)}\n`, { mode: 0o600, flag: 'wx' });
}

/** Reads a private JWK file, refusing one that group or others can read (the key would be exposed). */
export function readKeyFile(path: string, what = 'key file'): SigningKey {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (cause) {
    throw new IdnsError('key_unavailable', `${what} is missing: ${path}`, { cause });
  }
  if ((mode & 0o077) !== 0) {
    throw new IdnsError('key_unavailable', `${what} ${path} is readable by other users (mode ${(mode & 0o777).toString(8)}); fix it with: chmod 600 ${path}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new IdnsError('invalid_key', `${what} ${path} is not a JSON JWK`, { cause });
  }
  return signingKeyFromJwk(parsed, `${what} ${path}`);
}
