import { describe, expect, it } from 'vitest';
import { decodeCompact, OPERATION_TYP, RECORD_TYP, signaturePrefix, signaturePrefixOf, signCompact } from '../src/records/jws.js';
import { signingKeyFromJwk } from '../src/records/keys.js';
import { newUserKey } from './support/keys.js';

describe('decodeCompact remembers the last header', () => {
  const a = signingKeyFromJwk(newUserKey().private);
  const b = signingKeyFromJwk(newUserKey().private);

  it('gives each JWS its own header when headers alternate, and the same frozen object for the same header', () => {
    const one = signCompact({ n: 1 }, a, RECORD_TYP);
    const two = signCompact({ n: 2 }, b, OPERATION_TYP);
    const three = signCompact({ n: 3 }, a, RECORD_TYP);
    const [d1, d2, d3] = [decodeCompact(one), decodeCompact(two), decodeCompact(three)];
    expect([d1.header.kid, d1.header.typ]).toEqual([a.kid, RECORD_TYP]);
    expect([d2.header.kid, d2.header.typ]).toEqual([b.kid, OPERATION_TYP]);
    expect(d3.header).toBe(decodeCompact(three).header);
    expect(Object.isFrozen(d3.header)).toBe(true);
    expect(d3.payload).toEqual({ n: 3 });
  });

  it('still refuses a bad header that follows a good one, and a good one after it is decoded afresh', () => {
    const good = signCompact({ n: 1 }, a, RECORD_TYP);
    decodeCompact(good);
    const [, p, s] = good.split('.');
    const twice = Buffer.from(`{"alg":"EdDSA","kid":"${a.kid}","kid":"${b.kid}"}`).toString('base64url');
    expect(() => decodeCompact(`${twice}.${p}.${s}`)).toThrow(/twice/);
    expect(decodeCompact(good).header.kid).toBe(a.kid);
  });
});

describe('the signature prefix of an answer ETag', () => {
  it('reads the same 16 characters from a JWS in a buffer as from its string, wherever it lies', () => {
    const key = signingKeyFromJwk(newUserKey().private);
    for (const jws of [signCompact({ n: 1 }, key, RECORD_TYP), 'a.b.c', 'a.b.', 'no-dot-at-all', 'x.y.0123456789abcdefXYZ']) {
      const buf = Buffer.from(`{"record":"${jws}","history":[]}`, 'latin1');
      const start = buf.indexOf(jws);
      expect(signaturePrefixOf(buf, start, start + jws.length)).toBe(signaturePrefix(jws));
    }
  });
});
