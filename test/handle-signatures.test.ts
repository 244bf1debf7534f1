import { createPrivateKey, sign } from 'node:crypto';
import { CompactSign } from 'jose';
import { describe, expect, it } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { verifyHandleJws, verifyHandleSignature } from '../src/records/handle-signatures.js';
import { generatePrivateJwk, thumbprint, type PrivateJwk, type PublicJwk } from '../src/records/keys.js';

/** A real Ed25519 key pair: the public JWK a handle record holds and the owner's private key. */
function keyPair() {
  const jwk: PrivateJwk = generatePrivateJwk();
  const publicJwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: jwk.x };
  return { publicJwk, privateKey: createPrivateKey({ key: { ...jwk }, format: 'jwk' }), kid: thumbprint(publicJwk) };
}

/** Signs with node:crypto directly, independent of the code under test. */
const signBytes = (data: string | Uint8Array, key: ReturnType<typeof keyPair>) => sign(null, Buffer.from(data), key.privateKey);

// An HTTP-signature-like signing string, as a microblog server would verify on an inbox POST.
const SIGNING_STRING =
  '(request-target): post /users/bob/inbox\nhost: social.example\ndate: Sat, 05 Dec 2026 22:00:00 GMT\ndigest: SHA-256=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=';

describe('verifyHandleSignature', () => {
  const alice = keyPair();
  const second = keyPair();
  const mallory = keyPair();
  const resolved = { handle: 'alice@example.com', keys: [alice.publicJwk, second.publicJwk] };

  it('accepts a signature by any of the handle keys and names the key by its thumbprint', async () => {
    const sig = signBytes(SIGNING_STRING, second);
    expect(await verifyHandleSignature(resolved, SIGNING_STRING, sig)).toEqual({ ok: true, kid: second.kid });
    expect(await verifyHandleSignature(resolved, SIGNING_STRING, signBytes(SIGNING_STRING, alice))).toEqual({ ok: true, kid: alice.kid });
  });

  it('takes the signature as bytes, unpadded base64url or padded base64, and the data as a string or bytes', async () => {
    const data = new TextEncoder().encode(SIGNING_STRING);
    const sig = signBytes(data, alice);
    const expected = { ok: true, kid: alice.kid };
    expect(await verifyHandleSignature(resolved, data, new Uint8Array(sig))).toEqual(expected);
    expect(await verifyHandleSignature(resolved, data, sig.toString('base64url'))).toEqual(expected);
    expect(await verifyHandleSignature(resolved, SIGNING_STRING, sig.toString('base64'))).toEqual(expected);
    // A view into a larger buffer is read at its offset.
    const padded = Buffer.concat([Buffer.from('xx'), Buffer.from(data), Buffer.from('yy')]);
    expect(await verifyHandleSignature(resolved, padded.subarray(2, 2 + data.length), sig)).toEqual(expected);
  });

  it('refuses a changed message, a changed signature and a signature by another key', async () => {
    const sig = signBytes(SIGNING_STRING, alice);
    const changed = await verifyHandleSignature(resolved, SIGNING_STRING.replace('bob', 'eve'), sig);
    expect(changed).toEqual({ ok: false, reason: expect.stringMatching(/none of the handle's keys/) });
    const flipped = Buffer.from(sig);
    flipped[5] = flipped[5]! ^ 1;
    expect((await verifyHandleSignature(resolved, SIGNING_STRING, flipped)).ok).toBe(false);
    expect((await verifyHandleSignature(resolved, SIGNING_STRING, signBytes(SIGNING_STRING, mallory))).ok).toBe(false);
    expect(await verifyHandleSignature({ keys: [] }, SIGNING_STRING, sig)).toEqual({ ok: false, reason: 'the handle has no keys' });
  });

  it('refuses malformed signatures as an answer, not an exception', async () => {
    // The two mixed spellings below differ from a valid one only where the signature has a sextet of 62 or 63
    // ('+' '/' against '-' '_'); about one signature in fifteen has none, so pick a message whose signature has one.
    let message = SIGNING_STRING;
    for (let n = 0; !/[+/]/.test(signBytes(message, alice).toString('base64')); n++) message = `${SIGNING_STRING}\nx-nonce: ${n}`;
    const sig = signBytes(message, alice);
    expect(await verifyHandleSignature(resolved, message, sig)).toEqual({ ok: true, kid: alice.kid });
    for (const bad of [
      sig.subarray(0, 63),
      Buffer.concat([sig, Buffer.from([0])]),
      '',
      'not base64!',
      `${sig.toString('base64url')}=`,
      sig.toString('base64url').slice(0, -1),
      // Unpadded standard base64 with '+' or '/' and base64url mixed with padding are neither spelling.
      sig.toString('base64').replace(/=+$/, '').replace(/[-_]/g, '+'),
      sig.toString('base64url').slice(0, 86) + '==',
    ]) {
      const check = await verifyHandleSignature(resolved, message, bad);
      if (check.ok) throw new Error(`accepted ${String(bad)}`);
      expect(check.reason).toMatch(/64 bytes|none of the handle's keys/);
    }
  });

  it('refuses a non-canonical base64 spelling of the signature (unused trailing bits set)', async () => {
    const sig = signBytes(SIGNING_STRING, alice);
    const b64 = sig.toString('base64');
    // The last character before '==' carries 4 unused bits: setting one gives another text for the same bytes.
    const last = b64[85]!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const twin = b64.slice(0, 85) + alphabet[alphabet.indexOf(last) ^ 1] + '==';
    expect(twin).not.toBe(b64);
    expect(Buffer.from(twin, 'base64').equals(sig)).toBe(true);
    expect((await verifyHandleSignature(resolved, SIGNING_STRING, twin)).ok).toBe(false);
    expect((await verifyHandleSignature(resolved, SIGNING_STRING, b64)).ok).toBe(true);
  });

  it('refuses any signature against a result marked verified: false (the WebFinger bridge), whatever keys it holds', async () => {
    const sig = signBytes(SIGNING_STRING, alice);
    expect((await verifyHandleSignature({ ...resolved, verified: true }, SIGNING_STRING, sig)).ok).toBe(true);
    expect(await verifyHandleSignature({ ...resolved, verified: false }, SIGNING_STRING, sig)).toEqual({
      ok: false,
      reason: expect.stringMatching(/not verified/),
    });
    const jws = await new CompactSign(new TextEncoder().encode('{}')).setProtectedHeader({ alg: 'EdDSA', kid: alice.kid }).sign(alice.privateKey);
    expect((await verifyHandleJws({ ...resolved, verified: true }, jws)).ok).toBe(true);
    expect(await verifyHandleJws({ ...resolved, verified: false }, jws)).toEqual({ ok: false, reason: expect.stringMatching(/not verified/) });
  });

  it('throws invalid_key for a key list that is not a handle key list', async () => {
    const sig = signBytes(SIGNING_STRING, alice);
    const cases: unknown[] = [
      {},
      { keys: 'x' },
      { keys: [{ kty: 'RSA', n: 'x', e: 'AQAB' }] },
      { keys: [{ ...alice.publicJwk, d: 'secret' }] },
      { keys: Array.from({ length: 9 }, () => alice.publicJwk) },
    ];
    for (const c of cases) {
      const err = await verifyHandleSignature(c as { keys: PublicJwk[] }, SIGNING_STRING, sig).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(IdnsError);
      expect((err as IdnsError).code).toBe('invalid_key');
    }
  });
});

describe('verifyHandleJws', () => {
  const alice = keyPair();
  const other = keyPair();
  const resolved = { keys: [other.publicJwk, alice.publicJwk] };
  const payload = { type: 'Follow', actor: 'https://social.example/users/alice', object: 'https://blog.example/users/bob' };

  /** A compact JWS made by jose, an independent implementation. */
  const joseSign = (key: ReturnType<typeof keyPair>, header: Record<string, unknown>, body: unknown = payload) =>
    new CompactSign(new TextEncoder().encode(JSON.stringify(body))).setProtectedHeader({ alg: 'EdDSA', ...header }).sign(key.privateKey);

  it('accepts a JWS by one of the keys, named by kid or not, and returns header and payload', async () => {
    const withKid = await joseSign(alice, { kid: alice.kid, typ: 'example+jwt' });
    const checked = await verifyHandleJws(resolved, withKid);
    expect(checked).toEqual({ ok: true, kid: alice.kid, header: { alg: 'EdDSA', kid: alice.kid, typ: 'example+jwt' }, payload });
    const withoutKid = await joseSign(alice, {});
    expect(await verifyHandleJws(resolved, withoutKid)).toMatchObject({ ok: true, kid: alice.kid, payload });
  });

  it('refuses a JWS naming a key the handle does not have, or signed by another key than it names', async () => {
    const stranger = keyPair();
    const foreign = await verifyHandleJws(resolved, await joseSign(stranger, { kid: stranger.kid }));
    expect(foreign).toEqual({ ok: false, reason: expect.stringMatching(/not one of the handle's keys/) });
    // Names alice's key but is signed by the other handle key: the named key decides, no fallback.
    const misnamed = await verifyHandleJws(resolved, await joseSign(other, { kid: alice.kid }));
    expect(misnamed).toEqual({ ok: false, reason: expect.stringMatching(/none of the handle's keys/) });
    expect((await verifyHandleJws(resolved, await joseSign(stranger, {}))).ok).toBe(false);
  });

  it('refuses a tampered payload, other algorithms and malformed JWS as answers', async () => {
    const jws = await joseSign(alice, { kid: alice.kid });
    const [h, , s] = jws.split('.');
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...payload, object: 'x' })).toString('base64url')}.${s}`;
    expect((await verifyHandleJws(resolved, tampered)).ok).toBe(false);
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{}').toString('base64url')}.`;
    for (const bad of [none, 'a.b', '', 'x'.repeat(50_000), `${h}.${Buffer.from('{"a":1,"a":2}').toString('base64url')}.${s}`]) {
      const check = await verifyHandleJws(resolved, bad);
      expect(check.ok).toBe(false);
    }
    // A validly signed JWS whose header asks for an extension (crit) idns does not implement.
    const critHeader = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: alice.kid, crit: ['exp'], exp: 1 })).toString('base64url');
    const critInput = `${critHeader}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
    const crit = `${critInput}.${signBytes(critInput, alice).toString('base64url')}`;
    expect(await verifyHandleJws(resolved, crit)).toEqual({ ok: false, reason: expect.stringMatching(/crit/) });
  });
});
