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

const BASE64 = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/');

/**
 * Writes `src` (or its bytes from `start` to `end`) as padded base64 (RFC 4648 §4, as `toString('base64')`
 * spells it) into `dst` at `at`; returns the offset after it. For the read path's proofs: no string to
 * make and encode again.
 */
export function writeBase64(src: Uint8Array, dst: Buffer, at: number, start = 0, end = src.length): number {
  let i = start;
  for (; i + 3 <= end; i += 3) {
    const n = (src[i]! << 16) | (src[i + 1]! << 8) | src[i + 2]!;
    dst[at++] = BASE64[n >>> 18]!;
    dst[at++] = BASE64[(n >>> 12) & 63]!;
    dst[at++] = BASE64[(n >>> 6) & 63]!;
    dst[at++] = BASE64[n & 63]!;
  }
  const rest = end - i;
  if (rest > 0) {
    const n = (src[i]! << 16) | (rest === 2 ? src[i + 1]! << 8 : 0);
    dst[at++] = BASE64[n >>> 18]!;
    dst[at++] = BASE64[(n >>> 12) & 63]!;
    dst[at++] = rest === 2 ? BASE64[(n >>> 6) & 63]! : 0x3d;
    dst[at++] = 0x3d;
  }
  return at;
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
  const rest = text.length % 4;
  if (rest === 1 || !B64URL.test(text)) return null;
  // The last character of 2 (3) characters past a multiple of 4 carries 4 (2) bits no byte uses; the
  // spelling is canonical (re-encoding gives it back) exactly when they are zero. Read here, as every
  // record of a transfer decodes two segments and a re-encoding of each cost as much as the decoding.
  if (rest !== 0 && (b64Value(text.charCodeAt(text.length - 1)) & (rest === 2 ? 0x0f : 0x03)) !== 0) return null;
  return Buffer.from(text, 'base64url');
}

/** The 6-bit value of a base64url character (one the alphabet check has passed). */
function b64Value(c: number): number {
  if (c >= 0x61) return c - 0x61 + 26; // a-z
  if (c >= 0x41) return c === 0x5f ? 63 : c - 0x41; // _ (0x5f) or A-Z
  return c === 0x2d ? 62 : c - 0x30 + 52; // - or 0-9
}
