import { compactVerify, importJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { thumbprint } from '../src/records/keys.js';
import { calculateJwkThumbprint } from 'jose';
import { newUserKey } from './support/keys.js';
import { startTestServer, type TestServer } from './support/server.js';

// A verifier needs nothing but jose and the zone's public key (DESIGN.md): this test uses nothing of ours
// on the verifying side, only HTTP and jose.
describe('served records verify with jose alone', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ zones: { 'example.com': {} } });
  });
  afterAll(async () => s.close());

  it('checks a handle record against the key from /v1/zones/{zone}', async () => {
    const alice = newUserKey();
    const request = signChangeRequest(
      { action: 'register', handle: 'alice@example.com', endpoint: 'https://social.example/alice', keys: [alice.public] },
      alice.private,
    );
    const reg = await fetch(`${s.url}/v1/handles`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request }) });
    expect(reg.status).toBe(201);

    const zoneBody = (await (await fetch(`${s.url}/v1/zones/example.com`)).json()) as { record: string };
    const zonePayload = JSON.parse(Buffer.from(zoneBody.record.split('.')[1]!, 'base64url').toString()) as { keys: Record<string, string>[] };
    const zoneKey = await importJWK(zonePayload.keys[0]!, 'EdDSA');
    // The zone record is signed by its own key.
    await compactVerify(zoneBody.record, zoneKey, { algorithms: ['EdDSA'] });

    const answer = (await (await fetch(`${s.url}/v1/resolve/alice@example.com`)).json()) as { record: string };
    const { payload, protectedHeader } = await compactVerify(answer.record, zoneKey, { algorithms: ['EdDSA'] });
    expect(protectedHeader.kid).toBe(await calculateJwkThumbprint(zonePayload.keys[0]!, 'sha256'));
    const record = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    expect(record).toMatchObject({
      v: 1,
      type: 'handle',
      zone: 'example.com',
      handle: 'alice@example.com',
      endpoint: 'https://social.example/alice',
      keys: [alice.public],
    });
    expect(record.exp).toBeGreaterThan(record.iat as number);

    // A record whose payload was altered no longer verifies.
    const [h, , sig] = answer.record.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...record, endpoint: 'https://evil.example/' })).toString('base64url')}.${sig}`;
    await expect(compactVerify(forged, zoneKey, { algorithms: ['EdDSA'] })).rejects.toThrow();
  });

  it('computes the same RFC 7638 thumbprints as jose', async () => {
    for (let i = 0; i < 20; i++) {
      const k = newUserKey();
      expect(thumbprint(k.public)).toBe(await calculateJwkThumbprint(k.public, 'sha256'));
    }
  });
});
