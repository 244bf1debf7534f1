import { afterEach, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { ManualClock } from '../src/clock.js';
import { requestId } from '../src/records/change-request.js';
import { newUserKey } from './support/keys.js';
import { get, postChange } from './support/http.js';
import { startTestServer, type TestServer } from './support/server.js';

// A deleted handle stays reserved to the keys it had for the zone's tombstone cool-down (issue 17,
// item 6): real server, real signatures, a manual clock for the days.

const DAY_MS = 24 * 3600 * 1000;
const open: TestServer[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

async function zone(clock: ManualClock): Promise<TestServer> {
  const s = await startTestServer({ clock, zones: { 'example.com': {} } });
  open.push(s);
  return s;
}

function register(handle: string, key: ReturnType<typeof newUserKey>, clock: ManualClock, endpoint = 'https://social.example/u'): string {
  return signChangeRequest({ action: 'register', handle, endpoint, keys: [key.public] }, key.private, clock);
}

/** Registers `handle` with `key` and deletes it; returns the time of the delete request (ms). */
async function registerAndDelete(s: TestServer, handle: string, key: ReturnType<typeof newUserKey>, clock: ManualClock): Promise<number> {
  const reg = register(handle, key, clock);
  await s.ctx.changes.submit(reg);
  await s.ctx.changes.submit(signChangeRequest({ action: 'delete', handle, prev: requestId(reg) }, key.private, clock));
  return clock.now();
}

describe('tombstones', () => {
  it('keeps a deleted handle for its former keys during the cool-down: another key gets 409 handle_reserved and changes nothing', async () => {
    const clock = new ManualClock(Date.parse('2026-12-01T00:00:00Z'));
    const s = await zone(clock);
    const owner = newUserKey();
    const other = newUserKey();
    const h = 'tomb@example.com';
    const deletedAt = await registerAndDelete(s, h, owner, clock);
    clock.advance(29 * DAY_MS);

    const before = s.ctx.zones.info('example.com');
    const res = await postChange(s.url, register(h, other, clock, 'https://thief.example/'));
    expect(res.status).toBe(409);
    expect(res.json.error.code).toBe('handle_reserved');
    expect(res.json.error.message).toContain('only a key it had then may register it again');
    expect(res.json.error.details.until).toBe(new Date(deletedAt + 30 * DAY_MS).toISOString());
    expect(s.ctx.zones.info('example.com')).toMatchObject({ serial: before.serial, digest: before.digest });
    expect((await get(s.url, `/v1/resolve/${h}`)).status).toBe(404);

    // Its former owner's key may take it back at once, with a new state.
    const back = await postChange(s.url, register(h, owner, clock, 'https://social.example/back'));
    expect(back.status).toBe(201);
    const log = await get(s.url, `/v1/handles/${h}/log`);
    expect(log.json.operations.map((o: { action: string }) => o.action)).toEqual(['register', 'delete', 'register']);
  });

  it('frees the handle for anyone once the cool-down has passed', async () => {
    const clock = new ManualClock(Date.parse('2026-12-01T00:00:00Z'));
    const s = await zone(clock);
    const h = 'freed@example.com';
    await registerAndDelete(s, h, newUserKey(), clock);
    clock.advance(30 * DAY_MS);
    expect((await postChange(s.url, register(h, newUserKey(), clock))).status).toBe(201);
  });

  it('follows the zone setting: 0 frees a deleted handle at once; a longer one holds it longer', async () => {
    const clock = new ManualClock(Date.parse('2026-12-01T00:00:00Z'));
    const s = await zone(clock);
    expect(s.ctx.zones.info('example.com').settings?.tombstoneCooldown).toBe(30 * 24 * 3600);
    s.ctx.zones.setTombstoneCooldown('example.com', 0);
    await registerAndDelete(s, 'a@example.com', newUserKey(), clock);
    expect((await postChange(s.url, register('a@example.com', newUserKey(), clock))).status).toBe(201);

    s.ctx.zones.setTombstoneCooldown('example.com', 90 * 24 * 3600);
    await registerAndDelete(s, 'b@example.com', newUserKey(), clock);
    clock.advance(60 * DAY_MS);
    expect((await postChange(s.url, register('b@example.com', newUserKey(), clock))).json.error.code).toBe('handle_reserved');
    expect(() => s.ctx.zones.setTombstoneCooldown('example.com', 366 * 24 * 3600)).toThrow();
  });

  it('holds on a promoted secondary too: the history that decides it is part of the zone', async () => {
    const clock = new ManualClock(Date.parse('2026-12-01T00:00:00Z'));
    const primary = await zone(clock);
    const h = 'kept@example.com';
    await registerAndDelete(primary, h, newUserKey(), clock);
    const secondary = await startTestServer({ clock });
    open.push(secondary);
    const kid = primary.ctx.zones.info('example.com').keyThumbprints[0]!;
    secondary.ctx.zones.createSecondary('example.com', { primaries: [primary.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example.com');
    secondary.ctx.zones.promote('example.com', `${primary.dataDir}/keys/example.com`, { primary: secondary.url, policy: 'open' });
    expect((await postChange(secondary.url, register(h, newUserKey(), clock))).json.error.code).toBe('handle_reserved');
  });
});

describe('CLI', () => {
  it('zone create --tombstone-cooldown and zone tombstone-cooldown set it; zone show prints it; a bad value is a usage error', async () => {
    const { runIdns } = await import('./support/process.js');
    const { tempDir } = await import('./support/server.js');
    const tmp = tempDir('idns-tomb-');
    try {
      const data = ['--data', tmp.dir];
      const created = await runIdns([
        'zone',
        'create',
        'tomb.example',
        '--server-url',
        'https://ns.tomb.example',
        '--tombstone-cooldown',
        '3600',
        ...data,
        '--json',
      ]);
      expect(created.code, created.stderr).toBe(0);
      expect(JSON.parse(created.stdout)).toMatchObject({ tombstoneCooldown: 3600 });
      const set = await runIdns(['zone', 'tombstone-cooldown', 'tomb.example', '0', ...data, '--json']);
      expect(set.code, set.stderr).toBe(0);
      expect(JSON.parse(set.stdout)).toEqual({ zone: 'tomb.example', tombstoneCooldown: 0 });
      expect((await runIdns(['zone', 'show', 'tomb.example', ...data])).stdout).toContain('tombstone cool-down: 0 s');
      const bad = await runIdns(['zone', 'tombstone-cooldown', 'tomb.example', 'soon', ...data]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('SECONDS must be a non-negative integer');
      const tooLong = await runIdns(['zone', 'tombstone-cooldown', 'tomb.example', String(400 * 24 * 3600), ...data]);
      expect(tooLong.code).not.toBe(0);
      expect(tooLong.stderr).toContain('tombstoneCooldown');
    } finally {
      tmp.remove();
    }
  });
});
