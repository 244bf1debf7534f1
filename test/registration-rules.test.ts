import { generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseChangeRequest, requestId } from '../src/records/change-request.js';
import { MAX_HANDLE_KEYS, MAX_RECOVERY_KEYS } from '../src/records/types.js';
import { assureValidChange, MAX_CLOCK_SKEW, type ZoneRules } from '../src/authority/rules.js';
import { signChangeRequest } from '../src/client/requests.js';
import { epochSeconds, ManualClock } from '../src/clock.js';
import { IdnsError } from '../src/errors.js';
import { OPERATION_TYP, RECORD_TYP, signCompact } from '../src/records/jws.js';
import { signingKeyFromJwk, type PublicJwk } from '../src/records/keys.js';
import { POP_TYP, signPossessionProof, type PopEntry } from '../src/records/pop.js';
import { b64u } from '../src/records/encoding.js';
import { newUserKey, type UserKey } from './support/keys.js';
import { errorCode } from './support/errors.js';

const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
const NOW = epochSeconds(clock);
const alice = newUserKey();
const bob = newUserKey();
const mallory = newUserKey();
const PREV = 'Pb3yJ3Nl0S2n3p0lq8i5x7VwzW5H9x6l1M2cS7u0kQ4';
const httpsOnly: ZoneRules = { allowLoopbackEndpoints: false, hostScripts: 'strict' };
const devZone: ZoneRules = { allowLoopbackEndpoints: true, hostScripts: 'strict' };

/** Signs an arbitrary change-request payload and header (the parts a well-behaved client would not send). */
function craft(payload: Record<string, unknown>, key: UserKey, header: Record<string, unknown> = {}): string {
  return signCompact(payload, signingKeyFromJwk(key.private), (header.typ as string | undefined) ?? OPERATION_TYP, header);
}

/** A proof of possession by `key` over `payload`, as a client makes it. */
function proofOf(payload: Record<string, unknown>, key: UserKey): PopEntry {
  return signPossessionProof(b64u(JSON.stringify(payload)), signingKeyFromJwk(key.private));
}

/** craft, with the header member `pop` made of proofs by `provers` over the same payload. */
function craftWithProofs(payload: Record<string, unknown>, key: UserKey, header: Record<string, unknown>, provers: UserKey[]): string {
  return craft(payload, key, { ...header, pop: provers.map((p) => proofOf(payload, p)) });
}

/** A proof whose protected header is exactly `header` (any content), signed by `key` over `payload`. */
function rawProof(payload: Record<string, unknown>, key: UserKey, header: Record<string, unknown>): PopEntry {
  const protectedB64 = b64u(JSON.stringify(header));
  const signingInput = `${protectedB64}.${b64u(JSON.stringify(payload))}`;
  return { protected: protectedB64, signature: b64u(sign(null, Buffer.from(signingInput), signingKeyFromJwk(key.private).privateKey)) };
}

function registerPayload(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    action: 'register',
    handle: 'alice@example.com',
    endpoint: 'https://social.example/alice',
    keys: [alice.public],
    prev: null,
    iat: NOW,
    ...extra,
  };
}

function updatePayload(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    action: 'update',
    handle: 'alice@example.com',
    endpoint: 'https://social.example/alice2',
    keys: [alice.public],
    prev: PREV,
    iat: NOW,
    ...extra,
  };
}

function deletePayload(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { v: 1, action: 'delete', handle: 'alice@example.com', prev: PREV, iat: NOW, ...extra };
}

const codeOf = (fn: () => unknown): string => errorCode(fn, 'accepted');

const registerHeader = { jwk: alice.public };

/** Alice's registration of her key and Bob's, whose only pop entry is `entry(payload)`. */
function withBobPop(entry: (payload: Record<string, unknown>) => unknown): string {
  const payload = registerPayload({ keys: [alice.public, bob.public] });
  return craft(payload, alice, { ...registerHeader, pop: [entry(payload)] });
}
const distinctKeys = (n: number): PublicJwk[] => Array.from({ length: n }, () => newUserKey().public);

describe('parseChangeRequest: form of a change request', () => {
  it.each<[string, string, () => unknown]>([
    ['a well-formed register', 'accepted', () => craft(registerPayload(), alice, registerHeader)],
    ['a well-formed update', 'accepted', () => craft(updatePayload(), alice)],
    ['a well-formed delete', 'accepted', () => craft(deletePayload(), alice)],
    ['a register with an invite', 'accepted', () => craft(registerPayload({ invite: 'inv_abc' }), alice, registerHeader)],
    [
      'a register with the maximum of 8 keys, each other key proving possession',
      'accepted',
      () => {
        const others = Array.from({ length: MAX_HANDLE_KEYS - 1 }, newUserKey);
        return craftWithProofs(registerPayload({ keys: [alice.public, ...others.map((k) => k.public)] }), alice, registerHeader, others);
      },
    ],
    [
      "a register adding bob's key with bob's proof",
      'accepted',
      () => craftWithProofs(registerPayload({ keys: [alice.public, bob.public] }), alice, registerHeader, [bob]),
    ],
    [
      'an update adding a key with its proof (the state decides later)',
      'accepted',
      () => craftWithProofs(updatePayload({ keys: [alice.public, bob.public] }), alice, {}, [bob]),
    ],
    [
      'an http loopback endpoint (allowed or not by the zone later, not by the form)',
      'accepted',
      () => craft(registerPayload({ endpoint: 'http://127.0.0.1:3000/a' }), alice, registerHeader),
    ],

    ['not a string', 'invalid_jws', () => 42],
    ['an empty string', 'invalid_jws', () => ''],
    ['typ missing', 'invalid_jws', () => craft(registerPayload(), alice, { ...registerHeader, typ: undefined })],
    ['typ of a record', 'invalid_jws', () => craft(registerPayload(), alice, { ...registerHeader, typ: RECORD_TYP })],
    ['typ JWT', 'invalid_jws', () => craft(registerPayload(), alice, { ...registerHeader, typ: 'JWT' })],
    ['alg other than EdDSA', 'invalid_jws', () => craft(registerPayload(), alice, { ...registerHeader, alg: 'HS256' })],
    ['a crit header', 'invalid_jws', () => craft(registerPayload(), alice, { ...registerHeader, crit: ['exp'] })],
    [
      'a payload that is not JSON',
      'invalid_jws',
      () => {
        const [h, , sig] = craft(registerPayload(), alice, registerHeader).split('.');
        return `${h}.${Buffer.from('{not json').toString('base64url')}.${sig}`;
      },
    ],
    [
      'a signature of the wrong length',
      'invalid_signature',
      () => `${craft(registerPayload(), alice, registerHeader).split('.').slice(0, 2).join('.')}.${Buffer.alloc(32).toString('base64url')}`,
    ],

    ['register without header jwk', 'invalid_jws', () => craft(registerPayload(), alice)],
    ['register whose header jwk is not among keys', 'unauthorized_key', () => craft(registerPayload({ keys: [bob.public] }), alice, registerHeader)],
    ['register with a non-null prev', 'invalid_request', () => craft(registerPayload({ prev: PREV }), alice, registerHeader)],
    [
      'register with a header jwk that is not Ed25519',
      'invalid_key',
      () => craft(registerPayload(), alice, { jwk: { kty: 'EC', crv: 'P-256', x: 'a', y: 'b' } }),
    ],
    ['register whose header jwk carries d', 'invalid_key', () => craft(registerPayload(), alice, { jwk: alice.private })],
    ['register without endpoint', 'invalid_request', () => craft(registerPayload({ endpoint: undefined }), alice, registerHeader)],
    ['register without keys', 'invalid_request', () => craft(registerPayload({ keys: undefined }), alice, registerHeader)],
    ['update with jwk instead of kid', 'invalid_jws', () => craft(updatePayload(), alice, { jwk: alice.public, kid: undefined })],
    ['update with both jwk and kid', 'invalid_jws', () => craft(updatePayload(), alice, { jwk: alice.public })],
    ['update without kid', 'invalid_jws', () => craft(updatePayload(), alice, { kid: undefined })],
    ['update with a null prev', 'invalid_request', () => craft(updatePayload({ prev: null }), alice)],
    ['update without prev', 'invalid_request', () => craft(updatePayload({ prev: undefined }), alice)],
    ['update without keys', 'invalid_request', () => craft(updatePayload({ keys: undefined }), alice)],
    ['delete carrying keys', 'invalid_request', () => craft(deletePayload({ keys: [alice.public] }), alice)],
    ['delete carrying an endpoint', 'invalid_request', () => craft(deletePayload({ endpoint: 'https://social.example/x' }), alice)],

    [
      'a register listing another key without its proof',
      'missing_proof',
      () => craft(registerPayload({ keys: [alice.public, bob.public] }), alice, registerHeader),
    ],
    [
      'a register listing 8 keys with a proof missing',
      'missing_proof',
      () => {
        const others = Array.from({ length: MAX_HANDLE_KEYS - 1 }, newUserKey);
        return craftWithProofs(registerPayload({ keys: [alice.public, ...others.map((k) => k.public)] }), alice, registerHeader, others.slice(1));
      },
    ],
    [
      'a register with a proof for the signing key itself',
      'invalid_request',
      () => craftWithProofs(registerPayload({ keys: [alice.public, bob.public] }), alice, registerHeader, [bob, alice]),
    ],
    [
      'a register with the same proof twice',
      'invalid_request',
      () => craftWithProofs(registerPayload({ keys: [alice.public, bob.public] }), alice, registerHeader, [bob, bob]),
    ],
    ['a register with a proof for a key it does not list', 'invalid_request', () => craftWithProofs(registerPayload(), alice, registerHeader, [bob])],
    ['an update with a proof for a key it does not list', 'invalid_request', () => craftWithProofs(updatePayload(), alice, {}, [bob])],
    ['a delete carrying pop', 'invalid_request', () => craft(deletePayload(), alice, { pop: [proofOf(deletePayload(), bob)] })],
    [
      'pop that is not an array',
      'invalid_jws',
      () =>
        craft(registerPayload({ keys: [alice.public, bob.public] }), alice, {
          ...registerHeader,
          pop: proofOf(registerPayload({ keys: [alice.public, bob.public] }), bob),
        }),
    ],
    ['an empty pop', 'invalid_jws', () => craft(registerPayload(), alice, { ...registerHeader, pop: [] })],
    [
      'pop with more entries than a handle has keys and recovery keys',
      'invalid_jws',
      () =>
        craft(registerPayload(), alice, {
          ...registerHeader,
          pop: Array.from({ length: MAX_HANDLE_KEYS + MAX_RECOVERY_KEYS + 1 }, () => proofOf(registerPayload(), bob)),
        }),
    ],
    ['a pop entry with an extra member', 'invalid_jws', () => withBobPop((payload) => ({ ...proofOf(payload, bob), header: { kid: 'x' } }))],
    ['a pop entry that is a compact string', 'invalid_jws', () => withBobPop(() => 'a.b.c')],
    ['a pop entry without jwk', 'invalid_jws', () => withBobPop((payload) => rawProof(payload, bob, { alg: 'EdDSA', typ: POP_TYP }))],
    [
      'a pop entry of typ idns-op (a request signature passed off as a proof)',
      'invalid_jws',
      () => withBobPop((payload) => rawProof(payload, bob, { alg: 'EdDSA', typ: OPERATION_TYP, jwk: bob.public })),
    ],
    [
      'a pop entry with a kid in its header',
      'invalid_jws',
      () => withBobPop((payload) => rawProof(payload, bob, { alg: 'EdDSA', typ: POP_TYP, jwk: bob.public, kid: bob.kid })),
    ],
    [
      'a pop entry with crit',
      'invalid_jws',
      () => withBobPop((payload) => rawProof(payload, bob, { alg: 'EdDSA', typ: POP_TYP, jwk: bob.public, crit: ['b64'] })),
    ],
    [
      'a pop entry with alg none',
      'invalid_jws',
      () => withBobPop(() => ({ protected: b64u(JSON.stringify({ alg: 'none', typ: POP_TYP, jwk: bob.public })), signature: '' })),
    ],
    ['a pop entry whose jwk carries d', 'invalid_key', () => withBobPop((payload) => rawProof(payload, bob, { alg: 'EdDSA', typ: POP_TYP, jwk: bob.private }))],
    [
      'a pop entry with a short signature',
      'invalid_signature',
      () => withBobPop((payload) => ({ ...proofOf(payload, bob), signature: b64u(Buffer.alloc(32)) })),
    ],

    ['no keys', 'invalid_key', () => craft(registerPayload({ keys: [] }), alice, registerHeader)],
    ['duplicate keys', 'invalid_key', () => craft(registerPayload({ keys: [alice.public, alice.public] }), alice, registerHeader)],
    [
      'duplicate keys differing only in optional members',
      'invalid_key',
      () => craft(registerPayload({ keys: [alice.public, { ...alice.public, alg: 'EdDSA' }] }), alice, registerHeader),
    ],
    ['more than 8 keys', 'invalid_key', () => craft(registerPayload({ keys: [alice.public, ...distinctKeys(MAX_HANDLE_KEYS)] }), alice, registerHeader)],
    [
      'an RSA key',
      'invalid_key',
      () =>
        craft(
          registerPayload({ keys: [alice.public, generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' })] }),
          alice,
          registerHeader,
        ),
    ],
    [
      'a P-256 key',
      'invalid_key',
      () =>
        craft(
          registerPayload({ keys: [alice.public, generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' })] }),
          alice,
          registerHeader,
        ),
    ],
    [
      'an X25519 key',
      'invalid_key',
      () => craft(registerPayload({ keys: [alice.public, generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' })] }), alice, registerHeader),
    ],
    ['a key with a private member d', 'invalid_key', () => craft(registerPayload({ keys: [alice.private] }), alice, registerHeader)],
    [
      'a key with a short x',
      'invalid_key',
      () => craft(registerPayload({ keys: [alice.public, { kty: 'OKP', crv: 'Ed25519', x: 'AAAA' }] }), alice, registerHeader),
    ],
    ['a key that is a string', 'invalid_key', () => craft(registerPayload({ keys: [alice.public, 'key'] }), alice, registerHeader)],

    ['an unknown payload member', 'invalid_request', () => craft(registerPayload({ admin: true }), alice, registerHeader)],
    ['version 2', 'invalid_request', () => craft(registerPayload({ v: 2 }), alice, registerHeader)],
    ['an unknown action', 'invalid_request', () => craft(registerPayload({ action: 'transfer' }), alice, registerHeader)],
    ['iat not an integer', 'invalid_request', () => craft(registerPayload({ iat: NOW + 0.5 }), alice, registerHeader)],
    ['iat as a string', 'invalid_request', () => craft(registerPayload({ iat: String(NOW) }), alice, registerHeader)],
    ['handle missing', 'invalid_request', () => craft(registerPayload({ handle: undefined }), alice, registerHeader)],
    ['an invalid handle', 'invalid_handle', () => craft(registerPayload({ handle: 'alice@@example.com' }), alice, registerHeader)],
    ['a handle with a space', 'invalid_handle', () => craft(registerPayload({ handle: 'al ice@example.com' }), alice, registerHeader)],
    ['an ftp endpoint', 'invalid_endpoint', () => craft(registerPayload({ endpoint: 'ftp://files.example/a' }), alice, registerHeader)],
    ['a javascript endpoint', 'invalid_endpoint', () => craft(registerPayload({ endpoint: 'javascript:alert(1)' }), alice, registerHeader)],
    ['an http endpoint on a public host', 'invalid_endpoint', () => craft(registerPayload({ endpoint: 'http://social.example/a' }), alice, registerHeader)],
    [
      'an endpoint that is too long',
      'invalid_endpoint',
      () => craft(registerPayload({ endpoint: `https://social.example/${'a'.repeat(2100)}` }), alice, registerHeader),
    ],
  ])('%s → %s', (_name, expected, make) => {
    expect(codeOf(() => parseChangeRequest(make()))).toBe(expected);
  });

  it('normalises the handle: Alice@Example.COM is accepted as alice@example.com', () => {
    const req = parseChangeRequest(craft(registerPayload({ handle: 'Alice@Example.COM' }), alice, registerHeader));
    expect(req.handle).toBe('alice@example.com');
    expect(req.host).toBe('example.com');
  });

  it('returns the parts a change needs, with the id as base64url SHA-256 of the JWS', () => {
    const jws = signChangeRequest(
      { action: 'register', handle: 'alice@example.com', endpoint: 'https://social.example/alice', keys: [alice.public], invite: 'inv_x' },
      alice.private,
      clock,
    );
    const req = parseChangeRequest(jws);
    expect(req).toMatchObject({
      action: 'register',
      handle: 'alice@example.com',
      endpoint: 'https://social.example/alice',
      keys: [alice.public],
      prev: null,
      iat: NOW,
      invite: 'inv_x',
      headerKey: alice.public,
      kid: null,
      jws,
    });
    expect(req.cid).toBe(requestId(jws));
    expect(req.cid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const upd = parseChangeRequest(
      signChangeRequest(
        { action: 'update', handle: 'alice@example.com', endpoint: 'https://social.example/a', keys: [bob.public], prev: PREV },
        alice.private,
        clock,
      ),
    );
    expect(upd).toMatchObject({ action: 'update', kid: alice.kid, headerKey: null, prev: PREV, keys: [bob.public] });
  });

  it('canonicalises keys to {kty, crv, x}', () => {
    const req = parseChangeRequest(craft(registerPayload({ keys: [{ ...alice.public, kid: 'mine', use: 'sig', alg: 'EdDSA' }] }), alice, registerHeader));
    expect(req.keys).toEqual([alice.public]);
  });
});

describe('assureValidChange: the rules for the next change of a handle', () => {
  const current = { keys: [alice.public], op: PREV };
  const reg = (extra: Record<string, unknown> = {}, key = alice, header: Record<string, unknown> = registerHeader) =>
    parseChangeRequest(craft(registerPayload(extra), key, header));
  const upd = (extra: Record<string, unknown> = {}, key = alice) => parseChangeRequest(craft(updatePayload(extra), key));
  const del = (extra: Record<string, unknown> = {}, key = alice) => parseChangeRequest(craft(deletePayload(extra), key));
  const updWithProofs = (extra: Record<string, unknown>, key: UserKey, provers: UserKey[]) =>
    parseChangeRequest(craftWithProofs(updatePayload(extra), key, {}, provers));
  const tampered = (jws: string) => {
    const [h, p, sig] = jws.split('.') as [string, string, string];
    const bytes = Buffer.from(sig, 'base64url');
    bytes[0] = bytes[0]! ^ 0x80;
    return parseChangeRequest(`${h}.${p}.${bytes.toString('base64url')}`);
  };

  it.each<[string, () => string]>([
    ['register of a new handle', () => codeOf(() => assureValidChange(reg(), null, NOW, httpsOnly))],
    ['register with iat exactly 300 s behind', () => codeOf(() => assureValidChange(reg({ iat: NOW - MAX_CLOCK_SKEW }), null, NOW, httpsOnly))],
    ['register with iat exactly 300 s ahead', () => codeOf(() => assureValidChange(reg({ iat: NOW + MAX_CLOCK_SKEW }), null, NOW, httpsOnly))],
    ['update by a current key with the current prev', () => codeOf(() => assureValidChange(upd(), current, NOW, httpsOnly))],
    [
      'update by the second of two current keys',
      () => codeOf(() => assureValidChange(upd({}, bob), { keys: [alice.public, bob.public], op: PREV }, NOW, httpsOnly)),
    ],
    [
      'rotation: update to new keys signed by the old key, the new key proving possession',
      () => codeOf(() => assureValidChange(updWithProofs({ keys: [bob.public] }, alice, [bob]), current, NOW, httpsOnly)),
    ],
    [
      "update adding bob's key with bob's proof",
      () => codeOf(() => assureValidChange(updWithProofs({ keys: [alice.public, bob.public] }, alice, [bob]), current, NOW, httpsOnly)),
    ],
    [
      'update keeping a key and dropping another: nothing added, no proof',
      () => codeOf(() => assureValidChange(upd({ keys: [bob.public] }), { keys: [alice.public, bob.public], op: PREV }, NOW, httpsOnly)),
    ],
    [
      'register with proofs, signatures not checked again when checked before queueing',
      () =>
        codeOf(() =>
          assureValidChange(
            parseChangeRequest(craftWithProofs(registerPayload({ keys: [alice.public, bob.public] }), alice, registerHeader, [bob])),
            null,
            NOW,
            httpsOnly,
            true,
          ),
        ),
    ],
    ['delete by a current key with the current prev', () => codeOf(() => assureValidChange(del(), current, NOW, httpsOnly))],
    ['http loopback endpoint in a development zone', () => codeOf(() => assureValidChange(reg({ endpoint: 'http://localhost:3000/a' }), null, NOW, devZone))],
  ])('accepts %s', (_name, run) => {
    expect(run()).toBe('accepted');
  });

  it.each<[string, () => string, string]>([
    ['iat 301 s behind', () => codeOf(() => assureValidChange(reg({ iat: NOW - MAX_CLOCK_SKEW - 1 }), null, NOW, httpsOnly)), 'iat_out_of_range'],
    ['iat 301 s ahead', () => codeOf(() => assureValidChange(reg({ iat: NOW + MAX_CLOCK_SKEW + 1 }), null, NOW, httpsOnly)), 'iat_out_of_range'],
    ['iat 10 minutes ahead on update', () => codeOf(() => assureValidChange(upd({ iat: NOW + 600 }), current, NOW, httpsOnly)), 'iat_out_of_range'],
    [
      'http loopback endpoint in an https-only zone',
      () => codeOf(() => assureValidChange(upd({ endpoint: 'http://127.0.0.1/a' }), current, NOW, httpsOnly)),
      'invalid_endpoint',
    ],
    ['register of an existing handle', () => codeOf(() => assureValidChange(reg(), current, NOW, httpsOnly)), 'handle_exists'],
    [
      'register whose signature does not verify',
      () => codeOf(() => assureValidChange(tampered(craft(registerPayload(), alice, registerHeader)), null, NOW, httpsOnly)),
      'invalid_signature',
    ],
    [
      'register signed by another key than the header jwk',
      () => codeOf(() => assureValidChange(reg({}, bob, registerHeader), null, NOW, httpsOnly)),
      'invalid_signature',
    ],
    [
      'register whose proof for bob is signed by mallory',
      () => {
        const payload = registerPayload({ keys: [alice.public, bob.public] });
        const forged = rawProof(payload, mallory, { alg: 'EdDSA', typ: POP_TYP, jwk: bob.public });
        return codeOf(() => assureValidChange(parseChangeRequest(craft(payload, alice, { ...registerHeader, pop: [forged] })), null, NOW, httpsOnly));
      },
      'invalid_signature',
    ],
    [
      'register whose proof by bob was made over another payload',
      () => {
        const payload = registerPayload({ keys: [alice.public, bob.public] });
        const elsewhere = proofOf(registerPayload({ keys: [alice.public, bob.public], handle: 'bob@example.com' }), bob);
        return codeOf(() => assureValidChange(parseChangeRequest(craft(payload, alice, { ...registerHeader, pop: [elsewhere] })), null, NOW, httpsOnly));
      },
      'invalid_signature',
    ],
    ['rotation to a new key without its proof', () => codeOf(() => assureValidChange(upd({ keys: [bob.public] }), current, NOW, httpsOnly)), 'missing_proof'],
    [
      "update adding bob's key without bob's proof",
      () => codeOf(() => assureValidChange(upd({ keys: [alice.public, bob.public] }), current, NOW, httpsOnly)),
      'missing_proof',
    ],
    [
      "update adding bob's key with a proof by mallory",
      () => {
        const payload = updatePayload({ keys: [alice.public, bob.public] });
        const forged = rawProof(payload, mallory, { alg: 'EdDSA', typ: POP_TYP, jwk: bob.public });
        return codeOf(() => assureValidChange(parseChangeRequest(craft(payload, alice, { pop: [forged] })), current, NOW, httpsOnly));
      },
      'invalid_signature',
    ],
    [
      'update with a proof for a key the handle already has',
      () =>
        codeOf(() =>
          assureValidChange(updWithProofs({ keys: [alice.public, bob.public] }, alice, [bob]), { keys: [alice.public, bob.public], op: PREV }, NOW, httpsOnly),
        ),
      'invalid_request',
    ],
    [
      'update with a proof for its own signing key',
      () => codeOf(() => assureValidChange(updWithProofs({ keys: [alice.public, bob.public] }, alice, [alice, bob]), current, NOW, httpsOnly)),
      'invalid_request',
    ],
    ['update of a handle that does not exist', () => codeOf(() => assureValidChange(upd(), null, NOW, httpsOnly)), 'handle_not_found'],
    ['delete of a handle that does not exist', () => codeOf(() => assureValidChange(del(), null, NOW, httpsOnly)), 'handle_not_found'],
    ['update signed by a key not on the handle', () => codeOf(() => assureValidChange(upd({}, bob), current, NOW, httpsOnly)), 'unauthorized_key'],
    [
      'rotation signed by the new key only',
      () => codeOf(() => assureValidChange(upd({ keys: [bob.public] }, bob), current, NOW, httpsOnly)),
      'unauthorized_key',
    ],
    ['delete signed by a key not on the handle', () => codeOf(() => assureValidChange(del({}, bob), current, NOW, httpsOnly)), 'unauthorized_key'],
    [
      'update whose signature does not verify',
      () => codeOf(() => assureValidChange(tampered(craft(updatePayload(), alice)), current, NOW, httpsOnly)),
      'invalid_signature',
    ],
    ['update naming a stale prev', () => codeOf(() => assureValidChange(upd({ prev: 'old-op' }), current, NOW, httpsOnly)), 'stale_prev'],
    ['delete naming a stale prev', () => codeOf(() => assureValidChange(del({ prev: 'old-op' }), current, NOW, httpsOnly)), 'stale_prev'],
  ])('refuses %s', (_name, run, expected) => {
    expect(run()).toBe(expected);
  });

  it('names the server time on iat_out_of_range and the current op on stale_prev', () => {
    try {
      assureValidChange(reg({ iat: NOW - 3600 }), null, NOW, httpsOnly);
      throw new Error('accepted');
    } catch (err) {
      expect((err as IdnsError).details).toEqual({ serverTime: NOW });
    }
    try {
      assureValidChange(upd({ prev: 'old-op' }), current, NOW, httpsOnly);
      throw new Error('accepted');
    } catch (err) {
      expect((err as IdnsError).details).toEqual({ current: PREV });
    }
  });
});
