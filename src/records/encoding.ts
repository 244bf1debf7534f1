/** base64url without padding (RFC 7515 section 2), strict on input. */
const B64URL = /^[A-Za-z0-9_-]*$/;

/** Encodes bytes or a UTF-8 string as unpadded base64url. */
export function b64u(data: Uint8Array | string): string {
  return Buffer.from(data).toString('base64url');
}

/**
 * Decodes unpadded base64url; returns null on any character outside the alphabet, a bad length, or a
 * non-canonical spelling (unused trailing bits set). Canonical only, because ids are hashes of the exact
 * string: a second spelling of the same bytes would otherwise pass as a different request (a replay).
 */
export function fromB64u(text: string): Buffer | null {
  if (!B64URL.test(text) || text.length % 4 === 1) return null;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : null;
}
