import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IdnsError } from '../errors.js';
import type { NonceStore } from './nonces.js';

/**
 * Transfer credentials, like DNS TSIG: a primary and each of its secondaries share a secret; a transfer
 * or notify request carries an HMAC-SHA256 over its method, target (path and query), time, a fresh nonce
 * and body (docs/protocol.md §11.4 gives the bytes). A server accepts each nonce once within the time
 * window (NonceStore), so a copied header is good for no other request and not twice for the same one.
 * Secrets live in the key directory (files mode 0600), never in the database.
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

/** The request a header is checked against: exactly what the mac covers besides time and nonce. */
export interface SignedRequest {
  method: string;
  /** The request target: path and query, e.g. `/v1/zones/example/transfer?since=42`. */
  target: string;
  /** The body bytes (a string is taken as its UTF-8 encoding). */
  body: string | Uint8Array;
}

/** Label that starts every mac input: a mac of this scheme is never one of another. */
const MAC_LABEL = 'IDNS-HMAC-2';

const HEADER = /^IDNS-HMAC name="([A-Za-z0-9._-]{1,64})", ts="(0|[1-9]\d{0,11})", nonce="([A-Za-z0-9_-]{22,64})", mac="([A-Za-z0-9_-]{43})"$/;
/** The header of earlier builds, without a nonce: named in the refusal so that operators know what to upgrade. */
const HEADER_WITHOUT_NONCE = /^IDNS-HMAC name="[^"]*", ts="[^"]*", mac="[^"]*"$/;

/** Makes a new random secret. */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** A new random nonce: 16 bytes, base64url (22 characters). */
export function newNonce(): string {
  return randomBytes(16).toString('base64url');
}

/** The Authorization header value for a request, with a fresh nonce: build one per request sent. */
export function authorization(
  cred: Credential,
  method: string,
  target: string,
  body: string | Uint8Array,
  nowSeconds: number,
  nonce: string = newNonce(),
): string {
  const m = mac(cred.secret, cred.name, { method, target, body }, nowSeconds, nonce);
  return `IDNS-HMAC name="${cred.name}", ts="${nowSeconds}", nonce="${nonce}", mac="${m}"`;
}

/**
 * Checks a request's Authorization header against the secrets the zone knows and records its nonce;
 * returns the name of the credential. auth_required without a header, auth_failed for anything else
 * wrong (a used nonce included), and the message says nothing about the zone.
 */
export function verifyAuthorization(
  header: string | undefined,
  req: SignedRequest,
  nowSeconds: number,
  secretOf: (name: string) => string | undefined,
  nonces: NonceStore,
): string {
  if (header === undefined) throw new IdnsError('auth_required', 'this zone requires transfer credentials');
  const m = HEADER.exec(header);
  if (!m) {
    if (HEADER_WITHOUT_NONCE.test(header))
      throw new IdnsError('auth_failed', 'transfer credentials without a nonce (from an older idns) are refused; upgrade the sender');
    throw new IdnsError('auth_failed', 'malformed transfer credentials');
  }
  const [, name, ts, nonce, given] = m as unknown as [string, string, string, string, string];
  if (Math.abs(Number(ts) - nowSeconds) > MAX_AUTH_SKEW) throw new IdnsError('auth_failed', 'the credentials are too old or from the future; check the clocks');
  const secret = secretOf(name);
  // An unknown name is checked against a throwaway secret so that its timing matches a wrong mac.
  // Compared as text, not decoded bytes: the 43rd character carries two unused bits, and only the
  // canonical spelling is accepted.
  const expected = Buffer.from(mac(secret ?? newSecret(), name, req, Number(ts), nonce), 'latin1');
  const actual = Buffer.from(given, 'latin1');
  if (secret === undefined || actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
    throw new IdnsError('auth_failed', 'transfer credentials refused');
  }
  // Only after the mac: a forger cannot fill the store, and a replay is told apart from a forgery.
  nonces.use(name, nonce, Number(ts), nowSeconds);
  return name;
}

function mac(secret: string, name: string, req: SignedRequest, ts: number, nonce: string): string {
  const bodyHash = createHash('sha256').update(req.body).digest('hex');
  const input = `${MAC_LABEL}\n${name}\n${req.method}\n${req.target}\n${ts}\n${nonce}\n${bodyHash}`;
  return createHmac('sha256', Buffer.from(secret, 'base64url')).update(input, 'utf8').digest('base64url');
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
