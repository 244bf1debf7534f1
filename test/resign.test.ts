import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Resigner } from '../src/authority/resigner.js';
import { DEFAULT_ZONE_TIMERS } from '../src/authority/settings.js';
import { checkAnswer } from '../src/client/answers.js';
import { signChangeRequest } from '../src/client/requests.js';
import { epochSeconds, ManualClock } from '../src/clock.js';
import { IdnsError } from '../src/errors.js';
import { ZoneDigest } from '../src/records/digest.js';
import { get, payloadOf, putChange, registerOk, resolveHandle } from './support/http.js';
import { newUserKey, type UserKey } from './support/keys.js';
import { startTestServer, type TestServer } from './support/server.js';

const DAY_MS = 24 * 3600 * 1000;
const { signatureValidity, resignBefore } = DEFAULT_ZONE_TIMERS;
/** Just past the point where every signature made at the start has less than `resignBefore` left. */
const PAST_DUE_MS = (signatureValidity - resignBefore) * 1000 + 60_000;

interface Row {
  type: string;
  key: string;
  version: number;
  exp: number;
  jws: string;
}

let s: TestServer;
let clock: ManualClock;
let db: Database.Database;

beforeEach(async () => {
  clock = new ManualClock(Date.UTC(2026, 0, 1));
  s = await startTestServer({ clock, zones: { 'example.com': {}, 'example.org': {} } });
  // A separate read-only connection: what is on disk, not what the server's objects believe.
  db = new Database(join(s.dataDir, 'idns.sqlite'), { readonly: true, fileMustExist: true });
});
afterEach(async () => {
  db?.close();
  await s?.close();
});

function rows(zone: string): Row[] {
  return db.prepare<[string], Row>('SELECT type, key, version, exp, jws FROM records WHERE content = ? ORDER BY type, key').all(zone);
}

/** The records that carry the zone's signature (history entries are their owners' and are never re-signed). */
function signedRows(zone: string): Row[] {
  return rows(zone).filter((r) => r.type !== 'op');
}

function zoneRow(zone: string): { version: number; record: string; recordExp: number } {
  return db
    .prepare<[string], { version: number; record: string; recordExp: number }>('SELECT version, record, record_exp AS recordExp FROM zones WHERE name = ?')
    .get(zone)!;
}

/** The zone digest recomputed from scratch over every stored record of the zone. */
function recomputedDigest(zone: string): string {
  const d = ZoneDigest.empty();
  for (const r of rows(zone)) d.add(r.type, r.key, r.jws);
  return d.value();
}

function anchors(zone: string): Map<string, string[]> {
  return new Map([[zone, s.ctx.zones.info(zone).keyThumbprints]]);
}

async function registerSome(zone: string, n: number): Promise<{ handle: string; key: UserKey; op: string }[]> {
  const out = [];
  for (let i = 0; i < n; i++) {
    const key = newUserKey();
    const handle = `user${i}@${zone}`;
    const reg = await registerOk(s.url, key, handle, { clock });
    out.push({ handle, key, op: reg.op });
  }
  return out;
}

/** Every handle answers with a record that verifies at the clock's current time, and unknown names are denied verifiably. */
async function expectServedAnswersVerify(zone: string, handles: string[]): Promise<void> {
  for (const h of handles) {
    const res = await resolveHandle(s.url, h);
    expect(res.status).toBe(200);
    expect(checkAnswer(res.json, h, anchors(zone), clock).status).toBe('answer');
  }
  for (const h of [`ghost1@${zone}`, `ghost2@${zone}`, `ghost3@${zone}`]) {
    const res = await resolveHandle(s.url, h);
    expect(res.status).toBe(404);
    expect(checkAnswer(res.json, h, anchors(zone), clock).status).toBe('denial');
  }
}

describe('re-signing before expiry', () => {
  it('does nothing while every signature has more than resignBefore left', async () => {
    await registerSome('example.com', 3);
    const before = { rows: rows('example.com'), zone: zoneRow('example.com') };
    clock.advance(PAST_DUE_MS - 120_000);
    expect(s.ctx.resigner.runOnce()).toBe(0);
    expect(rows('example.com')).toEqual(before.rows);
    expect(zoneRow('example.com')).toEqual(before.zone);
  });

  it('re-signs every due record: exp moves forward, the serial increases, the digest changes and matches a full recomputation', async () => {
    const handles = await registerSome('example.com', 4);
    const beforeRows = signedRows('example.com');
    const beforeZone = zoneRow('example.com');
    const beforeZoneRecord = payloadOf(beforeZone.record);
    expect(beforeZoneRecord.digest).toBe(recomputedDigest('example.com'));
    // 4 handles and the one denial listing their hashes.
    expect(beforeRows).toHaveLength(5);
    const oldAnswers = await Promise.all(handles.map((h) => resolveHandle(s.url, h.handle)));

    clock.advance(PAST_DUE_MS);
    const now = epochSeconds(clock);
    const n = s.ctx.resigner.runOnce();
    // Every zone's due records: example.com's 5 and example.org's single empty-zone denial.
    expect(n).toBe(5 + signedRows('example.org').length);
    expect(signedRows('example.org')).toHaveLength(1);

    const afterRows = signedRows('example.com');
    const afterZone = zoneRow('example.com');
    const afterZoneRecord = payloadOf(afterZone.record);
    expect(afterRows.map((r) => [r.type, r.key])).toEqual(beforeRows.map((r) => [r.type, r.key]));
    afterRows.forEach((r, i) => {
      const old = beforeRows[i]!;
      expect(r.exp).toBeGreaterThan(old.exp);
      expect(r.exp).toBe(now + signatureValidity);
      const p = payloadOf(r.jws);
      expect(p.exp).toBe(r.exp);
      expect(p.iat).toBe(now);
      expect(p.serial).toBe(afterZoneRecord.serial);
      // Same content: only iat, exp and serial differ.
      const { iat: _a, exp: _b, serial: _c, ...content } = p;
      const { iat: _d, exp: _e, serial: _f, ...oldContent } = payloadOf(old.jws);
      expect(content).toEqual(oldContent);
    });
    // One batch is one new version of the zone.
    expect(afterZone.version).toBe(beforeZone.version + 1);
    expect(afterZoneRecord.serial).toBe(beforeZoneRecord.serial + 1);
    expect((await get(s.url, '/v1/zones/example.com')).json.serial).toBe(afterZoneRecord.serial);
    expect(afterZoneRecord.exp).toBe(now + signatureValidity);
    expect(afterZone.recordExp).toBe(now + signatureValidity);
    // The digest changed (every record's bytes changed) and is exactly the digest of the stored records.
    expect(afterZoneRecord.digest).not.toBe(beforeZoneRecord.digest);
    expect(afterZoneRecord.digest).toBe(recomputedDigest('example.com'));
    expect(s.ctx.zones.info('example.com').digest).toBe(afterZoneRecord.digest);
    // Secondaries learn the new signatures from the journal: one put per re-signed record at the new version
    // (then the version's zone record, a leaf of the zone's log).
    const journal = db
      .prepare<[string, number], { action: string; jws: string }>(
        "SELECT action, jws FROM journal WHERE zone = ? AND version = ? AND type != 'zone' ORDER BY idx",
      )
      .all('example.com', afterZone.version);
    expect(journal.map((j) => j.action)).toEqual(Array(5).fill('put'));
    expect(new Set(journal.map((j) => j.jws))).toEqual(new Set(afterRows.map((r) => r.jws)));

    // Past the old signatures' expiry, the old answers no longer verify but the served ones do.
    clock.advance(resignBefore * 1000);
    for (const [i, old] of oldAnswers.entries()) {
      expect(() => checkAnswer(old.json, handles[i]!.handle, anchors('example.com'), clock)).toThrow(IdnsError);
    }
    await expectServedAnswersVerify(
      'example.com',
      handles.map((h) => h.handle),
    );
    // A second run right after finds nothing due and changes nothing.
    clock.set(clock.now() - resignBefore * 1000);
    const version = zoneRow('example.com').version;
    expect(s.ctx.resigner.runOnce()).toBe(0);
    expect(zoneRow('example.com').version).toBe(version);
  });

  it('caps the served TTL (max-age) by the time left before the signature expires', async () => {
    const [h] = await registerSome('example.com', 1);
    const exp = payloadOf((await resolveHandle(s.url, h!.handle)).json.record).exp as number;
    clock.set((exp - 100) * 1000);
    const answer = await resolveHandle(s.url, h!.handle);
    expect(answer.json.ttl).toBe(100);
    expect(answer.headers['cache-control']).toMatch(/max-age=100(\D|$)/);
    const denial = await resolveHandle(s.url, 'ghost@example.com');
    expect(denial.json.ttl).toBe(100);
    expect(denial.headers['cache-control']).toMatch(/max-age=100(\D|$)/);
  });

  it('re-signed handles still accept updates naming the op from before re-signing', async () => {
    const [h] = await registerSome('example.com', 1);
    clock.advance(PAST_DUE_MS);
    expect(s.ctx.resigner.runOnce()).toBeGreaterThan(0);
    const update = signChangeRequest(
      { action: 'update', handle: h!.handle, endpoint: 'https://moved.example/x', keys: [h!.key.public], prev: h!.op },
      h!.key.private,
      clock,
    );
    const res = await putChange(s.url, h!.handle, update);
    expect(res.status).toBe(200);
    expect(payloadOf(zoneRow('example.com').record).digest).toBe(recomputedDigest('example.com'));
  });

  it('respects the batch size: at most 2 records per run and per zone, each run its own version, the digest right after every run', async () => {
    const handles = await registerSome('example.com', 4);
    await registerSome('example.org', 1);
    const total = signedRows('example.com').length;
    expect(total).toBe(5);
    const orgTotal = signedRows('example.org').length;
    expect(orgTotal).toBe(2);
    const small = new Resigner(s.ctx.store, s.ctx.zones, clock, 2);
    clock.advance(PAST_DUE_MS);
    const now = epochSeconds(clock);

    const counts: number[] = [];
    for (let run = 0; run < 20; run++) {
      const before = signedRows('example.com');
      const beforeOrg = signedRows('example.org');
      const version = zoneRow('example.com').version;
      const n = small.runOnce();
      counts.push(n);
      if (n === 0) break;
      const changed = signedRows('example.com').filter((r, i) => r.jws !== before[i]!.jws);
      const changedOrg = signedRows('example.org').filter((r, i) => r.jws !== beforeOrg[i]!.jws);
      expect(changed.length).toBeLessThanOrEqual(2);
      expect(changedOrg.length).toBeLessThanOrEqual(2);
      expect(changed.length + changedOrg.length).toBe(n);
      for (const r of changed) expect(r.exp).toBe(now + signatureValidity);
      if (changed.length > 0) expect(zoneRow('example.com').version).toBe(version + 1);
      for (const z of ['example.com', 'example.org']) expect(payloadOf(zoneRow(z).record).digest).toBe(recomputedDigest(z));
      // Partially re-signed zones still serve answers that verify.
      await expectServedAnswersVerify(
        'example.com',
        handles.map((h) => h.handle),
      );
    }
    // 5 + 2 records (handles and one denial each), 2 per zone per run: example.com needs 3 runs, example.org
    // 1; then a run that finds nothing.
    expect(counts).toEqual([4, 2, 1, 0]);
    for (const r of [...signedRows('example.com'), ...signedRows('example.org')]) expect(r.exp).toBe(now + signatureValidity);

    clock.advance(resignBefore * 1000);
    await expectServedAnswersVerify(
      'example.com',
      handles.map((h) => h.handle),
    );
  });
});
