/** base64url without padding (RFC 7515 section 2), strict on input. */
const B64URL = /^[A-Za-z0-9_-]*$/;

/** Encodes bytes or a UTF-8 string as unpadded base64url. */
export function b64u(data: Uint8Array | string): string {
  return Buffer.from(data).toString('base64url');
}

/** Decodes unpadded base64url; returns null on any character outside the alphabet or a bad length. */
export function fromB64u(text: string): Buffer | null {
  if (!B64URL.test(text) || text.length % 4 === 1) return null;
  return Buffer.from(text, 'base64url');
}
