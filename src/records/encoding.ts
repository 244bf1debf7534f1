/** base64url without padding (RFC 7515 section 2), strict on input. */
const B64URL = /^[A-Za-z0-9_-]*$/;

/** Base64url segments and dots: the characters of a compact JWS, which a JSON string holds unescaped. */
export const COMPACT_JWS_TEXT = /^[A-Za-z0-9_.-]*$/;

/** FNV-1a (32-bit) over a string's code units: a cheap spread for hash tables, not a secure hash. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

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
