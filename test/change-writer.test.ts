import { rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { QueuedChange } from '../src/authority/change-batch.js';
import { ChangeWriter } from '../src/authority/change-writer.js';
import { parseChangeRequest } from '../src/records/change-request.js';
import { signChangeRequest } from '../src/client/requests.js';
import { ManualClock } from '../src/clock.js';
import { IdnsError } from '../src/errors.js';
import { Store } from '../src/store/store.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

// The writer thread: the server's change batches run on a worker thread with its own SQLite connection.
// Real worker threads, real database files, real signatures.

const open: { close: () => Promise<void> | void }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function server(options: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const s = await startTestServer({ zones: { 'example.com': { policy: 'open' } }, ...options });
  open.push(s);
  return s;
}

function registration(handle: string, clock?: ManualClock): string {
  const key = newUserKey();
  return signChangeRequest({ action: 'register', handle, endpoint: 'https://social.example/', keys: [key.public] }, key.private, clock);
}

function queued(handle: string): QueuedChange {
  return { req: parseChangeRequest(registration(handle)), zone: 'example.com', operator: false };
}

/** A data directory with zone example.com, made by a server that is closed again (the writer gets the files to itself). */
async function zoneDirectory(): Promise<string> {
  const tmp = tempDir('idns-writer-');
  open.push({ close: tmp.remove });
  const s = await startTestServer({ zones: { 'example.com': { policy: 'open' } }, dataDir: tmp.dir });
  await s.close();
  return tmp.dir;
}

function storedHandle(dataDir: string, handle: string): boolean {
  const store = Store.open(dataDir);
  try {
    const zone = store.zones.get('example.com')!;
    return store.records.get(zone.content, 'handle', handle) !== undefined;
  } finally {
    store.close();
  }
}

describe('the writer thread', () => {
  it('applies concurrent registrations in batches on its own connection, and the server sees each one as soon as it is acknowledged', async () => {
    const s = await server();
    const heard: string[] = [];
    s.ctx.store.onZoneChanged((zone) => heard.push(zone));
    const before = s.ctx.zones.cachedZone('example.com')!.version;
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => s.ctx.changes.submit(registration(`w${i}@example.com`))));
    // Acknowledged: the main connection's zone row (cached for the read path) is already the new one.
    const serials = results.map((r) => r.serial).sort((a, b) => a - b);
    expect(serials).toEqual(Array.from({ length: 40 }, (_, i) => before + 1 + i));
    expect(s.ctx.zones.cachedZone('example.com')!.version).toBe(before + 40);
    for (const r of results) expect(s.ctx.store.records.get('example.com', 'handle', r.handle)?.jws).toBe(r.record);
    // Fewer announcements than changes: they were committed in batches, each announced after its commit.
    expect(heard.length).toBeGreaterThan(0);
    expect(heard.length).toBeLessThan(40);
    expect(new Set(heard)).toEqual(new Set(['example.com']));
  });

  it('applies a change at the time of the server clock, not the thread’s own', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    const s = await server({ clock });
    const result = await s.ctx.changes.submit(registration('clocked@example.com', clock));
    const payload = JSON.parse(Buffer.from(result.record!.split('.')[1]!, 'base64url').toString('utf8'));
    expect(payload.iat).toBe(Date.UTC(2026, 5, 1) / 1000);
  });

  it('refuses a change alone with its code, and the rest of the batch is applied', async () => {
    const s = await server();
    const first = registration('taken@example.com');
    await s.ctx.changes.submit(first);
    const outcomes = await Promise.allSettled([
      s.ctx.changes.submit(first),
      s.ctx.changes.submit(registration('taken@example.com')),
      s.ctx.changes.submit(registration('free@example.com')),
    ]);
    expect(outcomes.map((o) => (o.status === 'rejected' ? (o.reason as IdnsError).code : 'ok'))).toEqual(['replayed', 'handle_exists', 'ok']);
    expect(outcomes[0]!.status === 'rejected' && outcomes[0].reason).toBeInstanceOf(IdnsError);
  });

  it('fails a whole batch whose transaction does not commit, with the storage error, and applies none of it', async () => {
    const dir = await zoneDirectory();
    // A cap at the file's present size: the first page the batch needs is refused (SQLITE_FULL).
    const writer = new ChangeWriter({ dataDir: dir, maxDatabaseBytes: statSync(join(dir, 'idns.sqlite')).size });
    open.push(writer);
    const batch = Array.from({ length: 100 }, (_, i) => queued(`full${i}@example.com`));
    const failure = await writer.run(batch, Date.now()).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(IdnsError);
    expect((failure as IdnsError).code).toBe('storage_full');
    expect(storedHandle(dir, 'full0@example.com')).toBe(false);
    expect(storedHandle(dir, 'full99@example.com')).toBe(false);
  });

  it('fails the batch of a thread that dies, and starts a new thread for the next batch', async () => {
    const tmp = tempDir('idns-writer-');
    open.push({ close: tmp.remove });
    const dir = join(tmp.dir, 'data');
    // A file where the data directory should be: the thread cannot open the database and dies.
    writeFileSync(dir, 'not a directory');
    const writer = new ChangeWriter({ dataDir: dir, maxDatabaseBytes: null });
    open.push(writer);
    const failure = await writer.run([queued('lost@example.com')], Date.now()).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(IdnsError);
    expect((failure as IdnsError).code).toBe('internal');
    rmSync(dir);
    const s = await startTestServer({ zones: { 'example.com': { policy: 'open' } }, dataDir: dir });
    await s.close();
    const result = await writer.run([queued('after@example.com')], Date.now());
    expect(result.outcomes[0]!.ok).toBe(true);
    expect(result.committed).toEqual([{ zone: 'example.com', version: expect.any(Number) }]);
    expect(storedHandle(dir, 'after@example.com')).toBe(true);
  });
  it('checks the proofs of possession of a change it was not told are verified, on the thread, and refuses a forged one alone', async () => {
    const dir = await zoneDirectory();
    const writer = new ChangeWriter({ dataDir: dir, maxDatabaseBytes: null });
    open.push(writer);
    const owner = newUserKey();
    const added = newUserKey();
    const other = newUserKey();
    const intent = (handle: string) => ({ action: 'register' as const, handle, endpoint: 'https://social.example/', keys: [owner.public, added.public] });
    const good = parseChangeRequest(signChangeRequest(intent('pop@example.com'), owner.private, undefined, [added.private]));
    // The added key's proof swapped for one by another key over the same payload, header kept.
    const honest = parseChangeRequest(signChangeRequest(intent('forged@example.com'), owner.private, undefined, [added.private]));
    honest.proofs[0]!.decoded.signature = parseChangeRequest(
      signChangeRequest({ ...intent('forged@example.com'), keys: [owner.public, other.public] }, owner.private, undefined, [other.private]),
    ).proofs[0]!.decoded.signature;
    const result = await writer.run(
      [
        { req: good, zone: 'example.com', operator: false },
        { req: honest, zone: 'example.com', operator: false },
      ],
      Date.now(),
    );
    expect(result.outcomes[0]!.ok).toBe(true);
    expect(result.outcomes[1]).toMatchObject({ ok: false, error: { code: 'invalid_signature' } });
    expect(storedHandle(dir, 'pop@example.com')).toBe(true);
    expect(storedHandle(dir, 'forged@example.com')).toBe(false);
  });
});
