import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { handleEndpoint } from '../src/store/endpoint.js';

/** A compact JWS shaped as stored records are: header, payload, signature; only the payload is read. */
const jwsOf = (payload: unknown): string => `eyJhbGciOiJFZERTQSJ9.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.c2ln`;

describe("the records' endpoint column", () => {
  it('reads exactly the endpoint JSON.parse reads, whatever the string holds (escapes, non-ASCII, quotes)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string(), fc.boolean(), (endpoint, other, before) => {
        const payload = before ? { v: 1, type: 'handle', note: other, endpoint, ttl: 60 } : { v: 1, type: 'handle', endpoint, note: other };
        expect(handleEndpoint(jwsOf(payload))).toBe(endpoint);
      }),
      { numRuns: 2000 },
    );
  });

  it('gives null for a payload without an endpoint and for malformed records, and is not fooled by an earlier, longer payload', () => {
    const long = jwsOf({ v: 1, endpoint: 'https://a.example/'.padEnd(3000, 'x') });
    expect(handleEndpoint(long)).toBe('https://a.example/'.padEnd(3000, 'x'));
    // The scratch buffer still holds the long payload's bytes past this one's end.
    expect(handleEndpoint(jwsOf({ v: 1, type: 'denial' }))).toBeNull();
    expect(handleEndpoint(jwsOf({ v: 1, end: '"endpoint":"' }))).toBeNull();
    expect(handleEndpoint('no dots here')).toBeNull();
    expect(handleEndpoint('a.b')).toBeNull();
  });
});
