import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compactVerify, importJWK } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { checkAnswer } from '../src/client/answers.js';
import { signChangeRequest } from '../src/client/requests.js';
import { ZoneDigest } from '../src/records/digest.js';
import { DENIAL_FILL, nameHash } from '../src/records/denial.js';
import { newUserKey } from './support/keys.js';
import { IDNS_BIN, runIdns, spawnServer } from './support/process.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

describe('idns zone import', () => {
  let s: TestServer;
  const owner = newUserKey();
  const line = (handle: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ handle, endpoint: `https://h.example/${handle}`, keys: [owner.public], ...extra });
  const file = (name: string, lines: string[]) => {
    const path = join(s.dataDir, name);
    writeFileSync(path, lines.join('\n') + '\n');
    return path;
  };

  beforeAll(async () => {
    s = await startTestServer({ zones: { 'imp.test': {}, 'other.test': {} } });
    await s.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: 'existing@imp.test', endpoint: 'https://h.example/', keys: [owner.public] }, owner.private),
    );
    s.ctx.zones.delegate('imp.test', 'kid.imp.test', { servers: ['https://kid.test'], ds: [owner.kid] });
    // A handle registered and deleted: its history stays, so an import must not begin another one.
    const gone = signChangeRequest({ action: 'register', handle: 'gone@imp.test', endpoint: 'https://h.example/', keys: [owner.public] }, owner.private);
    const { op } = await s.ctx.changes.submit(gone);
    await s.ctx.changes.submit(signChangeRequest({ action: 'delete', handle: 'gone@imp.test', prev: op }, owner.private));
  });
  afterAll(async () => s.close());

  it('refuses a bad file as a whole, naming the line, and changes nothing', async () => {
    const before = s.ctx.zones.info('imp.test');
    for (const [lines, message] of [
      [[line('a@imp.test'), '{not json'], 'line 2: not valid JSON'],
      [[line('a@imp.test'), line('a@imp.test')], 'line 2: a@imp.test appears twice'],
      [[line('b@other.test')], 'line 1: b@other.test: it belongs to zone other.test'],
      [[line('c@x.kid.imp.test')], 'delegated away'],
      [[line('d@imp.test', { extra: 1 })], 'unexpected member "extra"'],
      [[JSON.stringify({ handle: 'e@imp.test', endpoint: 'ftp://x', keys: [owner.public] })], 'line 1:'],
      [[line('existing@imp.test')], 'already registered'],
      [[line('gone@imp.test')], 'gone@imp.test was registered in imp.test before and has a history'],
    ] as const) {
      const r = await runIdns(['zone', 'import', 'imp.test', file('bad.ndjson', [...lines]), '--data', s.dataDir]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(message);
    }
    expect(s.ctx.zones.info('imp.test')).toMatchObject({ serial: before.serial, digest: before.digest, handles: before.handles });
  });

  it('rolls back a large import whose bad line comes after thousands of stored ones, naming the line', async () => {
    const before = s.ctx.zones.info('imp.test');
    // Several signing batches are stored before line 4,999 is read; the whole import must still vanish.
    const lines = Array.from({ length: 5000 }, (_, i) => line(`bulk${i}@imp.test`));
    lines[4998] = line('bulk0@imp.test');
    const r = await runIdns(['zone', 'import', 'imp.test', file('late-bad.ndjson', lines), '--data', s.dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('line 4999: bulk0@imp.test appears twice');
    expect(s.ctx.zones.info('imp.test')).toMatchObject({ serial: before.serial, digest: before.digest, handles: before.handles });
    expect(s.ctx.store.records.get('imp.test', 'handle', 'bulk1@imp.test')).toBeUndefined();
    expect((await fetch(`${s.url}/v1/handles/bulk1@imp.test/log`)).status).toBe(404);
  });

  it('imports many handles in one serial: answers and denials verify, the digest is right, updates work', async () => {
    const handles = Array.from({ length: 300 }, (_, i) => `user${i}@imp.test`);
    const before = s.ctx.zones.info('imp.test');
    const r = await runIdns([
      'zone',
      'import',
      'imp.test',
      file(
        'ok.ndjson',
        handles.map((h) => line(h)),
      ),
      '--data',
      s.dataDir,
      '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ zone: 'imp.test', imported: 300, serial: before.serial + 1 });
    const anchors = new Map([['imp.test', before.keyThumbprints]]);
    for (const h of [handles[0]!, handles[299]!, 'existing@imp.test']) {
      const body = await (await fetch(`${s.url}/v1/resolve/${h}`)).json();
      expect(checkAnswer(body, h, anchors).status).toBe('answer');
    }
    const denial = (await (await fetch(`${s.url}/v1/resolve/nobody@imp.test`)).json()) as { record: string; zoneRecord: string };
    expect(checkAnswer(denial, 'nobody@imp.test', anchors).status).toBe('denial');
    // That denial covers only its own range and not the hashes it lists: presented for a name outside the
    // range, or for an imported handle whose hash it lists, it fails verification.
    const payload = JSON.parse(Buffer.from(denial.record.split('.')[1]!, 'base64url').toString()) as {
      after: string | null;
      next: string | null;
      hashes: string[];
    };
    const salt = JSON.parse(Buffer.from(denial.zoneRecord.split('.')[1]!, 'base64url').toString()).denial.salt as string;
    expect(payload.after !== null || payload.next !== null).toBe(true);
    const outside = Array.from({ length: 2000 }, (_, i) => `stranger${i}@imp.test`).find((n) => {
      const h = nameHash(salt, n);
      return (payload.after !== null && h <= payload.after) || (payload.next !== null && h >= payload.next);
    });
    expect(outside).toBeDefined();
    expect(() => checkAnswer(denial, outside!, anchors)).toThrow(/does not cover/);
    const listedHandle = handles.find((h) => payload.hashes.includes(nameHash(salt, h)));
    expect(listedHandle).toBeDefined();
    expect(() => checkAnswer(denial, listedHandle!, anchors)).toThrow(/does not cover/);
    // The delegation survived the rebuilt denial chain: the child is still referred to, never denied.
    expect(await (await fetch(`${s.url}/v1/resolve/a@kid.imp.test?zone=imp.test`)).json()).toMatchObject({ status: 'referral' });

    const info = s.ctx.zones.info('imp.test');
    const recomputed = ZoneDigest.empty();
    for (const type of ['handle', 'delegation', 'denial', 'op'] as const) {
      for (const key of s.ctx.store.records.keys('imp.test', type)) recomputed.add(type, key, s.ctx.store.records.get('imp.test', type, key)!.jws);
    }
    expect(recomputed.value()).toBe(info.digest);
    // Every imported handle's history is one operator entry, signed by the zone key (beside the registered one's).
    expect(s.ctx.store.records.keys('imp.test', 'op').filter((k) => k.startsWith('user'))).toHaveLength(handles.length);
    // 302 names (the handles, the one there before, the cut) in denials of DENIAL_FILL hashes, each bounded
    // by the hash after it: 17 full runs of 17 hashes and a last one with the remaining 13.
    const denials = s.ctx.store.records.keys('imp.test', 'denial');
    expect(denials).toHaveLength(Math.floor(302 / (DENIAL_FILL + 1)) + 1);

    // The owner updates an imported handle, naming the import as prev.
    const log = (await (await fetch(`${s.url}/v1/handles/user7@imp.test/log`)).json()) as { operations: { op: string; action: string; request: string }[] };
    expect(log.operations[0]).toMatchObject({ seq: 1, action: 'import' });
    const entry = await compactVerify(
      log.operations[0]!.request,
      await importJWK(JSON.parse(Buffer.from(denial.zoneRecord.split('.')[1]!, 'base64url').toString()).keys[0], 'EdDSA'),
    );
    expect(entry.protectedHeader.typ).toBe('idns-operator');
    expect(JSON.parse(new TextDecoder().decode(entry.payload))).toMatchObject({ action: 'import', zone: 'imp.test', handle: 'user7@imp.test' });
    const update = signChangeRequest(
      { action: 'update', handle: 'user7@imp.test', endpoint: 'https://new.example/', keys: [owner.public], prev: log.operations[0]!.op },
      owner.private,
    );
    expect((await s.ctx.changes.submit(update)).serial).toBe(info.serial + 1);
    // Secondaries must take a full transfer: the journal does not cover the import.
    expect((await fetch(`${s.url}/v1/zones/imp.test/transfer?since=${before.serial}`)).status).toBe(410);
  });
});

describe('idns zone import with the server stopped', () => {
  const owner = newUserKey();
  const removers: (() => unknown)[] = [];
  afterEach(async () => {
    for (const r of removers.splice(0).reverse()) await r();
  });

  /** A data directory holding zone off.test and an import file of `count` handles. */
  async function offlineZone(count: number): Promise<{ dir: string; file: string; before: { serial: number; digest: string } }> {
    const tmp = tempDir('idns-import-offline-');
    removers.push(tmp.remove);
    const created = await runIdns(['zone', 'create', 'off.test', '--server-url', 'http://127.0.0.1:1', '--data', tmp.dir, '--json']);
    expect(created.code, created.stderr).toBe(0);
    const lines = Array.from({ length: count }, (_, i) =>
      JSON.stringify({ handle: `u${i}@off.test`, endpoint: `https://h.example/u${i}`, keys: [owner.public] }),
    );
    const file = join(tmp.dir, 'handles.ndjson');
    writeFileSync(file, lines.join('\n') + '\n');
    const info = await runIdns(['zone', 'show', 'off.test', '--data', tmp.dir, '--json']);
    return { dir: tmp.dir, file, before: JSON.parse(info.stdout) as { serial: number; digest: string } };
  }

  function inspect(dir: string): { integrity: unknown; journalMode: unknown; handles: number } {
    const db = new Database(join(dir, 'idns.sqlite'));
    try {
      return {
        integrity: db.pragma('integrity_check', { simple: true }),
        journalMode: db.pragma('journal_mode', { simple: true }),
        handles: (db.prepare("SELECT count(*) AS n FROM records WHERE type = 'handle'").get() as { n: number }).n,
      };
    } finally {
      db.close();
    }
  }

  it('writes through a rollback journal, then leaves the database in WAL mode, and the server serves it', async () => {
    const { dir, file } = await offlineZone(3000);
    const r = await runIdns(['zone', 'import', 'off.test', file, '--data', dir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ imported: 3000, journal: 'rollback' });
    expect(existsSync(join(dir, 'idns.sqlite-journal'))).toBe(false);
    expect(inspect(dir)).toEqual({ integrity: 'ok', journalMode: 'wal', handles: 3000 });

    const server = await spawnServer(['--listen', '127.0.0.1:0', '--data', dir, '--no-bootstrap']);
    removers.push(() => server.stop());
    const res = await fetch(`${server.url}/v1/resolve/u2999@off.test`);
    expect(res.status).toBe(200);
    const zone = (await (await fetch(`${server.url}/v1/zones/off.test`)).json()) as { digest: string };
    const info = await runIdns(['zone', 'show', 'off.test', '--data', dir, '--json']);
    expect((JSON.parse(info.stdout) as { digest: string }).digest).toBe(zone.digest);
  });

  it('leaves the zone as it was when killed (-9) in the middle, and the database opens in WAL mode', async () => {
    const { dir, file, before } = await offlineZone(40_000);
    const child = spawn(process.execPath, [IDNS_BIN, 'zone', 'import', 'off.test', file, '--data', dir], { stdio: 'ignore' });
    const exited = new Promise<unknown>((resolve) => child.once('exit', resolve));
    removers.push(async () => {
      child.kill('SIGKILL');
      await exited;
    });
    // The rollback journal exists once the import's transaction has written its first page.
    const journal = join(dir, 'idns.sqlite-journal');
    const deadline = Date.now() + 20_000;
    while (!existsSync(journal)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error('the import never started writing');
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(child.exitCode).toBeNull();
    child.kill('SIGKILL');
    await exited;

    const info = await runIdns(['zone', 'show', 'off.test', '--data', dir, '--json']);
    expect(info.code, info.stderr).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({ serial: before.serial, digest: before.digest, handles: 0 });
    expect(existsSync(journal)).toBe(false);
    expect(inspect(dir)).toEqual({ integrity: 'ok', journalMode: 'wal', handles: 0 });
  });

  it('keeps the WAL when a server has the database open', async () => {
    const { dir, file } = await offlineZone(10);
    const server = await spawnServer(['--listen', '127.0.0.1:0', '--data', dir, '--no-bootstrap']);
    removers.push(() => server.stop());
    const r = await runIdns(['zone', 'import', 'off.test', file, '--data', dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('imported 10 handles');
    expect(r.stdout).toContain('another process (a running server?) had the database open');
    expect((await fetch(`${server.url}/v1/resolve/u9@off.test`)).status).toBe(200);
  });
});
