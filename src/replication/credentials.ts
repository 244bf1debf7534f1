import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IdnsError } from '../errors.js';

/**
 * Transfer credentials, like DNS TSIG: a primary and each of its secondaries share a secret; a transfer
 * or notify request carries an HMAC-SHA256 over its method, path, time and body. Secrets live in the key
 * directory (files mode 0600), never in the database.
 *
 * Header: `Authorization: IDNS-HMAC name="NAME", ts="UNIX SECONDS", mac="BASE64URL"`, where
 * mac = HMAC-SHA256(secret, METHOD "\n" PATH_AND_QUERY "\n" TS "\n" hex(SHA-256(body))).
 */
export interface Credential {
  name: string;
  /** base64url of 32 random bytes. */
  secret: string;
}

/** A secondary allowed to transfer a zone, and where to notify it. */
export interface AllowedSecondary {
  secret: string;
  notify: string | null;
}

/** How far a request's time may be from ours, seconds. */
export const MAX_AUTH_SKEW = 300;

const HEADER = /^IDNS-HMAC name="([A-Za-z0-9._-]{1,64})", ts="(\d{1,12})", mac="([A-Za-z0-9_-]{43})"$/;

/** Makes a new random secret. */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** The Authorization header value for a request. */
export function authorization(cred: Credential, method: string, pathAndQuery: string, body: string, nowSeconds: number): string {
  return `IDNS-HMAC name="${cred.name}", ts="${nowSeconds}", mac="${mac(cred.secret, method, pathAndQuery, body, nowSeconds)}"`;
}

/**
 * Checks a request's Authorization header against the secrets the zone knows; returns the name of the
 * credential. auth_required without a header, auth_failed for anything else wrong, and the message
 * says nothing about the zone.
 */
export function verifyAuthorization(
  header: string | undefined,
  method: string,
  pathAndQuery: string,
  body: string,
  nowSeconds: number,
  secretOf: (name: string) => string | undefined,
): string {
  if (header === undefined) throw new IdnsError('auth_required', 'this zone requires transfer credentials');
  const m = HEADER.exec(header);
  if (!m) throw new IdnsError('auth_failed', 'malformed transfer credentials');
  const [, name, ts, given] = m as unknown as [string, string, string, string];
  if (Math.abs(Number(ts) - nowSeconds) > MAX_AUTH_SKEW) throw new IdnsError('auth_failed', 'the credentials are too old or from the future; check the clocks');
  const secret = secretOf(name);
  // An unknown name is checked against a throwaway secret so that its timing matches a wrong mac.
  const expected = Buffer.from(mac(secret ?? newSecret(), method, pathAndQuery, body, Number(ts)), 'base64url');
  const actual = Buffer.from(given, 'base64url');
  if (secret === undefined || actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
    throw new IdnsError('auth_failed', 'transfer credentials refused');
  }
  return name;
}

function mac(secret: string, method: string, pathAndQuery: string, body: string, ts: number): string {
  const bodyHash = createHash('sha256').update(body).digest('hex');
  return createHmac('sha256', Buffer.from(secret, 'base64url')).update(`${method}\n${pathAndQuery}\n${ts}\n${bodyHash}`).digest('base64url');
}

/** Parses `NAME:SECRET` as given on the command line. */
export function parseCredential(text: string): Credential {
  const i = text.indexOf(':');
  const name = text.slice(0, i);
  const secret = text.slice(i + 1);
  if (i <= 0 || !/^[A-Za-z0-9._-]{1,64}$/.test(name) || !/^[A-Za-z0-9_-]{43}$/.test(secret)) {
    throw new IdnsError('invalid_request', 'a credential is NAME:SECRET as printed by `idns zone allow-transfer`');
  }
  return { name, secret };
}

/** The credential files of the zones held here, under `<data>/keys/<zone>/`. */
export class CredentialStore {
  constructor(private readonly keysDir: string) {}

  /** Secondaries allowed to transfer `zone` (empty: transfers are open to anyone). */
  allowed(zone: string): Record<string, AllowedSecondary> {
    return this.read<Record<string, AllowedSecondary>>(zone, 'transfer-acl.json') ?? {};
  }

  /** Allows a secondary; returns its new credential (the only time the secret is shown). */
  allow(zone: string, name: string, notify: string | null): Credential {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new IdnsError('invalid_request', 'a secondary name is 1-64 of [A-Za-z0-9._-]');
    const acl = this.allowed(zone);
    const secret = newSecret();
    acl[name] = { secret, notify };
    this.write(zone, 'transfer-acl.json', acl);
    return { name, secret };
  }

  /** Removes a secondary's access; false when it had none. */
  deny(zone: string, name: string): boolean {
    const acl = this.allowed(zone);
    if (!(name in acl)) return false;
    delete acl[name];
    this.write(zone, 'transfer-acl.json', acl);
    return true;
  }

  /** The credential a secondary presents to its primary, if configured. */
  own(zone: string): Credential | null {
    return this.read<Credential>(zone, 'credential.json');
  }

  /** Stores the credential a secondary presents to its primary. */
  setOwn(zone: string, cred: Credential): void {
    this.write(zone, 'credential.json', cred);
  }

  private dir(zone: string): string {
    return join(this.keysDir, zone === '.' ? '_root' : zone);
  }

  private read<T>(zone: string, file: string): T | null {
    const path = join(this.dir(zone), file);
    if (!existsSync(path)) return null;
    if ((statSync(path).mode & 0o077) !== 0) {
      throw new IdnsError('key_unavailable', `${path} is readable by other users; fix it with: chmod 600 ${path}`);
    }
    try {
      return JSON.parse(readFileSync(path, 'utf8')) as T;
    } catch (cause) {
      throw new IdnsError('key_unavailable', `${path} is not valid JSON`, { cause });
    }
  }

  private write(zone: string, file: string, value: unknown): void {
    const dir = this.dir(zone);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    // Write then rename: a crash never leaves a half-written secrets file.
    const tmp = join(dir, `.${file}.${process.pid}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, join(dir, file));
  }
}
