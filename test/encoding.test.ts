import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromB64u, writeBase64 } from '../src/records/encoding.js';

/** fromB64u's definition: base64url alphabet, a possible length, and the one spelling that re-encodes to itself. */
function byDefinition(text: string): Buffer | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : null;
}

describe('fromB64u', () => {
  it('decodes exactly the canonical unpadded base64url spellings, as re-encoding defines them', () => {
    const chars = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=. '.split(''));
    const text = fc.oneof(
      fc.array(chars, { maxLength: 12 }).map((cs) => cs.join('')),
      fc.uint8Array({ maxLength: 40 }).chain((b) =>
        fc.nat({ max: 63 }).map((v) => {
          // A canonical spelling with its last character replaced: every unused-bit pattern is tried.
          const s = Buffer.from(b).toString('base64url');
          return s.length === 0 ? s : s.slice(0, -1) + 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[v];
        }),
      ),
    );
    fc.assert(
      fc.property(text, (t) => {
        const want = byDefinition(t);
        const got = fromB64u(t);
        expect(got === null ? null : got.toString('hex')).toBe(want === null ? null : want.toString('hex'));
      }),
      { numRuns: 20_000 },
    );
    for (let n = 0; n < 40; n++) {
      const b = Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + 11) & 0xff));
      expect(fromB64u(b.toString('base64url'))?.equals(b)).toBe(true);
    }
  });
});

describe('writeBase64', () => {
  it("writes what Buffer's base64 gives, padding included, where it is told, for any bytes (fast-check)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 70 }), fc.nat(5), (bytes, at) => {
        const expected = Buffer.from(bytes).toString('base64');
        const dst = Buffer.alloc(at + expected.length + 3, 0x2e);
        expect(writeBase64(bytes, dst, at)).toBe(at + expected.length);
        expect(dst.toString('latin1')).toBe(`${'.'.repeat(at)}${expected}...`);
      }),
      { numRuns: 500 },
    );
  });
});
