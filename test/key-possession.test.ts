import { compactVerify, EmbeddedJWK, importJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signChangeRequest, type ChangeIntent } from '../src/client/requests.js';
import { IdnsError } from '../src/errors.js';
import { b64u } from '../src/records/encoding.js';
import { OPERATION_TYP, signCompact } from '../src/records/jws.js';
import { signingKeyFromJwk } from '../src/records/keys.js';
import { signPossessionProof, POP_TYP, type PopEntry } from '../src/records/pop.js';
import { get, payloadOf, postChange, putChange, registerOk, resolveHandle, type HttpResult } from './support/http.js';
import { newUserKey, type UserKey } from './support/keys.js';
import { startTestServer, type TestServer } from './support/server.js';

// Issue 14 item 8: every key added to a handle signs the request that adds it (header "pop").
let s: TestServer;
const ZONE = 'pop.example';

beforeAll(async () => {
  s = await startTestServer({ zones: { [ZONE]: {} } });
});
afterAll(async () => s?.close());

/** The zone's signed record and the handles' answers: what a refused request must leave as it was. */
async function snapshot(handles: string[]): Promise<unknown> {
  const zone = await get(s.url, `/v1/zones/${ZONE}`);
  const answers = await Promise.all(handles.map(async (h) => (await resolveHandle(s.url, h)).text));
  return { zone: zone.json.record, answers };
}

async function expectRefusedUnchanged(handles: string[], act: () => Promise<HttpResult>, status: number, code: string): Promise<HttpResult> {
  const before = await snapshot(handles);
  const res = await act();
  expect({ status: res.status, code: res.json?.error?.code }).toEqual({ status, code });
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(typeof res.json.error.message).toBe('string');
  expect(await snapshot(handles)).toEqual(before);
  return res;
}

async function keysOf(handle: string): Promise<string[]> {
  const res = await resolveHandle(s.url, handle);
  expect(res.status).toBe(200);
  return (payloadOf(res.json.record).keys as { x: string }[]).map((k) => k.x);
}

/** A request whose header `pop` is exactly `pop`, signed by `signer` (the client would refuse to make most of these). */
function withPop(payload: Record<string, unknown>, signer: UserKey, pop: unknown, register: boolean): string {
  return signCompact(payload, signingKeyFromJwk(signer.private), OPERATION_TYP, { ...(register ? { jwk: signer.public } : {}), pop });
}

const proofBy = (payload: Record<string, unknown>, key: UserKey): PopEntry =>
  signPossessionProof(b64u(JSON.stringify(payload)), signingKeyFromJwk(key.private));
const now = () => Math.floor(Date.now() / 1000);

describe('registration listing more than the signing key', () => {
  it("refuses another person's key listed without their signature (403 missing_proof naming the key), and changes nothing", async () => {
    const mallory = newUserKey();
    const victim = newUserKey();
    const h = `mallory@${ZONE}`;
    const jws = signChangeRequest(
      { action: 'register', handle: h, endpoint: 'https://social.example/m', keys: [mallory.public, victim.public] },
      mallory.private,
    );
    const res = await expectRefusedUnchanged([h], () => postChange(s.url, jws), 403, 'missing_proof');
    expect(res.json.error.details).toEqual({ keys: [victim.kid] });
    expect(res.json.error.message).toContain(victim.kid);
    expect((await resolveHandle(s.url, h)).status).toBe(404);
  });

  it('accepts the same registration when the added key signs it too, and the added key can then act on the handle', async () => {
    const owner = newUserKey();
    const second = newUserKey();
    const third = newUserKey();
    const h = `multi@${ZONE}`;
    const reg = await registerOk(s.url, owner, h, { addedKeys: [second, third] });
    expect(await keysOf(h)).toEqual([owner.public.x, second.public.x, third.public.x]);
    const update = signChangeRequest(
      { action: 'update', handle: h, endpoint: 'https://social.example/moved', keys: [owner.public, second.public, third.public], prev: reg.op },
      second.private,
    );
    expect((await putChange(s.url, h, update)).status).toBe(200);
  });

  it.each<[string, (payload: Record<string, unknown>, added: UserKey, other: UserKey) => unknown, number, string]>([
    [
      'a proof carrying the added key but signed by another key',
      (p, added, other) => [{ ...proofBy(p, other), protected: proofBy(p, added).protected }],
      403,
      'invalid_signature',
    ],
    [
      'a proof by the added key over another payload',
      (p, added) => [proofBy({ ...p, endpoint: 'https://elsewhere.example/' }, added)],
      403,
      'invalid_signature',
    ],
    ['the proof given twice', (p, added) => [proofBy(p, added), proofBy(p, added)], 400, 'invalid_request'],
    ['an extra proof for a key the request does not list', (p, added, other) => [proofBy(p, added), proofBy(p, other)], 400, 'invalid_request'],
    ['a proof by the signing key instead of the added key', (p) => [proofBy(p, signerOf(p))], 403, 'missing_proof'],
    ["a proof by the signing key besides the added key's", (p, added) => [proofBy(p, added), proofBy(p, signerOf(p))], 400, 'invalid_request'],
    [
      'a proof whose header says typ idns-op',
      (p, added) => [{ protected: b64u(JSON.stringify({ alg: 'EdDSA', typ: OPERATION_TYP, jwk: added.public })), signature: proofBy(p, added).signature }],
      400,
      'invalid_jws',
    ],
  ])('refuses a registration with %s, changing nothing', async (_name, pop, status, code) => {
    const owner = newUserKey();
    const added = newUserKey();
    const other = newUserKey();
    const h = `bad${Math.random().toString(36).slice(2, 10)}@${ZONE}`;
    const payload = { v: 1, action: 'register', handle: h, endpoint: 'https://social.example/x', keys: [owner.public, added.public], prev: null, iat: now() };
    signers.set(payload, owner);
    await expectRefusedUnchanged([h], () => postChange(s.url, withPop(payload, owner, pop(payload, added, other), true)), status, code);
  });
});

const signers = new WeakMap<object, UserKey>();
const signerOf = (payload: object): UserKey => signers.get(payload)!;

describe('update and rotation adding keys', () => {
  let owner: UserKey;
  let op: string;
  const h = `upd@${ZONE}`;

  beforeAll(async () => {
    owner = newUserKey();
    op = (await registerOk(s.url, owner, h)).op;
  });

  it("refuses an update listing another person's key without their signature, and changes nothing; accepts it with the proof", async () => {
    const victim = newUserKey();
    const intent: ChangeIntent = { action: 'update', handle: h, endpoint: 'https://social.example/u', keys: [owner.public, victim.public], prev: op };
    await expectRefusedUnchanged([h], () => putChange(s.url, h, signChangeRequest(intent, owner.private)), 403, 'missing_proof');
    const ok = await putChange(s.url, h, signChangeRequest(intent, owner.private, undefined, [victim.private]));
    expect(ok.status).toBe(200);
    op = ok.json.op;
    expect(await keysOf(h)).toEqual([owner.public.x, victim.public.x]);
  });

  it('refuses a proof for a key the handle already has (400 invalid_request), and a proof by the wrong key (403)', async () => {
    const current = (await keysOf(h)).map((x) => ({ kty: 'OKP' as const, crv: 'Ed25519' as const, x }));
    const added = newUserKey();
    const payload = { v: 1, action: 'update', handle: h, endpoint: 'https://social.example/u2', keys: [...current, added.public], prev: op, iat: now() };
    const held = newUserKey();
    // A proof for the owner's own (held) key besides the needed one.
    await expectRefusedUnchanged(
      [h],
      () =>
        putChange(s.url, h, signCompact(payload, signingKeyFromJwk(owner.private), OPERATION_TYP, { pop: [proofBy(payload, added), proofBy(payload, owner)] })),
      400,
      'invalid_request',
    );
    const forged = { protected: proofBy(payload, added).protected, signature: proofBy(payload, held).signature };
    await expectRefusedUnchanged(
      [h],
      () => putChange(s.url, h, signCompact(payload, signingKeyFromJwk(owner.private), OPERATION_TYP, { pop: [forged] })),
      403,
      'invalid_signature',
    );
  });

  it("rotation: refused without the new key's proof, accepted with it", async () => {
    const h2 = `rot@${ZONE}`;
    const first = newUserKey();
    const next = newUserKey();
    const reg = await registerOk(s.url, first, h2);
    const intent: ChangeIntent = { action: 'update', handle: h2, endpoint: 'https://social.example/r', keys: [next.public], prev: reg.op };
    await expectRefusedUnchanged([h2], () => putChange(s.url, h2, signChangeRequest(intent, first.private)), 403, 'missing_proof');
    expect((await putChange(s.url, h2, signChangeRequest(intent, first.private, undefined, [next.private]))).status).toBe(200);
    expect(await keysOf(h2)).toEqual([next.public.x]);
  });
});

describe('the history with proofs verifies with jose alone', () => {
  it('the request and each proof in its header are compact JWS that jose verifies, the proofs with their embedded key', async () => {
    const owner = newUserKey();
    const added = newUserKey();
    const h = `jose@${ZONE}`;
    await registerOk(s.url, owner, h, { addedKeys: [added] });
    const log = await get(s.url, `/v1/handles/${encodeURIComponent(h)}/log`);
    const request: string = log.json.operations[0].request;
    const main = await compactVerify(request, await importJWK(owner.public, 'EdDSA'));
    expect(main.protectedHeader.typ).toBe(OPERATION_TYP);
    const [, payload] = request.split('.');
    const pop = main.protectedHeader.pop as PopEntry[];
    expect(pop).toHaveLength(1);
    const proof = await compactVerify(`${pop[0]!.protected}.${payload}.${pop[0]!.signature}`, EmbeddedJWK);
    expect(proof.protectedHeader).toEqual({ alg: 'EdDSA', typ: POP_TYP, jwk: added.public });
    expect(Buffer.from(proof.payload).toString('base64url')).toBe(payload);
  });
});

describe('client library', () => {
  it('refuses to sign a proof for a key the request does not list, or for the signing key', () => {
    const owner = newUserKey();
    const stray = newUserKey();
    const intent: ChangeIntent = { action: 'register', handle: `c@${ZONE}`, endpoint: 'https://social.example/c', keys: [owner.public] };
    expect(() => signChangeRequest(intent, owner.private, undefined, [stray.private])).toThrow(IdnsError);
    expect(() => signChangeRequest(intent, owner.private, undefined, [owner.private])).toThrow(/needs no proof/);
  });
});
