const ENDPOINT_MEMBER = '"endpoint":"';

/**
 * The `endpoint` of a stored handle record (a compact JWS), for the records' endpoint column; null when
 * it has none. Runs on every handle record written (registrations, imports, transfers), so it reads the
 * one member instead of parsing the whole payload (about half the cost). The payload is JSON that a
 * verifier accepted, where `"endpoint":"` can only be the member itself: inside a string every `"` is
 * escaped, and no nested object has such a member. The string's own escapes are left to JSON.parse.
 */
export function handleEndpoint(jws: string): string | null {
  const a = jws.indexOf('.');
  const b = jws.indexOf('.', a + 1);
  if (a < 0 || b < 0) return null;
  const text = Buffer.from(jws.slice(a + 1, b), 'base64url').toString('utf8');
  const at = text.indexOf(ENDPOINT_MEMBER);
  if (at < 0) return null;
  const start = at + ENDPOINT_MEMBER.length - 1;
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c) i++; // a backslash escapes the next character
    else if (c === 0x22) return parseString(text.slice(start, i + 1));
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
