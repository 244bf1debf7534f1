import { isUtf8 } from 'node:buffer';
import { IdnsError, type ErrorCode } from '../errors.js';

/**
 * I-JSON (RFC 7493) for signed JSON: no object with the same member twice, valid UTF-8, no lone
 * surrogates. JSON.parse keeps the last of two equal members, other parsers the first or both, so a
 * signed `{"handle":"a@x","handle":"b@x"}` would be two different statements under one signature; the
 * same goes for keys spelled with escapes (`"hand\u006ce"` is `"handle"`) and for text a decoder
 * repairs (invalid UTF-8 becomes U+FFFD, differently in different decoders).
 */

// String.prototype.isWellFormed is in Node 20 but in TypeScript's ES2024 lib, above this project's.
type WellFormed = string & { isWellFormed(): boolean };
const wellFormed = (s: string): boolean => (s as WellFormed).isWellFormed();

/** Objects with more members than this are checked with a Set; smaller ones (every record's) with a list. */
const LIST_MAX = 16;

/**
 * Parses JSON and refuses what I-JSON forbids; throws IdnsError(`code`) whose message starts with `what`
 * ("the JWS payload …"). Bytes are checked to be UTF-8 before they are decoded.
 */
export function parseIJson(input: Buffer | string, what: string, code: ErrorCode): unknown {
  let text: string;
  if (typeof input === 'string') {
    if (!wellFormed(input)) throw new IdnsError(code, `${what} contains a lone surrogate (RFC 7493 I-JSON)`);
    text = input;
  } else {
    if (!isUtf8(input)) throw new IdnsError(code, `${what} is not valid UTF-8 (RFC 7493 I-JSON)`);
    text = input.toString('utf8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new IdnsError(code, `${what} is not valid JSON`, { cause });
  }
  // Only objects can repeat a member; a bare string can still hide an escaped lone surrogate.
  const problem = typeof value === 'object' || typeof value === 'string' ? iJsonProblem(text, value) : null;
  if (problem !== null) throw new IdnsError(code, `${what} ${problem} (RFC 7493 I-JSON)`);
  return value;
}

/**
 * What I-JSON forbids in `text`, or null; `value` is what JSON.parse made of it. Without a backslash
 * (every JSON idns writes: base64url, URLs, names) nothing is escaped, so a count is enough: JSON.parse
 * keeps one member per name, so the members of `value` are fewer than the `:` outside strings of the
 * text exactly when some object repeats a member. That is one pass jumping from quote to quote, with no
 * string built; the exact scan runs only on text with escapes, or to name the repeated member.
 */
export function iJsonProblem(text: string, value: unknown): string | null {
  if (text.indexOf('\\') !== -1) return exactProblem(text);
  let colons = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) i = text.indexOf('"', i + 1);
    else if (c === 0x3a /* : */) colons++;
  }
  if (colons === memberCount(value)) return null;
  // Fewer members than colons: some object repeats one, which the exact scan finds and names.
  return exactProblem(text);
}

/** Members of every object in a parsed JSON value; iterative, as a 48 KiB JWS may nest thousands deep. */
function memberCount(value: unknown): number {
  let count = 0;
  const pending: unknown[] = [value];
  while (pending.length > 0) {
    const v = pending.pop();
    if (typeof v !== 'object' || v === null) continue;
    if (Array.isArray(v)) {
      for (const item of v) if (typeof item === 'object' && item !== null) pending.push(item);
      continue;
    }
    for (const key in v) {
      count++;
      const item = (v as Record<string, unknown>)[key];
      if (typeof item === 'object' && item !== null) pending.push(item);
    }
  }
  return count;
}

/**
 * The exact scan: a member repeated in one object (at any depth, compared after unescaping) or an
 * escaped lone surrogate. One pass from quote to quote; only keys and strings with surrogate escapes
 * are decoded.
 */
function exactProblem(text: string): string | null {
  // The members seen so far of each open object, innermost last; null for an array.
  const stack: (string[] | Set<string> | null)[] = [];
  let members: string[] | Set<string> | null = null;
  let backslash = text.indexOf('\\');
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let end = text.indexOf('"', i + 1);
      let escaped = false;
      if (backslash !== -1 && backslash < end) {
        if (backslash < i) backslash = text.indexOf('\\', i);
        if (backslash !== -1 && backslash < end) {
          escaped = true;
          // The closing quote is the first one not escaped by an odd run of backslashes.
          for (;;) {
            let k = end - 1;
            while (text.charCodeAt(k) === 0x5c) k--;
            if ((end - 1 - k) % 2 === 0) break;
            end = text.indexOf('"', end + 1);
          }
          backslash = text.indexOf('\\', end + 1);
        }
      }
      let next = end + 1;
      while (next < n && isSpace(text.charCodeAt(next))) next++;
      const isKey = members !== null && text.charCodeAt(next) === 0x3a; /* : */
      if (isKey || (escaped && /\\u[dD][89a-fA-F]/.test(text.slice(i, end)))) {
        const value = escaped ? (JSON.parse(text.slice(i, end + 1)) as string) : text.slice(i + 1, end);
        if (escaped && !wellFormed(value)) return 'contains a lone surrogate';
        if (isKey) {
          if (Array.isArray(members)) {
            if (members.includes(value)) return `has the member ${JSON.stringify(value)} twice`;
            members.push(value);
            if (members.length > LIST_MAX) members = new Set(members);
          } else {
            const set = members as Set<string>;
            if (set.has(value)) return `has the member ${JSON.stringify(value)} twice`;
            set.add(value);
          }
        }
      }
      i = end;
    } else if (c === 0x7b /* { */) {
      stack.push(members);
      members = [];
    } else if (c === 0x5b /* [ */) {
      stack.push(members);
      members = null;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      members = stack.pop() ?? null;
    }
  }
  return null;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}
