const ENDPOINT_MEMBER = Buffer.from('"endpoint":"');
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Decoded payloads are written here, not into a new Buffer each: this runs on every handle record a
 * secondary copies (hundreds of thousands in a transfer), and a fresh Buffer and string per record
 * doubled the main thread's garbage collection during a full transfer. Grown when a payload is larger.
 */
let scratch = Buffer.allocUnsafe(4096);

/**
 * The `endpoint` of a stored handle record (a compact JWS), for the records' endpoint column; null when
 * it has none. Runs on every handle record written (registrations, imports, transfers), so it reads the
 * one member from the decoded bytes instead of parsing the whole payload. The payload is JSON that a
 * verifier accepted, where `"endpoint":"` can only be the member itself: inside a string every `"` is
 * escaped, and no nested object has such a member. A string with escapes is left to JSON.parse.
 */
export function handleEndpoint(jws: string): string | null {
  const a = jws.indexOf('.');
  const b = jws.indexOf('.', a + 1);
  if (a < 0 || b < 0) return null;
  const encoded = b - a - 1;
  // base64url: 3 bytes for every 4 characters (rounded up), never more.
  const room = Math.ceil((encoded * 3) / 4);
  if (room > scratch.length) scratch = Buffer.allocUnsafe(Math.max(room, scratch.length * 2));
  const length = scratch.write(jws.slice(a + 1, b), 'base64url');
  const at = scratch.indexOf(ENDPOINT_MEMBER);
  if (at < 0 || at >= length) return null;
  const start = at + ENDPOINT_MEMBER.length;
  let escaped = false;
  for (let i = start; i < length; i++) {
    const c = scratch[i]!;
    if (c === BACKSLASH) {
      escaped = true;
      i++; // a backslash escapes the next byte
    } else if (c === QUOTE) {
      return escaped ? parseString(scratch.toString('utf8', start - 1, i + 1)) : scratch.toString('utf8', start, i);
    }
  }
  return null;
}

function parseString(literal: string): string | null {
  try {
    const value: unknown = JSON.parse(literal);
    return typeof value === 'string' ? value : null;
  } catch {
    return null; // not a JSON string: the record has no readable endpoint to index
  }
}
