import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { signChangeRequest } from '../src/client/requests.js';
import { requestId } from '../src/records/change-request.js';
import { createResolver } from '../src/resolver/resolver.js';
import { cleanupEachTest } from './support/cleanup.js';
import { payloadOf, postChange, putChange } from './support/http.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, type TestServer } from './support/server.js';

// Recovery keys end to end (issue 17 item 5, docs/protocol.md §6.6): a real server with a manual clock
// for the hours, real signatures, and a resolver that verifies what the server then answers.

const ZONE = 'example.com';
const H = `alice@${ZONE}`;
const HOUR = 3600_000;
const cleanups = cleanupEachTest();
const alice = newUserKey();
const recoveryKey = newUserKey();
const thief = newUserKey();

async function zone(clock: ManualClock): Promise<TestServer> {
  const s = await startTestServer({ clock, zones: { [ZONE]: {} } });
  cleanups.push(() => s.close());
  return s;
}

/** Registers alice with a recovery key; then the thief, holding alice's stolen key, gives the handle its own key. Returns both ids. */
async function registeredThenStolen(s: TestServer, clock: ManualClock): Promise<{ reg: string; stolen: string }> {
  const reg = signChangeRequest(
    { action: 'register', handle: H, endpoint: 'https://social.example/alice', keys: [alice.public], recovery: [recoveryKey.public] },
    alice.private,
    clock,
    [recoveryKey.private],
  );
  expect((await postChange(s.url, reg)).status).toBe(201);
  clock.advance(HOUR);
  const stolen = signChangeRequest(
    { action: 'update', handle: H, endpoint: 'https://evil.example/', keys: [thief.public], prev: requestId(reg) },
    alice.private,
    clock,
    [thief.private],
  );
  expect((await putChange(s.url, H, stolen)).status).toBe(200);
  return { reg: requestId(reg), stolen: requestId(stolen) };
}

function recovery(prev: string, clock: ManualClock): string {
  return signChangeRequest(
    { action: 'update', handle: H, endpoint: 'https://social.example/alice', keys: [alice.public], recovery: [recoveryKey.public], prev },
    recoveryKey.private,
    clock,
  );
}

describe('recovery keys', () => {
  it("undo a stolen key's change within the window; resolvers verify the recovered record", async () => {
    const clock = new ManualClock(Date.now());
    const s = await zone(clock);
    const { reg } = await registeredThenStolen(s, clock);
    clock.advance(2 * HOUR);
    const res = await putChange(s.url, H, recovery(reg, clock));
    expect(res.status).toBe(200);
    expect(payloadOf(res.json.record as string)).toMatchObject({ endpoint: 'https://social.example/alice', keys: [alice.public], genesis: reg, seq: 3 });
    const log = (await (await fetch(`${s.url}/v1/handles/${H}/log`)).json()) as { operations: { action: string }[] };
    expect(log.operations.map((o) => o.action)).toEqual(['register', 'update', 'update']);

    const resolver = createResolver({
      trustAnchors: new Map([[ZONE, s.ctx.zones.info(ZONE).keyThumbprints]]),
      rootServers: [s.url],
      allowPrivate: true,
      clock,
    });
    cleanups.push(() => resolver.close());
    expect(await resolver.resolve(H)).toMatchObject({ endpoint: 'https://social.example/alice', keys: [alice.public], genesis: reg, operatorAsserted: false });
    // The thief's key is no key of the handle any more: its next change is refused.
    const back = signChangeRequest(
      { action: 'update', handle: H, endpoint: 'https://evil.example/2', keys: [thief.public], prev: res.json.op as string },
      thief.private,
      clock,
    );
    expect((await putChange(s.url, H, back)).json.error.code).toBe('unauthorized_key');
  });

  it('refuses a recovery after the window (recovery_refused); an update of that state signed by the lost everyday key is no recovery (unauthorized_key); nothing changes', async () => {
    const clock = new ManualClock(Date.now());
    const s = await zone(clock);
    const { reg } = await registeredThenStolen(s, clock);
    clock.advance(73 * HOUR);
    const before = s.ctx.zones.info(ZONE);
    const late = await putChange(s.url, H, recovery(reg, clock));
    expect(late.status).toBe(409);
    expect(late.json.error.code).toBe('recovery_refused');
    expect(late.json.error.message).toMatch(/after the recovery window \(259200 s\)/);
    // Signed by the everyday key alice lost, not by a recovery key: no recovery, and that key is no key of the handle now.
    const wrongKey = signChangeRequest(
      { action: 'update', handle: H, endpoint: 'https://social.example/alice', keys: [alice.public], prev: reg },
      alice.private,
      clock,
    );
    expect((await putChange(s.url, H, wrongKey)).json.error.code).toBe('unauthorized_key');
    expect(s.ctx.zones.info(ZONE)).toMatchObject({ serial: before.serial, digest: before.digest });
  });

  it('a zone with a shorter window publishes it in its zone record, and refuses what comes later', async () => {
    const clock = new ManualClock(Date.now());
    const s = await zone(clock);
    s.ctx.zones.setRecoveryWindow(ZONE, 1800);
    const record = payloadOf(((await (await fetch(`${s.url}/v1/zones/${ZONE}`)).json()) as { record: string }).record);
    expect(record.recoveryWindow).toBe(1800);
    const { reg } = await registeredThenStolen(s, clock);
    clock.advance(HOUR);
    expect((await putChange(s.url, H, recovery(reg, clock))).json.error.message).toMatch(/after the recovery window \(1800 s\)/);
  });
});
