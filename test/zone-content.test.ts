import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePayload } from '../src/authority/editor.js';
import { serialLess, serialOf, versionOfSerial } from '../src/records/serial.js';
import { signChangeRequest } from '../src/client/requests.js';
import { DENIAL_MAX_HASHES, nameHash } from '../src/records/denial.js';
import { ZoneDigest } from '../src/records/digest.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, type TestServer } from './support/server.js';

interface Row {
  type: string;
  key: string;
  jws: string;
}

function zoneRows(dataDir: string, zone: string): Row[] {
  const db = new Database(join(dataDir, 'idns.sqlite'), { readonly: true });
  try {
    return db.prepare<[string], Row>('SELECT type, key, jws FROM records WHERE content = ? ORDER BY type, key').all(zone);
  } finally {
    db.close();
  }
}

function digestOf(rows: Row[]): string {
  const d = ZoneDigest.empty();
  for (const r of rows) d.add(r.type, r.key, r.jws);
  return d.value();
}

describe('zone digest (LtHash)', () => {
  it('does not depend on the order records are added in, and removal undoes addition', () => {
    const records = Array.from({ length: 50 }, (_, i) => `record-${i}`);
    const a = ZoneDigest.empty();
    records.forEach((r) => a.add('handle', r, r));
    const b = ZoneDigest.empty();
    [...records].reverse().forEach((r) => b.add('handle', r, r));
    expect(a.value()).toBe(b.value());
    const c = a.clone();
    c.add('handle', 'extra', 'extra');
    c.remove('handle', 'extra', 'extra');
    expect(c.value()).toBe(a.value());
    expect(ZoneDigest.fromState(a.state()).value()).toBe(a.value());
  });

  it('fixes the key each record is stored under: swapping two keys changes it', () => {
    const one = ZoneDigest.empty();
    one.add('handle', 'a@x', 'jws-a');
    one.add('handle', 'b@x', 'jws-b');
    const swapped = ZoneDigest.empty();
    swapped.add('handle', 'a@x', 'jws-b');
    swapped.add('handle', 'b@x', 'jws-a');
    expect(swapped.value()).not.toBe(one.value());
  });

  it('changes when one record is altered, added or dropped', () => {
    const records = Array.from({ length: 20 }, (_, i) => `eyJ.record-${i}.sig`);
    const base = digestOf(records.map((jws) => ({ type: 'handle', key: jws, jws })));
    const altered = [...records];
    altered[7] = altered[7]!.replace('record', 'recorD');
    const added = [...records, 'eyJ.record-20.sig'];
    const dropped = records.slice(1);
    for (const variant of [altered, added, dropped]) {
      expect(digestOf(variant.map((jws) => ({ type: 'handle', key: jws, jws })))).not.toBe(base);
    }
  });
});

describe('zone content kept incrementally by the primary', () => {
  let s: TestServer;
  const zone = 'example.com';
  beforeAll(async () => {
    s = await startTestServer({ zones: { [zone]: {} } });
  });
  afterAll(async () => s.close());

  async function change(intent: Parameters<typeof signChangeRequest>[0], key: ReturnType<typeof newUserKey>) {
    return s.ctx.changes.submit(signChangeRequest(intent, key.private));
  }

  it('keeps the digest equal to a recomputation and the denials tiling the hash space through adds and deletes', async () => {
    const owner = newUserKey();
    const live = new Map<string, string>();
    const denialCounts: number[] = [];
    // Interleaved registrations and deletions in pseudo-random order, enough names for denials to split
    // (more than DENIAL_MAX_HASHES in one) and to merge again.
    for (let i = 0; i < 240; i++) {
      const handle = `user${(i * 37) % 97}@example.com`;
      if (live.has(handle)) {
        await change({ action: 'delete', handle, prev: live.get(handle)! }, owner);
        live.delete(handle);
      } else {
        const r = await change({ action: 'register', handle, endpoint: `https://h.example/${i}`, keys: [owner.public] }, owner);
        live.set(handle, r.op);
      }
      const rows = zoneRows(s.dataDir, zone);
      const info = s.ctx.zones.info(zone);
      expect(info.digest).toBe(digestOf(rows));
      const zonePayload = decodePayload(info.record) as { digest: string; serial: number };
      expect(zonePayload.digest).toBe(info.digest);
      expect(zonePayload.serial).toBe(info.serial);

      // Denials: stored under their `after` ('' for the first), chained in order from the start of the hash
      // space to its end, each listing at most DENIAL_MAX_HASHES; their bounds and lists together are
      // exactly the live handles' hashes.
      const salt = s.ctx.zones.require(zone).salt;
      const hashes = [...live.keys()].map((h) => nameHash(salt, h)).sort();
      const denials = rows
        .filter((r) => r.type === 'denial')
        .map((r) => ({ key: r.key, ...(decodePayload(r.jws) as { after: string | null; next: string | null; hashes: string[] }) }));
      expect(denials[0]!.after).toBeNull();
      expect(denials.at(-1)!.next).toBeNull();
      denials.forEach((d, j) => {
        expect(d.key).toBe(d.after ?? '');
        if (j > 0) expect(d.after).toBe(denials[j - 1]!.next);
        expect(d.hashes.length).toBeLessThanOrEqual(DENIAL_MAX_HASHES);
      });
      expect(denials.flatMap((d) => (d.after === null ? d.hashes : [d.after, ...d.hashes]))).toEqual(hashes);
      denialCounts.push(denials.length);
    }
    // The sequence did split denials and merge them again.
    expect(Math.max(...denialCounts)).toBeGreaterThanOrEqual(3);
    expect(denialCounts.some((n, j) => j > 0 && n < denialCounts[j - 1]!)).toBe(true);
  });

  it('gives every accepted change its own serial and a journal entry in the same version', async () => {
    const owner = newUserKey();
    const before = s.ctx.zones.info(zone).serial;
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        change({ action: 'register', handle: `batch${i}@example.com`, endpoint: 'https://h.example/', keys: [owner.public] }, owner),
      ),
    );
    const serials = results.map((r) => r.serial).sort((a, b) => a - b);
    expect(new Set(serials).size).toBe(30);
    expect(serials[0]).toBe(before + 1);
    expect(serials[29]).toBe(before + 30);
    const db = new Database(join(s.dataDir, 'idns.sqlite'), { readonly: true });
    try {
      for (const r of results) {
        const entries = db
          .prepare<[string, number], { action: string; type: string; key: string }>(
            'SELECT action, type, key FROM journal WHERE zone = ? AND version = ? ORDER BY idx',
          )
          .all(zone, r.serial);
        // The handle record plus the denial that now lists its hash (two when that denial had to split).
        expect(entries).toContainEqual({ action: 'put', type: 'handle', key: r.handle });
        const denials = entries.filter((e) => e.type === 'denial');
        expect(denials.length).toBeGreaterThanOrEqual(1);
        expect(denials.length).toBeLessThanOrEqual(2);
        expect(denials.every((e) => e.action === 'put')).toBe(true);
      }
    } finally {
      db.close();
    }
  });
});

describe('serial arithmetic (RFC 1982)', () => {
  it.each([
    [1, 2, true],
    [2, 1, false],
    [0xffffffff, 0, true],
    [0, 0xffffffff, false],
    [5, 5, false],
    [0, 2 ** 31 - 1, true],
    [0, 2 ** 31 + 1, false],
  ])('serialLess(%i, %i) is %s', (a, b, expected) => {
    expect(serialLess(a, b)).toBe(expected);
  });

  it('maps serials back to versions across the wrap', () => {
    const version = 2 ** 32 + 5;
    expect(serialOf(version)).toBe(5);
    expect(versionOfSerial(5, version)).toBe(version);
    expect(versionOfSerial(0xfffffffe, version)).toBe(2 ** 32 - 2);
    expect(versionOfSerial(6, version)).toBeNull();
  });
});
