import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { importHandles } from '../src/authority/import.js';
import { AnswerFiles } from '../src/authority/answer-files.js';
import { createLogger } from '../src/log.js';
import { ZoneService } from '../src/authority/zones.js';
import { KeyRing } from '../src/authority/keyring.js';
import { systemClock } from '../src/clock.js';
import { DEFAULT_CONFIG } from '../src/config.js';
import { AnswerFile, AnswerFileInvalid, keyHash, writeAnswerFile } from '../src/store/answer-file.js';
import { Store } from '../src/store/store.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

const owner = newUserKey();
const meta = { zone: 'example', content: 'example', createdAt: 1, version: 7, zoneRecord: 'zone.record.jws' };
/** A record as the file holds it; JWS-like text (base64url and dots) with times derived from `i`. */
// Evidence of varied length, so that some entries need a second read (records up to 1.5 KB, evidence up to 1 KB).
const rec = (key: string, jws: string, i = 0) => ({
  key,
  jws,
  ttl: 60 + i,
  exp: 2_000_000_000 + i,
  history: JSON.stringify([[1, `e.${'q'.repeat(i % 1000)}.${i}`]]),
  // Leaves past 2^32 too, and none (a zone without a log).
  leaf: i % 7 === 0 ? null : i * 2 ** 21,
});

describe('answer file format', () => {
  const tmp = tempDir();
  afterAll(() => tmp.remove());
  let n = 0;
  const path = () => join(tmp.dir, `f${n++}.answers`);

  it.each([
    ['its slot table in memory', undefined],
    ['its slot table read from the file', 0],
  ])('finds every record it was given and nothing else, with %s', (_, inMemory) => {
    const records = Array.from({ length: 3000 }, (_, i) => rec(`user${i}@example`, `h.${'p'.repeat(i % 1500)}.${i}`, i));
    const p = path();
    expect(writeAnswerFile(p, meta, records.length, records)).toBe(3000);
    const f = AnswerFile.open(p, inMemory);
    expect(f.meta).toEqual({ ...meta, entries: 3000 });
    for (const { key, ...r } of records) expect(f.get(key)).toEqual(r);
    for (let i = 3000; i < 3300; i++) expect(f.get(`user${i}@example`)).toBeUndefined();
    expect(f.get('')).toBeUndefined();
    f.close();
    expect(() => f.get('user1@example')).toThrow(/closed/);
  });

  it.each([
    ['its slot table in memory', undefined],
    ['its slot table read from the file', 0],
  ])('probes past occupied slots, wrapping round the end of the table, with %s', (_, inMemory) => {
    // 7 records get 16 slots; keys are picked so that all start their probe in the last slot.
    const keys: string[] = [];
    for (let i = 0; keys.length < 7; i++) if ((keyHash(`k${i}@x`) & 15) === 15) keys.push(`k${i}@x`);
    const p = path();
    writeAnswerFile(
      p,
      meta,
      7,
      keys.map((key, i) => rec(key, `jws-of-${key.replace('@', '.')}`, i)),
    );
    const f = AnswerFile.open(p, inMemory);
    keys.forEach((key, i) => expect(f.get(key)?.jws).toBe(`jws-of-${key.replace('@', '.')}`));
    keys.forEach((key, i) => expect(f.get(key)?.ttl).toBe(60 + i));
    const absent = Array.from({ length: 400 }, (_, i) => `absent${i}@x`);
    for (const key of absent) expect(f.get(key)).toBeUndefined();
    f.close();
  });

  it('leaves out records it cannot hold as they are (the database answers for them)', () => {
    const p = path();
    const written = writeAnswerFile(p, meta, 7, [
      rec('a@x', 'compact.jws.ok'),
      rec('caf\u00e9@x', 'compact.jws.ok'),
      rec('c@x', 'not compact: "quoted"'),
      rec('d@x', 'caf\u00e9'),
      { ...rec('e@x', 'compact.jws.ok'), ttl: -1 },
      { ...rec('f@x', 'compact.jws.ok'), exp: 2 ** 32 },
      { ...rec('g@x', 'compact.jws.ok'), leaf: -1 },
    ]);
    expect(written).toBe(1);
    const f = AnswerFile.open(p);
    expect(['a@x', 'caf\u00e9@x', 'c@x', 'd@x', 'e@x', 'f@x', 'g@x'].map((k) => f.get(k)?.jws)).toEqual([
      'compact.jws.ok',
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    expect(f.meta.entries).toBe(1);
    f.close();
  });

  it('refuses a file that was cut short or is not an answer file', () => {
    const p = path();
    writeAnswerFile(p, meta, 2, [rec('a@x', 'one'), rec('b@x', 'two')]);
    const size = readFileSync(p).length;
    truncateSync(p, size - 3);
    expect(() => AnswerFile.open(p)).toThrow(AnswerFileInvalid);
    const junk = path();
    writeFileSync(junk, 'not an answer file at all, just text');
    expect(() => AnswerFile.open(junk)).toThrow(AnswerFileInvalid);
  });

  it('writes nothing when given more records than it counted', () => {
    const p = path();
    const records = [1, 2, 3].map((i) => rec(`u${i}@x`, 'x'));
    expect(() => writeAnswerFile(p, meta, 2, records)).toThrow(/more records than/);
    expect(existsSync(p)).toBe(false);
    expect(existsSync(`${p}.tmp`)).toBe(false);
  });
});

describe('answer files on a server', () => {
  const started: TestServer[] = [];
  afterEach(async () => {
    vi.restoreAllMocks();
    for (const s of started.splice(0)) await s.close();
  });

  async function server(options: { dataDir?: string; minHandles?: number; rebuildAfter?: number; zone?: boolean } = {}): Promise<TestServer> {
    const s = await startTestServer({
      ...(options.dataDir ? { dataDir: options.dataDir } : {}),
      ...(options.zone === false ? {} : { zones: { example: {} } }),
      config: { answerFiles: { enabled: true, minHandles: options.minHandles ?? 20, rebuildAfter: options.rebuildAfter ?? 10_000 } },
      background: true,
    });
    started.push(s);
    return s;
  }

  /** The id of each handle's last accepted change: the `prev` of its next one. */
  const ops = new Map<string, string>();
  async function change(s: TestServer, action: 'register' | 'update' | 'delete', handle: string, endpoint = `https://home.example/${handle}`): Promise<void> {
    const prev = ops.get(handle) ?? '';
    const intent =
      action === 'register'
        ? { action, handle, endpoint, keys: [owner.public] }
        : action === 'update'
          ? { action, handle, endpoint, keys: [owner.public], prev }
          : { action, handle, prev };
    ops.set(handle, (await s.ctx.changes.submit(signChangeRequest(intent, owner.private))).op);
  }

  /** Waits (bounded) for a file of the zone holding at least `entries` handles at a version past `after`. */
  async function fileOf(s: TestServer, entries: number, after = -1) {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const f = s.ctx.answerFiles!.status().find((x) => x.zone === 'example');
      if (f && f.entries >= entries && f.version > after) return f;
      if (Date.now() > deadline) throw new Error(`no answer file of ${entries} handles (have ${JSON.stringify(f)})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  const files = (s: TestServer) => readdirSync(join(s.dataDir, 'answers')).filter((f) => f.endsWith('.answers'));

  /** Every handle's answer through the read fast path, which must equal the database's (resolve()). */
  function expectAnswersMatchDatabase(s: TestServer, handles: string[]) {
    for (const h of handles) expect(s.ctx.authority.resolveSerialised(h).body.toString()).toBe(JSON.stringify(s.ctx.authority.resolve(h)));
  }

  it('answers handles from the file, and handles changed since from the database', async () => {
    const s = await server();
    const handles = Array.from({ length: 25 }, (_, i) => `user${i}@example`);
    for (const h of handles) await change(s, 'register', h);
    const built = await fileOf(s, 20);
    expect(files(s)).toHaveLength(1);

    const get = vi.spyOn(AnswerFile.prototype, 'span');
    const fromDb = vi.spyOn(s.ctx.store.records, 'jws');
    const unchanged = 'user3@example';
    expect(s.ctx.store.journal.handlesChanged('example', built.version, s.ctx.zones.cachedZone('example')!.version)).not.toContain(unchanged);
    const answer = await (await fetch(`${s.url}/v1/resolve/${unchanged}`)).json();
    expect(answer).toEqual(JSON.parse(JSON.stringify(s.ctx.authority.resolve(unchanged))));
    expect(get).toHaveBeenCalledWith(unchanged);
    expect(fromDb).not.toHaveBeenCalled();

    // After the build: an update, a deletion and a new handle. Each is answered from the database.
    await change(s, 'update', 'user5@example', 'https://moved.example/user5');
    await change(s, 'delete', 'user6@example');
    await change(s, 'register', 'late@example');
    get.mockClear();
    const moved = (await (await fetch(`${s.url}/v1/resolve/user5@example`)).json()) as { status: string; record: string };
    expect(moved.status).toBe('answer');
    expect(moved.record).toBe(s.ctx.store.records.get('example', 'handle', 'user5@example')!.jws);
    expect((await fetch(`${s.url}/v1/resolve/user6@example`)).status).toBe(404);
    expect((await fetch(`${s.url}/v1/resolve/late@example`)).status).toBe(200);
    expect(get.mock.calls.map((c) => c[0])).not.toContain('user5@example');
    expect(get.mock.calls.map((c) => c[0])).not.toContain('user6@example');
    const status = s.ctx.answerFiles!.status()[0]!;
    expect(status.changed).toBeGreaterThanOrEqual(3);
    expectAnswersMatchDatabase(s, [...handles, 'late@example', 'nobody@example']);

    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toContain(`idns_answer_file_handles{zone="example",kind="entries"} ${status.entries}`);
    expect(metrics).toContain(`idns_answer_file_handles{zone="example",kind="changed"} ${status.changed}`);
    // A file cut short under the running server: the database answers, and the file is built again.
    const path = join(s.dataDir, 'answers', files(s)[0]!);
    truncateSync(path, 1500);
    const version = status.version;
    expectAnswersMatchDatabase(s, handles);
    await fileOf(s, 20, version - 1);
    expect(existsSync(path)).toBe(false);
    expectAnswersMatchDatabase(s, handles);
    get.mockRestore();
    fromDb.mockRestore();
  });

  it("carries a long history's compact form, as the database path does", async () => {
    const s = await server();
    const handles = Array.from({ length: 25 }, (_, i) => `long${i}@example`);
    // First 40 updates that keep the key, with endpoints long enough that the whole history does not fit
    // the evidence; then the other handles, so that the file is built with that history.
    const long = handles[0]!;
    await change(s, 'register', long);
    for (let n = 0; n < 40; n++) await change(s, 'update', long, `https://home.example/${long}/${n}/${'p'.repeat(300)}`);
    for (const h of handles.slice(1)) await change(s, 'register', h);
    await fileOf(s, 20);
    const get = vi.spyOn(AnswerFile.prototype, 'span');
    const body = JSON.parse(s.ctx.authority.resolveSerialised(long).body.toString()) as { history: [number, string][] };
    expect(get).toHaveBeenCalledWith(long);
    expect(body.history.map(([seq]) => seq)).toEqual([1, 41]);
    expectAnswersMatchDatabase(s, handles);
    get.mockRestore();
  });

  it('rebuilds a file once enough of its handles have changed', async () => {
    const s = await server({ rebuildAfter: 5 });
    for (let i = 0; i < 20; i++) await change(s, 'register', `user${i}@example`);
    const first = await fileOf(s, 20);
    const firstFile = files(s)[0];
    for (let i = 0; i < 6; i++) await change(s, 'update', `user${i}@example`, `https://moved.example/${i}`);
    s.ctx.authority.resolveSerialised('user10@example'); // a query brings the file's set of changes up to date
    const second = await fileOf(s, 20, first.version);
    expect(second.changed).toBe(0);
    expect(files(s)).toHaveLength(1);
    expect(files(s)[0]).not.toBe(firstFile);
    const get = vi.spyOn(AnswerFile.prototype, 'span');
    expectAnswersMatchDatabase(s, ['user0@example', 'user5@example', 'user10@example']);
    expect(get.mock.results.filter((r) => r.value !== undefined)).toHaveLength(3);
    get.mockRestore();
  });

  it('builds no file for a zone below the threshold, and does not keep trying', async () => {
    const s = await server({ minHandles: 1000 });
    const files$ = s.ctx.answerFiles!;
    const deadline = Date.now() + 15_000;
    while (files$.building > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // One build at start found the zone too small; five versions cannot have brought it to 1000.
    expect([files$.builds, files$.building]).toEqual([1, 0]);
    for (let i = 0; i < 5; i++) await change(s, 'register', `user${i}@example`);
    for (let i = 0; i < 50; i++) s.ctx.authority.resolveSerialised(`user${i % 5}@example`);
    expect([files$.builds, files$.building]).toEqual([1, 0]);
    expect(files(s)).toEqual([]);
    expectAnswersMatchDatabase(s, ['user1@example', 'nobody@example']);
  });

  it('takes its file up again after a restart, and replaces one that no longer fits or is damaged', async () => {
    const dir = tempDir();
    try {
      let s = await server({ dataDir: dir.dir });
      for (let i = 0; i < 20; i++) await change(s, 'register', `user${i}@example`);
      await fileOf(s, 20);
      const kept = files(s)[0];
      await s.close();
      started.length = 0;
      // What a build killed part-way leaves behind.
      const leftover = join(dir.dir, 'answers', 'example.0123456789ab.answers.tmp');
      writeFileSync(leftover, 'half a file');

      // Restarted on the unchanged zone: the same file; no build.
      s = await server({ dataDir: dir.dir, zone: false });
      expect(s.ctx.answerFiles!.status()).toMatchObject([{ zone: 'example', entries: 20 }]);
      expect(files(s)).toEqual([kept]);
      expect(existsSync(leftover)).toBe(false);
      expectAnswersMatchDatabase(s, ['user1@example', 'user19@example']);
      expect(s.ctx.answerFiles!.builds).toBe(0);
      await s.close();
      started.length = 0;

      // A bulk import is not journaled: the file can no longer be caught up, so it is replaced.
      const store = Store.open(dir.dir);
      const zones = new ZoneService(store, new KeyRing(join(dir.dir, 'keys')), systemClock);
      const lines = Array.from({ length: 30 }, (_, i) =>
        JSON.stringify({ handle: `bulk${i}@example`, endpoint: `https://b.example/${i}`, keys: [owner.public] }),
      );
      await importHandles(store, zones, systemClock, 'example', lines.join('\n'));
      store.close();
      s = await server({ dataDir: dir.dir, zone: false });
      await fileOf(s, 50);
      expect(files(s)).not.toContain(kept);
      expectAnswersMatchDatabase(s, ['bulk3@example', 'user1@example', 'user19@example']);
      const rebuilt = files(s)[0]!;
      await s.close();
      started.length = 0;

      // A damaged file is deleted and built again.
      const path = join(dir.dir, 'answers', rebuilt);
      truncateSync(path, readFileSync(path).length - 1);
      s = await server({ dataDir: dir.dir, zone: false });
      await fileOf(s, 50);
      expect(files(s)).not.toContain(rebuilt);
      expectAnswersMatchDatabase(s, ['bulk3@example', 'user1@example']);
    } finally {
      for (const s of started.splice(0)) await s.close();
      dir.remove();
    }
  });

  it('on a secondary: builds a file of its copy, follows incremental transfers, and replaces it with a new full copy', async () => {
    const primary = await server();
    const handles = Array.from({ length: 25 }, (_, i) => `user${i}@example`);
    for (const h of handles) await change(primary, 'register', h);
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    const secondary = await server({ zone: false });
    primary.ctx.credentials.allow('example', 'sec1', secondary.url);
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    secondary.ctx.credentials.setOwn('example', { name: 'sec1', secret: primary.ctx.credentials.allowed('example').sec1!.secret });
    expect((await secondary.ctx.replicator.checkNow('example')).transfers.full).toBe(1);
    const first = await fileOf(secondary, 25);
    const firstFile = files(secondary)[0];
    const same = (h: string) =>
      expect(JSON.parse(secondary.ctx.authority.resolveSerialised(h).body.toString()).record).toBe(primary.ctx.authority.resolve(h).record);
    expectAnswersMatchDatabase(secondary, handles);
    handles.forEach(same);

    // An incremental transfer: the changed handle is answered from the copy in the database.
    await change(primary, 'update', 'user1@example', 'https://moved.example/1');
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.transfers.incremental).toBe(1);
    same('user1@example');
    expect(secondary.ctx.answerFiles!.status()[0]!.changed).toBe(1);

    // A bulk import on the primary forces a full transfer: a new copy, so a new file.
    const store = Store.open(primary.dataDir);
    const zones = new ZoneService(store, new KeyRing(join(primary.dataDir, 'keys')), systemClock);
    const lines = Array.from({ length: 30 }, (_, i) =>
      JSON.stringify({ handle: `bulk${i}@example`, endpoint: `https://b.example/${i}`, keys: [owner.public] }),
    );
    await importHandles(store, zones, systemClock, 'example', lines.join('\n'));
    store.close();
    expect((await secondary.ctx.replicator.checkNow('example')).transfers.full).toBe(2);
    await fileOf(secondary, 55, first.version);
    expect(files(secondary)).toHaveLength(1);
    expect(files(secondary)).not.toContain(firstFile);
    [...handles, 'bulk7@example'].forEach(same);
  });

  it('after a restart, uses a file only for the zone exactly as it was built (a restored backup may reach its version by another history)', async () => {
    const dir = tempDir();
    const backup = tempDir();
    const db = ['idns.sqlite', 'idns.sqlite-wal', 'idns.sqlite-shm'];
    const copy = (from: string, to: string) => {
      for (const f of db) rmSync(join(to, f), { force: true });
      for (const f of db) if (existsSync(join(from, f))) copyFileSync(join(from, f), join(to, f));
    };
    try {
      let s = await server({ dataDir: dir.dir, rebuildAfter: 5 });
      for (let i = 0; i < 20; i++) await change(s, 'register', `user${i}@example`);
      await s.close();
      copy(dir.dir, backup.dir);
      const ops0 = new Map(ops);

      // Five updates, then a file that holds them.
      s = await server({ dataDir: dir.dir, zone: false, rebuildAfter: 5 });
      const first = await fileOf(s, 20);
      for (let i = 0; i < 5; i++) await change(s, 'update', `user${i}@example`, `https://first.example/${i}`);
      s.ctx.authority.resolveSerialised('user9@example');
      const built = await fileOf(s, 20, first.version);
      const kept = files(s)[0];
      await s.close();
      started.length = 0;

      // The backup restored, and five other updates: the zone is at the file's version again, by another history.
      copy(backup.dir, dir.dir);
      for (const [k, v] of ops0) ops.set(k, v);
      s = await startTestServer({ dataDir: dir.dir });
      for (let i = 0; i < 5; i++) await change(s, 'update', `user${i}@example`, `https://second.example/${i}`);
      expect(s.ctx.zones.cachedZone('example')!.version).toBe(built.version);
      await s.close();

      s = await server({ dataDir: dir.dir, zone: false });
      expect(files(s)).not.toContain(kept);
      const handles = Array.from({ length: 20 }, (_, i) => `user${i}@example`);
      expectAnswersMatchDatabase(s, handles);
      expect(JSON.parse(s.ctx.authority.resolveSerialised('user0@example').body.toString()).record).toBe(
        s.ctx.store.records.get('example', 'handle', 'user0@example')!.jws,
      );
      await fileOf(s, 20);
      expectAnswersMatchDatabase(s, handles);
    } finally {
      for (const s of started.splice(0)) await s.close();
      dir.remove();
      backup.remove();
    }
  });

  it('stops a build that runs past its time limit, and does not start another at once', async () => {
    const lines: string[] = [];
    const log = createLogger('warn', (line) => void lines.push(line));
    const s = await startTestServer({ zones: { example: {} } });
    started.push(s);
    for (let i = 0; i < 3; i++) await change(s, 'register', `user${i}@example`);
    const files$ = new AnswerFiles(
      s.ctx.store,
      { dir: join(s.dataDir, 'answers'), dbPath: s.ctx.store.path, minHandles: 1, rebuildAfter: 1, buildTimeoutMs: 1 },
      systemClock,
      log,
    );
    try {
      files$.start(s.ctx.zones.list());
      const deadline = Date.now() + 15_000;
      while (files$.builds === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(files$.builds).toBe(1);
      expect(files$.status()).toEqual([]);
      expect(lines.join('')).toContain('took too long');
      for (let i = 0; i < 20; i++) expect(files$.record(s.ctx.zones.cachedZone('example')!, `user${i % 3}@example`)).toBeUndefined();
      expect(files$.building).toBe(0);
      expect(readdirSync(join(s.dataDir, 'answers'))).toEqual([]);
    } finally {
      await files$.close();
    }
  });

  it('is off when the configuration says so', async () => {
    const s = await startTestServer({ zones: { example: {} }, config: { answerFiles: { ...DEFAULT_CONFIG.answerFiles, enabled: false } }, background: true });
    started.push(s);
    expect(s.ctx.answerFiles).toBeNull();
    await change(s, 'register', 'a@example');
    expectAnswersMatchDatabase(s, ['a@example']);
    expect(existsSync(join(s.dataDir, 'answers'))).toBe(false);
  });
});
