import { IdnsError, isIdnsError } from '../errors.js';
import { isNormalHost, normaliseHost, quoteForMessage } from './zone.js';

/** A normalised handle: `local@host`, local part lower-case ASCII, host lower-case ASCII (IDNA A-labels). */
export type Handle = string;

/** The parts of a parsed handle, all normalised. */
export interface ParsedHandle {
  handle: Handle;
  local: string;
  host: string;
}

// 64 (local) + 1 (@) + 253 (host) is 318; the cap bounds work on hostile input before any parsing.
const MAX_INPUT = 320;
const MAX_LOCAL = 64;
const LOCAL_CHARS = /^[A-Za-z0-9._-]+$/;
const WHITESPACE_OR_CONTROL = /[\u0000-\u0020\u007f-\u009f\s]/u;
const NON_ASCII = /[^\u0000-\u007f]/u;

const show = quoteForMessage;

function fail(message: string, cause?: unknown): never {
  throw new IdnsError('invalid_handle', `invalid handle: ${message}`, cause === undefined ? undefined : { cause });
}

function normaliseLocal(local: string): string {
  if (local.length === 0) fail("the local part (before '@') is empty");
  // Checked before lower-casing: toLowerCase maps some non-ASCII letters (U+212A KELVIN SIGN, U+0130)
  // onto ASCII, which would let a look-alike handle collide with a real one.
  const nonAscii = NON_ASCII.exec(local);
  if (nonAscii) {
    const cp = nonAscii[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    fail(`local part ${show(local)} contains a non-ASCII character (U+${cp}); only ASCII is allowed`);
  }
  if (WHITESPACE_OR_CONTROL.test(local)) fail(`local part ${show(local)} contains whitespace or control characters`);
  if (!LOCAL_CHARS.test(local)) fail(`local part ${show(local)} may contain only letters, digits, '.', '_' and '-'`);
  if (local.length > MAX_LOCAL) fail(`local part is ${local.length} characters (at most ${MAX_LOCAL})`);
  if (/^[.-]|[.-]$/.test(local)) fail(`local part ${show(local)} must not start or end with '.' or '-'`);
  if (local.includes('..')) fail(`local part ${show(local)} must not contain '..'`);
  return local.toLowerCase();
}

/** Parses `local@host` into its normalised parts; throws IdnsError 'invalid_handle' with a reason. */
export function parseHandle(input: string): ParsedHandle {
  if (input.length > MAX_INPUT) fail(`is ${input.length} characters (at most ${MAX_INPUT})`);
  const at = input.indexOf('@');
  if (at === -1) fail(`${show(input)} has no '@'; expected local@host`);
  if (input.indexOf('@', at + 1) !== -1) fail(`${show(input)} contains more than one '@'`);
  const local = normaliseLocal(input.slice(0, at));
  let host: string;
  try {
    host = normaliseHost(input.slice(at + 1), 'host');
  } catch (err) {
    // Callers match on the code, so a bad host inside a handle is a bad handle, not a bad zone name.
    if (isIdnsError(err)) fail(err.message, err);
    throw err;
  }
  return { handle: `${local}@${host}`, local, host };
}

// A local part in normal form: lower-case, 1–64 of [a-z0-9._-], not starting or ending with '.' or '-'.
const NORMAL_LOCAL = /^(?!.*\.\.)[a-z0-9_](?:[a-z0-9._-]{0,62}[a-z0-9_])?$/;

/** True when `text` is a handle in normal form (parseHandle(text).handle === text); cheap for the usual case. */
export function isNormalHandle(text: string): boolean {
  const at = text.indexOf('@');
  if (at < 1 || text.length > MAX_INPUT) return false;
  return NORMAL_LOCAL.test(text.slice(0, at)) && isNormalHost(text.slice(at + 1));
}

/** Returns the canonical form of a handle, under which equal handles compare equal as strings. */
export function normaliseHandle(input: string): Handle {
  return parseHandle(input).handle;
}

// An acct URI may spell each character of the handle as %XX, so its raw form may be three times as long.
const MAX_REFERENCE_INPUT = 5 + 3 * MAX_INPUT;
// RFC 3986 unreserved and sub-delims, and pct-encoded triplets: the characters RFC 7565's userpart and a
// reg-name host may hold raw. Anything else (space, '/', '?', '#', ':', '[', non-ASCII) is not an acct URI.
const ACCT_PART = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$/;
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;

/**
 * Parses a handle as people and other servers write it: `alice@host`, `@alice@host` (the fediverse's
 * spelling) or an `acct:alice@host` URI (RFC 7565: scheme case-insensitive, percent-encoding decoded as
 * UTF-8, an '@' inside the user part written %40). The result is the same normalised handle parseHandle
 * gives, under the same rules; anything else (another URI scheme, spaces, a second '@') is refused with
 * IdnsError 'invalid_handle'.
 */
export function parseHandleReference(input: string): ParsedHandle {
  if (typeof input !== 'string') fail('a handle must be a string');
  if (input.length > MAX_REFERENCE_INPUT) fail(`is ${input.length} characters (at most ${MAX_REFERENCE_INPUT})`);
  const scheme = SCHEME.exec(input);
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== 'acct') fail(`${show(input)} is a ${show(scheme[1]!)} URI; only acct: URIs name a handle`);
    return parseHandle(decodeAcct(input.slice(scheme[0].length), input));
  }
  // One leading '@' only: '@@alice@host' is not a spelling of anything.
  return parseHandle(input.startsWith('@') ? input.slice(1) : input);
}

/** The handle an acct URI's scheme-specific part names, percent-decoded; throws invalid_handle. */
function decodeAcct(rest: string, input: string): string {
  if (rest.length === 0) fail(`${show(input)} is an acct: URI without a user part and host`);
  const at = rest.indexOf('@');
  if (at === -1) fail(`${show(input)} has no '@'; expected acct:local@host`);
  if (rest.indexOf('@', at + 1) !== -1) fail(`${show(input)} contains more than one '@' (an '@' in the user part is written %40)`);
  const user = rest.slice(0, at);
  const host = rest.slice(at + 1);
  if (user.length === 0) fail(`${show(input)} has an empty user part`);
  if (host.length === 0) fail(`${show(input)} has an empty host`);
  if (!ACCT_PART.test(user) || !ACCT_PART.test(host)) {
    fail(`${show(input)} is not a valid acct: URI (characters outside RFC 3986 unreserved, sub-delims and %XX)`);
  }
  // RFC 7565 section 7: userpart = ( unreserved / sub-delims ) 0*( unreserved / pct-encoded / sub-delims ).
  if (user.startsWith('%')) fail(`${show(input)} is not a valid acct: URI (the user part must not start with %XX)`);
  const decodedUser = percentDecode(user, input);
  const decodedHost = percentDecode(host, input);
  // A decoded '@' is a character of the user part, which an idns local part cannot hold: say so plainly
  // rather than let parseHandle see two '@'.
  if (decodedUser.includes('@')) fail(`${show(input)}: the user part contains '@' (%40), which a handle's local part cannot hold`);
  return `${decodedUser}@${decodedHost}`;
}

function percentDecode(part: string, input: string): string {
  if (!part.includes('%')) return part;
  try {
    // decodeURIComponent refuses malformed UTF-8 (URIError), which RFC 3986 leaves no other reading of.
    return decodeURIComponent(part);
  } catch (cause) {
    fail(`${show(input)} has percent-encoding that is not UTF-8`, cause);
  }
}
