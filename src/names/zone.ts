import { domainToASCII, domainToUnicode } from 'node:url';
import { IdnsError } from '../errors.js';

/** A normalised zone name: `.` for the root, else ASCII lower-case without a trailing dot. */
export type ZoneName = string;

/** The root zone, which is at or above every name. */
export const ROOT: ZoneName = '.';

const MAX_HOST = 253;
const MAX_LABEL = 63;
// domainToASCII may delete ignorable code points, so the raw input can legitimately be a little longer
// than the result; anything far beyond 253 is refused before IDNA runs to bound the work done.
const MAX_RAW = 1024;

// Checked on the raw input because the WHATWG host parser behind domainToASCII silently strips tab/CR/LF
// and maps U+00A0 etc. to space; whitespace would otherwise vanish or produce a vague error.
const WHITESPACE_OR_CONTROL = /[\u0000-\u0020\u007f-\u009f\s]/u;
const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;
const ALL_DIGITS = /^[0-9]+$/;

/** Quotes input for an error message, escaping anything invisible or look-alike so the reader sees the culprit. */
export function quoteForMessage(input: string): string {
  const shown = input.length > 80 ? `${input.slice(0, 80)}…` : input;
  const escaped = shown.replace(/[\p{C}\p{Z}"\\]/gu, (ch) =>
    ch === '"' || ch === '\\' ? `\\${ch}` : `<U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}>`,
  );
  return `"${escaped}"`;
}

const show = quoteForMessage;

function fail(what: string, input: string, problem: string): never {
  throw new IdnsError('invalid_zone_name', `${what} ${show(input)} ${problem}`);
}

// The WHATWG host parser behind domainToASCII treats these as URL syntax: it truncates at `/?#\`,
// percent-decodes `%xx`, and accepts `[...]` as an IPv6 literal, so they must be refused beforehand.
function asciiSyntaxProblem(ch: string): string {
  switch (ch) {
    case ':':
      return "contains ':'; a port or URL is not allowed, only a host name";
    case '/':
    case '\\':
    case '?':
    case '#':
      return `contains '${ch}'; a URL is not allowed, only a host name`;
    case '@':
      return "contains '@'; give only the host name";
    case '[':
    case ']':
      return 'looks like an IP address literal; only domain names are allowed';
    case '%':
      return "contains '%'; percent-encoding is not allowed";
    case '_':
      return "contains '_', which is not allowed in a host name (letters, digits, '-' and '.' only)";
    default:
      return `contains '${ch}', which is not allowed in a host name (letters, digits, '-' and '.' only)`;
  }
}

/** Validates and normalises a host to lower-case ASCII (IDNA UTS #46), throwing 'invalid_zone_name' with a reason. */
export function normaliseHost(input: string, what = 'host'): string {
  if (input.length === 0) fail(what, input, 'is empty');
  if (input.length > MAX_RAW) fail(what, input, `is too long (at most ${MAX_HOST} characters)`);
  if (WHITESPACE_OR_CONTROL.test(input)) fail(what, input, 'contains whitespace or control characters');
  for (const ch of input) {
    if (ch.charCodeAt(0) < 0x80 && !/[A-Za-z0-9.-]/.test(ch)) fail(what, input, asciiSyntaxProblem(ch));
  }
  if (input.startsWith('.')) fail(what, input, 'starts with a dot');
  if (input.includes('..')) fail(what, input, "contains an empty label ('..')");
  if (input.endsWith('.')) fail(what, input, 'ends with a dot; remove the trailing dot');
  const rawLast = input.slice(input.lastIndexOf('.') + 1);
  if (ALL_DIGITS.test(rawLast)) fail(what, input, 'looks like an IP address; only domain names are allowed');

  const ascii = domainToASCII(input);
  if (ascii === '') fail(what, input, 'is not a valid internationalised domain name (IDNA UTS #46)');
  const host = ascii.toLowerCase();

  // Re-check structure after IDNA: mapping can introduce dots (U+3002, U+FF0E) or turn a
  // numeric-looking label such as `0x7f` into a dotted IPv4 address.
  if (host.length > MAX_HOST) fail(what, input, `is too long (${host.length} characters in ASCII form, at most ${MAX_HOST})`);
  if (host.endsWith('.')) fail(what, input, 'ends with a dot; remove the trailing dot');
  if (host.startsWith('.')) fail(what, input, 'starts with a dot');
  if (host.includes('..')) fail(what, input, "contains an empty label ('..')");
  const labels = host.split('.');
  for (const label of labels) {
    if (label.length > MAX_LABEL) {
      fail(what, input, `has a label of ${label.length} characters (at most ${MAX_LABEL})`);
    }
    if (label.startsWith('-') || label.endsWith('-')) {
      fail(what, input, `has a label ${show(label)} that starts or ends with '-'`);
    }
    if (!LDH_LABEL.test(label)) {
      fail(what, input, `has a label ${show(label)} that is not letters, digits and '-' after IDNA conversion`);
    }
    // domainToASCII passes some malformed punycode through; a genuine A-label decodes and re-encodes to itself.
    if (label.startsWith('xn--')) {
      const unicode = domainToUnicode(label);
      if (unicode === '' || unicode === label || domainToASCII(unicode) !== label) {
        fail(what, input, `has a label ${show(label)} that is not valid punycode`);
      }
    }
  }
  if (ALL_DIGITS.test(labels[labels.length - 1] ?? '')) {
    fail(what, input, 'looks like an IP address; only domain names are allowed');
  }
  return host;
}

// A host of lower-case LDH labels that IDNA leaves as it is: no `xn--` or other `??--` label (which IDNA
// checks), the last label not all digits. Such a text is its own normal form without running IDNA.
const PLAIN_HOST = /^(?=.{1,253}$)(?!.*(?:^|\.)..--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
// The WHATWG host parser reads a last label of digits, or 0x and hex digits, as an IPv4 address.
const NUMERIC_LAST = /(?:^|\.)(?:[0-9]+|0x[0-9a-f]*)$/;

/**
 * True when `text` is a host in normal form (normaliseHost(text) === text), cheaply for the common case:
 * verifiers check every name in a record is normalised, on the resolver's hot path.
 */
export function isNormalHost(text: string): boolean {
  if (PLAIN_HOST.test(text) && !NUMERIC_LAST.test(text)) return true;
  try {
    return normaliseHost(text) === text;
  } catch {
    return false; // not a host at all, so not a normal one
  }
}

/** True when `text` is a zone name in normal form (parseZoneName(text) === text). */
export function isNormalZoneName(text: string): boolean {
  return text === ROOT || isNormalHost(text);
}

/** Parses a zone name, where `.` alone means the root; throws 'invalid_zone_name'. */
export function parseZoneName(input: string): ZoneName {
  if (input === ROOT) return ROOT;
  return normaliseHost(input, 'zone name');
}

/** True when normalised host `name` is `zone` or lies below it on a label boundary. */
export function isAtOrBelow(name: string, zone: ZoneName): boolean {
  if (zone === ROOT) return true;
  return name === zone || name.endsWith(`.${zone}`);
}

/** The normalised name, then each enclosing name up to and including ROOT, nearest first. */
export function ancestors(name: string): ZoneName[] {
  const out: ZoneName[] = [];
  let current: ZoneName | null = name;
  while (current !== null) {
    out.push(current);
    current = parentOf(current);
  }
  return out;
}

/** The zone one label up from a normalised zone name, or null for ROOT. */
export function parentOf(zone: ZoneName): ZoneName | null {
  if (zone === ROOT) return null;
  const dot = zone.indexOf('.');
  return dot === -1 ? ROOT : zone.slice(dot + 1);
}
