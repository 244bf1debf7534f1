import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { cancelRollover, startRollover, submitRollover } from '../src/authority/rollover.js';
import { describeRollover } from '../src/authority/rollover-state.js';
import { signChangeRequest } from '../src/client/requests.js';
import { ManualClock } from '../src/clock.js';
import { decodeCompact } from '../src/records/jws.js';
import { thumbprint, type PublicJwk } from '../src/records/keys.js';
import { startTestServer, type TestServer } from './support/server.js';
import { newUserKey } from './support/keys.js';
import { errorCode } from './support/errors.js';

// The steps of a key rollover (src/authority/rollover.ts) one at a time, in process with a manual clock:
// a zone without parent servers, whose operator confirms each delegation step (--submitted), and the
// parent's side (--auto-ds), which follows only what the child's present key asks for.

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

const ZONE = 'social.example';
const owner = newUserKey();

/** The signer and listed keys of the zone record a server holds for `zone`. */
function zoneRecord(s: TestServer, zone: string): { signer: string; keys: string[]; cds: string[] | undefined } {
  const { header, payload } = decodeCompact(s.ctx.zones.info(zone).record);
  const p = payload as { keys: PublicJwk[]; cds?: string[] };
  return { signer: header.kid!, keys: p.keys.map((k) => thumbprint(k)), cds: p.cds };
}

/** Every record of the zone's content but history entries: the keys that signed them. */
function signers(s: TestServer, zone: string): Set<string> {
  const content = s.ctx.zones.require(zone).content;
  const out = new Set<string>();
  for (const r of s.ctx.store.records.page(content, null, 10_000)) if (r.type !== 'op') out.add(decodeCompact(r.jws).header.kid!);
  return out;
}

describe('key rollover, step by step', () => {
  it('without parent servers: waits for the operator at both delegation steps, re-signs every record, drains the TTLs, and refuses what does not fit the phase', async () => {
    const clock = new ManualClock(Date.now());
    const s = await startTestServer({ clock, zones: { [ZONE]: { policy: 'open', timers: { ttl: 60, handleTtl: 120, minimum: 30 } } } });
    servers.push(s);
    for (const name of ['ann', 'bob', 'cai']) {
      await s.ctx.changes.submit(
        signChangeRequest({ action: 'register', handle: `${name}@${ZONE}`, endpoint: `https://social.example/${name}`, keys: [owner.public] }, owner.private),
      );
    }
    const oldKey = zoneRecord(s, ZONE).signer;
    expect(errorCode(() => submitRollover(s.ctx.zones, ZONE))).toBe('invalid_request');

    const started = startRollover(s.ctx.zones, clock, ZONE);
    const newKey = started.newKey;
    expect(zoneRecord(s, ZONE)).toEqual({ signer: oldKey, keys: [oldKey, newKey], cds: [oldKey, newKey] });
    // The operator page says so, on the zone's row.
    const row = /<tr data-zone="social\.example">([\s\S]*?)<\/tr>/.exec(await (await fetch(`${s.url}/`)).text())?.[1] ?? '';
    expect(row).toContain('<span class="badge">rekey</span> key rollover publishing since');
    expect(row).toContain(`new key ${newKey}, old key ${oldKey}`);
    expect(errorCode(() => startRollover(s.ctx.zones, clock, ZONE))).toBe('invalid_request');
    const phase = () => s.ctx.zones.settings(s.ctx.zones.require(ZONE)).rollover;

    // Publishing: nothing moves until the operator confirms, however long it waits.
    clock.advance(3600_000);
    await s.ctx.rollovers.runOnce();
    expect(phase()).toMatchObject({ phase: 'publishing', waiting: expect.stringContaining('--submitted') });
    submitRollover(s.ctx.zones, ZONE);
    await s.ctx.rollovers.runOnce();
    // The confirmation starts the delegation's TTL (the zone's own TTL stands for it): not yet.
    expect(phase()).toMatchObject({ phase: 'publishing' });
    clock.advance(61_000);
    await s.ctx.rollovers.runOnce();
    expect(phase()).toMatchObject({ phase: 'signing' });
    expect(zoneRecord(s, ZONE)).toEqual({ signer: newKey, keys: [newKey, oldKey], cds: [oldKey, newKey] });
    expect(errorCode(() => submitRollover(s.ctx.zones, ZONE))).toBe('invalid_request');

    // Signing: one batch re-signs every record the old key signed (a small zone).
    expect(signers(s, ZONE).has(oldKey)).toBe(true);
    await s.ctx.rollovers.runOnce();
    expect(signers(s, ZONE)).toEqual(new Set([newKey]));
    expect(phase()).toMatchObject({ phase: 'draining' });

    // Draining: the longest TTL (handles, 120 s) must run out.
    clock.advance(60_000);
    await s.ctx.rollovers.runOnce();
    expect(phase()).toMatchObject({ phase: 'draining' });
    clock.advance(61_000);
    await s.ctx.rollovers.runOnce();
    expect(phase()).toMatchObject({ phase: 'retiring', waiting: expect.stringContaining('no longer lists the old key') });
    expect(zoneRecord(s, ZONE)).toEqual({ signer: newKey, keys: [newKey], cds: [newKey] });

    // Retiring: ends when the operator says the parent (or anchor) dropped the old key.
    await s.ctx.rollovers.runOnce();
    expect(phase()).toMatchObject({ phase: 'retiring' });
    submitRollover(s.ctx.zones, ZONE);
    await s.ctx.rollovers.runOnce();
    expect(phase()).toBeUndefined();
    expect(zoneRecord(s, ZONE)).toEqual({ signer: newKey, keys: [newKey], cds: undefined });
    expect(s.ctx.zones.info(ZONE).keyThumbprints).toEqual([newKey]);
  });

  it('--auto-ds: the parent adopts the ds set its child asks for, signed by a key it lists; a server of the child signing with another key changes nothing', async () => {
    const child = await startTestServer({ zones: { [ZONE]: { timers: { ttl: 300 } } } });
    const impostor = await startTestServer({ zones: { [ZONE]: {} } });
    const clock = new ManualClock(Date.now());
    const parent = await startTestServer({ clock, zones: { example: {} } });
    servers.push(child, impostor, parent);
    const follower = parent.ctx.delegationFollower;
    const oldKey = zoneRecord(child, ZONE).signer;
    // The impostor lists the child's servers too, and asks for its own key.
    parent.ctx.zones.delegate('example', ZONE, { servers: [impostor.url, child.url], ds: [oldKey], autoDs: true });
    startRollover(impostor.ctx.zones, impostor.ctx.clock, ZONE);
    await follower.runOnce();
    expect(parent.ctx.zones.delegationOf('example', ZONE)!.ds).toEqual([oldKey]);
    expect(follower.checks).toBe(1);

    const { newKey } = startRollover(child.ctx.zones, child.ctx.clock, ZONE);
    // The child is asked again only once its zone record's TTL (300 s) ran out.
    clock.advance(299_000);
    await follower.runOnce();
    expect(follower.checks).toBe(1);
    clock.advance(2_000);
    await follower.runOnce();
    expect(follower.checks).toBe(2);
    expect(parent.ctx.zones.delegationOf('example', ZONE)!.ds).toEqual([oldKey, newKey]);
    expect(follower.followed).toBe(1);
    // Nothing more to follow while the child asks for the same set.
    clock.advance(301_000);
    await follower.runOnce();
    expect(follower.checks).toBe(3);
    expect(follower.followed).toBe(1);
    // Undelegated, the child is no longer followed.
    parent.ctx.zones.undelegate('example', ZONE);
    expect(parent.ctx.zones.settings(parent.ctx.zones.require('example')).autoDs).toBeUndefined();
  });
});

describe('abandoning a rollover (zone rekey --cancel)', () => {
  it('before the new key signs: the old key alone is listed and asked for again, and the rollover ends once the parent drops the abandoned key; refused once the new key signs', async () => {
    const clock = new ManualClock(Date.now());
    const s = await startTestServer({ clock, zones: { [ZONE]: { timers: { ttl: 60 } } } });
    servers.push(s);
    const oldKey = zoneRecord(s, ZONE).signer;
    expect(errorCode(() => cancelRollover(s.ctx.zones, clock, ZONE))).toBe('invalid_request');
    const { newKey } = startRollover(s.ctx.zones, clock, ZONE);
    const back = cancelRollover(s.ctx.zones, clock, ZONE);
    expect(back).toMatchObject({ phase: 'retiring', newKey: oldKey, oldKey: newKey, cancelled: true });
    expect(zoneRecord(s, ZONE)).toEqual({ signer: oldKey, keys: [oldKey], cds: [oldKey] });
    expect(describeRollover(back)).toMatch(
      new RegExp(`^key rollover abandoned since .* \\(key ${oldKey} kept, ${newKey} dropped\\): waiting for .*abandoned key`),
    );
    await s.ctx.rollovers.runOnce();
    expect(s.ctx.zones.settings(s.ctx.zones.require(ZONE)).rollover).toMatchObject({ phase: 'retiring', cancelled: true });
    submitRollover(s.ctx.zones, ZONE);
    await s.ctx.rollovers.runOnce();
    expect(s.ctx.zones.settings(s.ctx.zones.require(ZONE)).rollover).toBeUndefined();
    expect(zoneRecord(s, ZONE)).toEqual({ signer: oldKey, keys: [oldKey], cds: undefined });

    // Once the new key signs, there is nothing to cancel: the rollover finishes.
    startRollover(s.ctx.zones, clock, ZONE);
    submitRollover(s.ctx.zones, ZONE);
    await s.ctx.rollovers.runOnce();
    clock.advance(61_000);
    await s.ctx.rollovers.runOnce();
    expect(s.ctx.zones.settings(s.ctx.zones.require(ZONE)).rollover).toMatchObject({ phase: 'signing' });
    expect(errorCode(() => cancelRollover(s.ctx.zones, clock, ZONE))).toBe('invalid_request');
  });
});

describe("a rollover reads the parent's servers within bounds", () => {
  it('an answer past 64 KiB counts as no answer (the same answer within the bound counts), and a silent server is given up after 3 s a question', async () => {
    const listeners: Server[] = [];
    const listen = async (handler: Parameters<typeof createServer>[1]) => {
      const srv = createServer(handler);
      listeners.push(srv);
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    };
    try {
      const clock = new ManualClock(Date.now());
      const child = await startTestServer({ clock, zones: { [ZONE]: { timers: { ttl: 60 } } } });
      const parent = await startTestServer({ zones: { example: {} } });
      servers.push(child, parent);
      // Stands for the parent's server, passing its answers on, padded by `pad` characters.
      let pad = 100 * 1024;
      const padded = await listen((req, res) => {
        void fetch(`${parent.url}${req.url}`)
          .then((r) => r.json())
          .then((body) => res.end(JSON.stringify({ ...(body as object), pad: 'x'.repeat(pad) })));
      });
      const oldKey = zoneRecord(child, ZONE).signer;
      const { newKey } = startRollover(child.ctx.zones, clock, ZONE, [padded]);
      parent.ctx.zones.delegate('example', ZONE, { servers: [child.url], ds: [oldKey, newKey], ttl: 60 });
      const rollover = () => child.ctx.zones.settings(child.ctx.zones.require(ZONE)).rollover!;

      await child.ctx.rollovers.runOnce();
      expect(rollover()).toMatchObject({ phase: 'publishing', waiting: expect.stringContaining(padded) });
      expect(rollover().delegationsSeen).toBeUndefined();
      pad = 0;
      await child.ctx.rollovers.runOnce();
      expect(rollover().delegationsSeen).toBeDefined();

      // A server that never answers: each question is given up after 3 s (three names asked for: the
      // zone and its two ancestors), not after the transport's minutes.
      let asked = 0;
      const silent = await listen(() => void asked++);
      child.ctx.zones.changeKeys(ZONE, { parentServers: [silent] }, false);
      const started = Date.now();
      await child.ctx.rollovers.runOnce();
      expect(asked).toBe(3);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(rollover()).toMatchObject({ phase: 'publishing', waiting: expect.stringContaining(silent) });
    } finally {
      for (const srv of listeners) srv.closeAllConnections();
      await Promise.all(listeners.map((srv) => new Promise((r) => srv.close(r))));
    }
  }, 60_000);
});
