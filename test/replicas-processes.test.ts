import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { send } from './support/http.js';
import { newUserKey, writeUserKey } from './support/keys.js';
import { runIdns } from './support/process.js';
import {
  isFullTransferPath,
  bulkRegister,
  Cluster,
  handles,
  idns,
  register,
  registerMany,
  registerRequest,
  until,
  zoneState,
  type Node,
  type Proxy,
  type ZoneState,
} from './support/cluster.js';

/**
 * Secondary replicas with real processes (issue 4): every server is an `idns serve` child process on its
 * own data directory and port, killed with SIGKILL where the test says kill -9. Servers that copy through
 * a proxy do so only to let the test see (or hold, or slow) the transfer requests; the proxy forwards
 * bytes unchanged.
 */

const owner = newUserKey();
const cluster = new Cluster();
const timings: Record<string, number> = {};

afterEach(() => cluster.cleanup());
afterAll(() => {
  if (process.env.IDNS_TEST_TIMINGS) console.log(`replica process timings (ms): ${JSON.stringify(timings)}`);
});

interface ZoneOptions {
  refresh: number;
  retry: number;
  expire?: number;
}

/** `idns zone create example` on the primary's data dir, listing `servers`; returns the key thumbprint. */
async function createZone(p: Node, servers: Node[], o: ZoneOptions): Promise<string> {
  const args = [
    'zone',
    'create',
    'example',
    ...servers.flatMap((s) => ['--server-url', s.url]),
    '--data',
    p.dir,
    '--refresh',
    String(o.refresh),
    '--retry',
    String(o.retry),
  ];
  if (o.expire !== undefined) args.push('--expire', String(o.expire));
  const created = await idns([...args, '--json']);
  expect(created.keyThumbprints).toHaveLength(1);
  return created.keyThumbprints[0] as string;
}

/** `idns zone secondary example` on a data dir. */
async function makeSecondary(s: Node, source: string, kid: string, extra: string[] = []): Promise<void> {
  await idns(['zone', 'secondary', 'example', '--primary', source, `--ds=${kid}`, '--data', s.dir, ...extra]);
}

/** A resolver anchored at zone `example`, whose "root" servers are the zone's servers. */
async function resolverNode(kid: string, servers: Node[]): Promise<Node> {
  return cluster.node('r', [...servers.flatMap((s) => ['--root', s.url]), '--anchor', `example=${kid}`, '--allow-private']);
}

/**
 * A primary `p` with two secondaries `s1`, `s2` copying from it (refresh 3600: only a notify brings a
 * change quickly) and a resolver `r` whose servers are all three, every one started.
 */
async function threeServersAndResolver(): Promise<{ p: Node; s1: Node; s2: Node; r: Node; kid: string }> {
  const [p, s1, s2] = [await cluster.node('p'), await cluster.node('s1'), await cluster.node('s2')];
  const kid = await createZone(p, [p, s1, s2], { refresh: 3600, retry: 1 });
  await makeSecondary(s1, p.url, kid);
  await makeSecondary(s2, p.url, kid);
  const r = await resolverNode(kid, [p, s1, s2]);
  await Promise.all([p, s1, s2, r].map((n) => cluster.start(n)));
  return { p, s1, s2, r, kid };
}

/** Waits (bounded) until every secondary has the source's serial and digest; returns the source's state. */
/**
 * Waits until every secondary holds the source's serial and digest. The bound is generous on purpose: it
 * is reached only when they stopped converging (with refresh 3600, only a notify brings a change quickly,
 * so a missing notify still fails here), never by a loaded machine being slow.
 */
async function converged(source: Node, secondaries: Node[], timeoutMs = 30_000): Promise<ZoneState> {
  let want: ZoneState | undefined;
  let seen = '';
  await until(
    async () => {
      want = await zoneState(source.url);
      const got = await Promise.all(secondaries.map((s) => zoneState(s.url).catch((err: Error) => err)));
      seen = `${source.name} at ${want.serial}, ${secondaries.map((s, i) => `${s.name}: ${got[i] instanceof Error ? (got[i] as Error).message : (got[i] as ZoneState).serial}`).join(', ')}`;
      return got.every((g) => !(g instanceof Error) && g.serial === want!.serial && g.digest === want!.digest);
    },
    () => `${secondaries.map((s) => s.name).join(', ')} to converge on ${source.name} (${seen})`,
    timeoutMs,
  );
  return want!;
}

async function lookup(r: Node, handle: string) {
  return send(r.url, 'GET', `/v1/lookup/${encodeURIComponent(handle)}`);
}

async function resolveOn(n: Node, handle: string) {
  return send(n.url, 'GET', `/v1/resolve/${encodeURIComponent(handle)}`);
}

/** Size in bytes of a full transfer of `example` from `url` in the format secondaries ask for, read here and thrown away. */
async function fullTransferBytes(url: string): Promise<number> {
  const res = await request(`${url}/v1/zones/example/transfer?format=compact`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  expect(res.statusCode).toBe(200);
  let n = 0;
  for await (const chunk of res.body) n += (chunk as Buffer).length;
  return n;
}

/** Rows a data dir's database holds for zone `example`: its live copy, and rows of copies no zone uses (left by an interrupted transfer). */

function storedCopies(dir: string): { live: number; others: number } {
  const db = new Database(join(dir, 'idns.sqlite'), { fileMustExist: true, readonly: true });
  try {
    const live = (db.prepare(`SELECT content FROM zones WHERE name = 'example'`).get() as { content: string }).content;
    const count = (sql: string) => (db.prepare(sql).get(live) as { n: number }).n;
    return {
      live: count(`SELECT COUNT(*) AS n FROM records WHERE content = ?`),
      others: count(`SELECT COUNT(*) AS n FROM records WHERE content != ?`),
    };
  } finally {
    db.close();
  }
}

/** The first "housekeeping failed" log line of a server, shortened to its error message. */
function housekeepingError(n: Node): string | undefined {
  const line = (n.proc?.output() ?? '').split('\n').find((l) => l.includes('housekeeping failed'));
  return line === undefined ? undefined : `housekeeping failed: ${/"message":"([^"]*)"/.exec(line)?.[1] ?? line.slice(0, 300)}`;
}

/** Writes an `idns serve --config` file in a temp dir; returns its path. */
function writeConfig(config: object): string {
  const file = join(cluster.tempDir('cfg'), 'idns.json');
  writeFileSync(file, JSON.stringify(config));
  return file;
}

async function waitHeld(x: Proxy, nth: number, bytes: number): Promise<void> {
  await until(
    () => x.fullTransfers().length >= nth && x.fullTransfers()[nth - 1]!.outcome === 'open' && x.fullTransfers()[nth - 1]!.bytes === bytes,
    `full transfer #${nth} to be held at ${bytes} bytes`,
  );
}

describe('replicas as real processes', () => {
  it('1 primary + 2 secondaries + 1 resolver: notifies bring registrations to both secondaries, digests are equal, the resolver resolves', async () => {
    // refresh 3600: the secondaries can only learn of a change quickly through the primary's notify.
    const { p, s1, s2, r } = await threeServersAndResolver();
    await converged(p, [s1, s2]);

    const t0 = Date.now();
    await registerMany(p.url, owner, handles('alice', 0, 20), 4);
    const atPrimary = await zoneState(p.url);
    expect(atPrimary.serial).toBeGreaterThanOrEqual(20);
    await converged(p, [s1, s2]);
    timings.notifyConvergence = Date.now() - t0;

    // The operator's view agrees: the same serial and digest in all three data directories.
    const digests = await Promise.all([p, s1, s2].map((n) => idns(['zone', 'digest', 'example', '--data', n.dir, '--json'])));
    for (const d of digests) expect(d).toEqual({ zone: 'example', serial: atPrimary.serial, digest: atPrimary.digest });

    // The secondaries give the primary's signed answers, byte for byte.
    for (const h of ['alice7@example', 'nobody@example']) {
      const want = await resolveOn(p, h);
      for (const s of [s1, s2]) expect((await resolveOn(s, h)).json).toEqual(want.json);
    }

    const found = await lookup(r, 'alice3@example');
    expect(found.status).toBe(200);
    expect(found.json).toMatchObject({ status: 'found', zone: 'example', endpoint: 'https://home.example/alice3@example', keys: [owner.public] });
    const missing = await lookup(r, 'nobody@example');
    expect(missing.status).toBe(404);
    expect(missing.json).toMatchObject({ status: 'not_found', endpoint: null });
  });

  it('kill -9 the primary: the resolver keeps resolving from the secondaries, writes fail clearly; restarted, the secondaries catch up incrementally', async () => {
    const [p, s1, s2] = [await cluster.node('p'), await cluster.node('s1'), await cluster.node('s2')];
    const kid = await createZone(p, [p, s1, s2], { refresh: 3600, retry: 1 });
    // The secondaries copy through logging proxies, so the test sees which transfers they take.
    const [x1, x2] = [await cluster.proxy(p.url), await cluster.proxy(p.url)];
    await makeSecondary(s1, x1.url, kid);
    await makeSecondary(s2, x2.url, kid);
    const r = await resolverNode(kid, [p, s1, s2]);
    await Promise.all([p, s1, s2, r].map((n) => cluster.start(n)));
    await registerMany(p.url, owner, handles('bob', 0, 10), 4);
    await converged(p, [s1, s2]);
    expect((await lookup(r, 'bob0@example')).status).toBe(200);

    await cluster.kill(p);
    const t0 = Date.now();
    // Handles never looked up before, so the resolver must ask a server: only the secondaries are left.
    for (const h of ['bob1@example', 'bob2@example', 'bob3@example']) {
      const res = await lookup(r, h);
      expect(res.status, res.text).toBe(200);
      expect(res.json).toMatchObject({ status: 'found', endpoint: `https://home.example/${h}`, stale: false });
    }
    // A denial needs a live server of the zone too.
    expect((await lookup(r, 'nobody@example')).json).toMatchObject({ status: 'not_found' });
    timings.lookupsWithPrimaryDead = Date.now() - t0;

    // A write sent to a secondary is redirected to the primary; followed, it fails: the primary is down.
    const redirected = await send(s1.url, 'POST', '/v1/handles', { json: { request: registerRequest(owner, 'carol@example') } });
    expect(redirected.status).toBe(307);
    expect(redirected.headers.location).toBe(`${p.url}/v1/handles`);
    const followed = await send(redirected.headers.location!, 'POST', '', { json: { request: registerRequest(owner, 'carol@example') } }).then(
      () => null,
      (err: Error & { code?: string }) => err,
    );
    expect(followed?.code ?? (followed?.cause as { code?: string } | undefined)?.code).toBe('ECONNREFUSED');
    // The CLI follows the redirect and reports the failure in one line, naming the primary.
    const keyFile = writeUserKey(cluster.tempDir('keys'), 'carol.jwk', owner);
    const cli = await runIdns(['handle', 'register', 'carol@example', '--key', keyFile, '--endpoint', 'https://home.example/carol', '--server', s1.url]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr.trim().split('\n')).toHaveLength(1);
    expect(cli.stderr).toContain(p.url);
    expect(cli.stderr).toMatch(/ECONNREFUSED|refused/);

    // Restarted on the same data dir and port, the primary takes writes again and the secondaries catch up with ?since= transfers.
    const marks = [x1.log.length, x2.log.length];
    await cluster.start(p);
    const t1 = Date.now();
    await registerMany(p.url, owner, handles('late', 0, 10), 4);
    await converged(p, [s1, s2]);
    timings.catchUpAfterRestart = Date.now() - t1;
    for (const [i, x] of [x1, x2].entries()) {
      const after = x.log.slice(marks[i]);
      expect(after.filter((e) => /\/transfer\?since=\d+$/.test(e.path) && e.status === 200).length).toBeGreaterThan(0);
      expect(after.filter((e) => isFullTransferPath(e.path))).toEqual([]);
    }
    expect((await lookup(r, 'late5@example')).json).toMatchObject({ status: 'found' });
    expect((await resolveOn(s2, 'carol@example')).status).toBe(404);
  });

  it('kill -9 a secondary in the middle of a full transfer: restarted, it serves its previous complete copy, then completes the transfer', async () => {
    const [p, s] = [await cluster.node('p'), await cluster.node('s')];
    // A short journal, trimmed often: a secondary that was away must take a full transfer.
    p.args = ['--config', writeConfig({ journal: { maxEntries: 20 }, housekeepingIntervalMs: 50 })];
    const kid = await createZone(p, [p, s], { refresh: 1, retry: 1 });
    const t0 = Date.now();
    // Zone sizes chosen so the held part of each full transfer exceeds the secondary's insert batch
    // (DEFAULT_TRANSFER_LIMITS.batchRows), so part of the new copy is on disk when the secondary dies.
    await bulkRegister(p.dir, 'old', 0, 3000);
    timings.bulk3000 = Date.now() - t0;
    await cluster.start(p);
    const x = await cluster.proxy(p.url);
    await makeSecondary(s, x.url, kid);
    await cluster.start(s);
    const copy = await converged(p, [s]);
    expect(x.fullTransfers()).toHaveLength(1);
    // The copy's exact answers: handles it holds, and the signed denials of handles registered later.
    const probes = [...handles('old', 0, 5), ...handles('new', 0, 10)];
    const answers = async () => Promise.all(probes.map(async (h) => (await resolveOn(s, h)).json));
    const copyAnswers = await answers();
    expect(copyAnswers.map((a) => a.status)).toEqual([...Array(5).fill('answer'), ...Array(10).fill('denial')]);
    // Handles plus denials: how many denials random registrations leave depends on their hashes.
    const copyRows = storedCopies(s.dir).live;
    expect(copyRows).toBeGreaterThan(3000);
    await cluster.kill(s);

    // The zone doubles while the secondary is down, and the journal no longer reaches back to its copy.
    const t1 = Date.now();
    await bulkRegister(p.dir, 'new', 0, 3000);
    timings.bulk3000WhileServing = Date.now() - t1;
    await until(
      async () => (await send(p.url, 'GET', `/v1/zones/example/transfer?since=${copy.serial}`)).status === 410,
      'the journal to be trimmed past the copy',
    );
    const total = await fullTransferBytes(p.url);
    const records = storedCopies(p.dir).live; // handles and denials of the doubled zone
    const hold = Math.floor(total * 0.6);
    x.holdFullTransferAfter = hold;

    await cluster.start(s);
    await waitHeld(x, 2, hold);
    // Mid-transfer: the complete old copy, nothing of the new one.
    expect(await zoneState(s.url)).toMatchObject({ serial: copy.serial, digest: copy.digest });
    expect(await answers()).toEqual(copyAnswers);

    // Killed once part of the new copy is on disk (the secondary writes a transfer in batches of rows).
    await until(() => storedCopies(s.dir).others > 0, 'the secondary to write part of the transfer');
    await cluster.kill(s);
    await until(() => x.fullTransfers()[1]!.outcome === 'aborted', 'the proxy to see the transfer cut');
    // The kill left part of the new copy in the database beside the complete old one.
    const rows = storedCopies(s.dir);
    expect(rows.live).toBe(copyRows);
    expect(rows.others).toBeGreaterThan(0);
    expect(rows.others).toBeLessThan(records);

    // Restarted (the next transfer is held too): the previous complete copy, and ready.
    await cluster.start(s);
    expect(await zoneState(s.url)).toMatchObject({ serial: copy.serial, digest: copy.digest });
    expect(await answers()).toEqual(copyAnswers);
    expect((await send(s.url, 'GET', '/readyz')).status).toBe(200);
    await waitHeld(x, 3, hold);
    expect(await zoneState(s.url)).toMatchObject({ serial: copy.serial, digest: copy.digest });
    expect(await answers()).toEqual(copyAnswers);

    const t2 = Date.now();
    x.release();
    await converged(p, [s]);
    timings.fullTransferAfterRestart = Date.now() - t2;
    expect((await resolveOn(s, 'new7@example')).status).toBe(200);
    expect(x.fullTransfers().at(-1)!.outcome).toBe('complete');
  });

  it('a secondary drops the copy a full transfer replaced, in the background (its disk does not grow by a zone per full transfer)', async () => {
    const [p, s] = [await cluster.node('p'), await cluster.node('s')];
    p.args = ['--config', writeConfig({ journal: { maxEntries: 5 }, housekeepingIntervalMs: 50 })];
    s.args = ['--config', writeConfig({ housekeepingIntervalMs: 50 })];
    const kid = await createZone(p, [p, s], { refresh: 1, retry: 1 });
    const x = await cluster.proxy(p.url);
    await makeSecondary(s, x.url, kid);
    await Promise.all([p, s].map((n) => cluster.start(n)));
    await registerMany(p.url, owner, handles('ivy', 0, 20), 4);
    const copy = await converged(p, [s]);
    await cluster.kill(s);
    await registerMany(p.url, owner, handles('ivy', 20, 40), 4);
    await until(
      async () => (await send(p.url, 'GET', `/v1/zones/example/transfer?since=${copy.serial}`)).status === 410,
      'the journal to be trimmed past the copy',
    );
    await cluster.start(s);
    await converged(p, [s]);
    expect(x.fullTransfers().filter((e) => e.outcome === 'complete').length).toBeGreaterThanOrEqual(2);

    await until(
      () => storedCopies(s.dir).others === 0,
      () => `the replaced copy to be dropped (${storedCopies(s.dir).others} rows left; ${housekeepingError(s) ?? 'no housekeeping error logged'})`,
      3000,
    );
    // The secondary holds exactly the primary's records (40 handles and their denials), one copy.
    expect(storedCopies(s.dir).live).toBe(storedCopies(p.dir).live);
    expect(storedCopies(s.dir).live).toBeGreaterThan(40);
  });

  it('kill -9 a secondary in the middle of its first full transfer: restarted, it serves nothing (503), never a partial zone, then completes', async () => {
    const [p, s] = [await cluster.node('p'), await cluster.node('s')];
    const kid = await createZone(p, [p, s], { refresh: 1, retry: 1 });
    // Enough handles for the held 75% of the transfer to exceed the secondary's insert batch.
    await bulkRegister(p.dir, 'u', 0, 4000);
    await cluster.start(p);
    const total = await fullTransferBytes(p.url);
    const x = await cluster.proxy(p.url);
    const hold = Math.floor(total * 0.75);
    x.holdFullTransferAfter = hold;
    await makeSecondary(s, x.url, kid);
    await cluster.start(s);
    await waitHeld(x, 1, hold);

    const expectNothingServed = async () => {
      const zone = await send(s.url, 'GET', '/v1/zones/example');
      expect(zone.status).toBe(503);
      expect(zone.json.error.code).toBe('zone_unavailable');
      for (const h of ['u1@example', 'u1999@example', 'nobody@example']) {
        const res = await resolveOn(s, h);
        expect(res.status, `${h}: ${res.text}`).toBe(503);
        expect(res.json.error.code).toBe('zone_unavailable');
      }
      expect((await send(s.url, 'GET', '/readyz')).status).toBe(503);
    };
    await expectNothingServed();
    await until(() => storedCopies(s.dir).others > 0, 'the secondary to write part of the transfer');
    await expectNothingServed();
    await cluster.kill(s);
    await until(() => x.fullTransfers()[0]!.outcome === 'aborted', 'the proxy to see the transfer cut');
    expect(storedCopies(s.dir)).toMatchObject({ live: 0 });
    expect(storedCopies(s.dir).others).toBeGreaterThan(0);

    await cluster.start(s);
    await expectNothingServed();
    await waitHeld(x, 2, hold);
    await expectNothingServed();
    x.release();
    await converged(p, [s]);
    expect((await resolveOn(s, 'u1999@example')).status).toBe(200);
    expect((await send(s.url, 'GET', '/readyz')).status).toBe(200);
  });

  it('a secondary cut off from its primary past expire stops answering (503, /readyz 503); the primary back, it recovers', async () => {
    const [p, s] = [await cluster.node('p'), await cluster.node('s')];
    const kid = await createZone(p, [p, s], { refresh: 1, retry: 1, expire: 3 });
    await makeSecondary(s, p.url, kid);
    await Promise.all([p, s].map((n) => cluster.start(n)));
    await registerMany(p.url, owner, handles('eve', 0, 3), 3);
    await converged(p, [s]);

    await cluster.kill(p);
    const killedAt = Date.now();
    expect((await resolveOn(s, 'eve1@example')).status).toBe(200);
    await until(async () => (await resolveOn(s, 'eve1@example')).status === 503, 'the copy to expire', 30_000);
    const expiredAfter = Date.now() - killedAt;
    timings.expiredAfterKill = expiredAfter;
    // Its last successful check was at most refresh (1 s) before the kill, so the 3 s expire can't have run out much before 2 s.
    expect(expiredAfter).toBeGreaterThanOrEqual(1500);
    const answer = await resolveOn(s, 'eve1@example');
    expect(answer.json.error.code).toBe('zone_unavailable');
    expect(answer.json.error.message).toContain('expired');
    expect((await resolveOn(s, 'nobody@example')).status).toBe(503);
    const ready = await send(s.url, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.json.problems).toEqual([expect.objectContaining({ zone: 'example', problem: expect.stringContaining('expired') })]);

    await cluster.start(p);
    const t0 = Date.now();
    await until(async () => (await resolveOn(s, 'eve1@example')).status === 200, 'the secondary to recover', 30_000);
    timings.recoveredAfterRestart = Date.now() - t0;
    expect((await send(s.url, 'GET', '/readyz')).status).toBe(200);
    await register(p.url, owner, 'eve9@example');
    await converged(p, [s]);
  });

  it('a secondary chained from an expired secondary expires too, instead of renewing its copy from it', async () => {
    const [p, s1, s2] = [await cluster.node('p'), await cluster.node('s1'), await cluster.node('s2')];
    const kid = await createZone(p, [p, s1, s2], { refresh: 1, retry: 1, expire: 2 });
    await makeSecondary(s1, p.url, kid);
    await makeSecondary(s2, s1.url, kid);
    await Promise.all([p, s1].map((n) => cluster.start(n)));
    await register(p.url, owner, 'fay@example');
    await converged(p, [s1]);
    // Started once s1 has a copy (a secondary that finds its source empty retries only after 5 s).
    await cluster.start(s2);
    await converged(p, [s1, s2]);

    await cluster.kill(p);
    await until(async () => (await resolveOn(s1, 'fay@example')).status === 503, 's1 to expire', 30_000);
    const s1Expired = Date.now();
    // s2's only source has no valid copy any more: within about expire (2 s) + refresh (1 s), s2 must stop
    // answering too. One that keeps renewing from s1 would answer for ever; 20 s tells the two apart with
    // room for a loaded machine's late timers.
    const s2Status = await until(
      async () => {
        const st = (await resolveOn(s2, 'fay@example')).status;
        return st === 503 ? st : Date.now() - s1Expired > 20_000 ? `still ${st}` : false;
      },
      's2 to expire or 20 s to pass',
      30_000,
    );
    expect(
      s2Status,
      's2 kept answering for 20 s after its source s1 expired (it keeps renewing from s1: GET /v1/zones on an expired secondary answers 200)',
    ).toBe(503);
  });

  it('registrations keep arriving during a full transfer: the secondary ends at the primary serial with an equal digest', async () => {
    const [p, s] = [await cluster.node('p'), await cluster.node('s')];
    const kid = await createZone(p, [p, s], { refresh: 1, retry: 1 });
    await bulkRegister(p.dir, 'base', 0, 2000);
    await cluster.start(p);
    const total = await fullTransferBytes(p.url);
    const x = await cluster.proxy(p.url);
    x.bytesPerSecond = Math.ceil(total / 1.5); // the full transfer lasts about 1.5 s once released
    // Held half-way until ten registrations were acknowledged during it: the overlap is made by progress,
    // not hoped for from a time window that a loaded machine can fill with one slow registration.
    const hold = Math.floor(total / 2);
    x.holdFullTransferAfter = hold;
    // The primary's writer thread starts with its first change; started now, the held transfer's wait is short.
    await register(p.url, owner, 'warm@example');
    const before = await zoneState(p.url);
    await makeSecondary(s, x.url, kid);
    await cluster.start(s);
    await waitHeld(x, 1, hold);
    const full = x.fullTransfers()[0]!;

    // Four clients register while the transfer runs, and a few more after it.
    const acked: number[] = [];
    let n = 0;
    const writer = async () => {
      while (full.outcome === 'open' && Date.now() - full.startedAt < 60_000) {
        const res = await register(p.url, owner, `during${n++}@example`);
        expect(res.status).toBe(201);
        acked.push(Date.now());
        if (acked.length >= 10) x.release();
      }
    };
    await Promise.all([writer(), writer(), writer(), writer()]);
    expect(full.outcome).toBe('complete');
    const duringTransfer = acked.filter((t) => t < full.endedAt!).length;
    expect(duringTransfer).toBeGreaterThanOrEqual(10);
    x.bytesPerSecond = null;
    await registerMany(p.url, owner, handles('after', 0, 5), 5);

    const final = await converged(p, [s]);
    expect(final.serial).toBe(before.serial + n + 5);
    expect((await resolveOn(s, `during${n - 1}@example`)).status).toBe(200);
    expect((await resolveOn(s, 'after4@example')).status).toBe(200);
    // One full transfer, then the changes made meanwhile came incrementally.
    expect(x.fullTransfers()).toHaveLength(1);
    expect(x.incrementalTransfers().filter((e) => e.startedAt >= full.endedAt! && e.status === 200).length).toBeGreaterThan(0);
    timings.registrationsDuringFullTransfer = duringTransfer;
  });

  it('a secondary chained from another secondary converges too, notified down the chain (transfer credentials)', async () => {
    const [p, s1, s2] = [await cluster.node('p'), await cluster.node('s1'), await cluster.node('s2')];
    // s2 is not in the zone's servers, so the primary never notifies it: only s1 can. refresh 3600: no polling.
    const kid = await createZone(p, [p, s1], { refresh: 3600, retry: 1 });
    await makeSecondary(s1, p.url, kid);
    const { credential } = await idns(['zone', 'allow-transfer', 'example', '--name', 's2', '--notify', s2.url, '--data', s1.dir, '--json']);
    await makeSecondary(s2, s1.url, kid, ['--credential', credential]);
    await Promise.all([p, s1].map((n) => cluster.start(n)));
    await register(p.url, owner, 'gus@example');
    await converged(p, [s1]);
    // Started once s1 has a copy (a secondary that finds its source empty retries only after 5 s).
    await cluster.start(s2);
    await converged(p, [s1, s2]);
    expect((await send(s1.url, 'GET', '/v1/zones/example/transfer')).status).toBe(401);

    const t0 = Date.now();
    await registerMany(p.url, owner, handles('gus', 0, 10), 4);
    const want = await converged(p, [s1, s2]);
    timings.chainConvergence = Date.now() - t0;
    for (const n of [p, s1, s2])
      expect(await idns(['zone', 'digest', 'example', '--data', n.dir, '--json'])).toEqual({ zone: 'example', serial: want.serial, digest: want.digest });
    expect((await resolveOn(s2, 'gus9@example')).status).toBe(200);
  });

  it("a version signed by the CLI on a running primary's data directory reaches its secondary by notify, as the server's own do", async () => {
    const [p, s] = [await cluster.node('p'), await cluster.node('s')];
    // refresh 3600: only a notify brings the change within the wait below.
    const kid = await createZone(p, [p, s], { refresh: 3600, retry: 3600 });
    await makeSecondary(s, p.url, kid);
    await Promise.all([p, s].map((n) => cluster.start(n)));
    await register(p.url, owner, 'ivy@example');
    await converged(p, [s]);
    const before = (await zoneState(p.url)).serial;
    // Another process signs a version (the zone record states the new recovery window).
    await idns(['zone', 'recovery-window', 'example', '3600', '--data', p.dir]);
    await until(async () => (await zoneState(s.url)).serial === before + 1, 'the secondary to take the new version', 10_000, 100);
  });

  it('promotion with the old primary restarted: it is fenced and refuses writes, a secondary re-pointed in place follows the new primary, a resolver sees every write made after the promotion', async () => {
    const { p, s1, s2, r } = await threeServersAndResolver();
    await registerMany(p.url, owner, handles('old', 0, 3), 3);
    await converged(p, [s1, s2]);

    // The primary is lost; s1 is promoted with its key (from backup); s2 is re-pointed in place, running.
    await cluster.kill(p);
    await cluster.kill(s1);
    await idns(['zone', 'promote', 'example', '--key-dir', join(p.dir, 'keys', 'example'), '--primary-url', s1.url, '--policy', 'open', '--data', s1.dir]);
    await cluster.start(s1);
    await idns(['zone', 'secondary', 'example', '--primary', s1.url, '--data', s2.dir]);
    await converged(s1, [s2]);

    // The old primary comes back: it learns of the promotion, takes no writes and answers nothing stale.
    await cluster.start(p);
    await until(async () => (await idns(['zone', 'show', 'example', '--data', p.dir, '--json'])).fencedBy !== null, 'the old primary to fence itself');
    const refused = await send(p.url, 'POST', '/v1/handles', { json: { request: registerRequest(owner, 'late@example') } });
    expect(refused.status).toBe(307);
    expect((await resolveOn(p, 'old0@example')).status).toBe(503);

    // Writes after the promotion, on the new primary: the secondary follows, and the resolver (whose
    // servers include the old primary) finds every one of them.
    const fresh = handles('new', 0, 4);
    await registerMany(s1.url, owner, fresh, 2);
    await converged(s1, [s2]);
    for (const h of [...fresh, 'old0@example']) {
      const res = await lookup(r, h);
      expect(res.status, `${h}: ${res.text}`).toBe(200);
    }
  });

  it('promotion: with the primary gone for good, a promoted secondary accepts writes and serves the old handles; a re-pointed secondary follows it', async () => {
    const [p, s1, s2] = [await cluster.node('p'), await cluster.node('s1'), await cluster.node('s2')];
    const kid = await createZone(p, [p, s1, s2], { refresh: 3600, retry: 1 });
    await makeSecondary(s1, p.url, kid);
    await makeSecondary(s2, p.url, kid);
    await Promise.all([p, s1, s2].map((n) => cluster.start(n)));
    await registerMany(p.url, owner, handles('old', 0, 10), 4);
    const last = await converged(p, [s1, s2]);

    await cluster.kill(p);
    await cluster.kill(s1);
    const promoted = await idns([
      'zone',
      'promote',
      'example',
      '--key-dir',
      join(p.dir, 'keys', 'example'),
      '--primary-url',
      s1.url,
      '--policy',
      'open',
      '--data',
      s1.dir,
      '--json',
    ]);
    expect(promoted).toMatchObject({ role: 'primary', keyThumbprints: [kid], serial: last.serial + 1, primary: s1.url });
    await cluster.start(s1);
    expect(await zoneState(s1.url)).toMatchObject({ role: 'primary', serial: last.serial + 1 });

    await registerMany(s1.url, owner, handles('new', 0, 5), 5);
    expect(await zoneState(s1.url)).toMatchObject({ serial: last.serial + 6 });
    for (const h of ['old0@example', 'old9@example', 'new4@example']) expect((await resolveOn(s1, h)).json).toMatchObject({ status: 'answer' });
    // Writes sent to the promoted server's peer now go to it, not to the dead primary... once that peer is re-pointed
    // (docs/operations.md: recreate its data directory and run `zone secondary --primary NEW` again).
    await cluster.kill(s2);
    s2.dir = cluster.tempDir('s2-repointed');
    await makeSecondary(s2, s1.url, kid);
    await cluster.start(s2);
    await converged(s1, [s2]);
    await register(s1.url, owner, 'newest@example');
    await converged(s1, [s2]);
    const redirected = await send(s2.url, 'POST', '/v1/handles', { json: { request: registerRequest(owner, 'x@example') } });
    expect(redirected.status).toBe(307);
    expect(redirected.headers.location).toBe(`${s1.url}/v1/handles`);
  });

  it('zone secondary takes --ds THUMBPRINT as documented when the thumbprint starts with "-" (1 zone key in 64)', async () => {
    const dir = cluster.tempDir('ds');
    const kid = `-${'A'.repeat(42)}`;
    const res = await runIdns(['zone', 'secondary', 'example', '--primary', 'http://127.0.0.1:1', '--ds', kid, '--data', dir, '--json']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ zone: 'example', role: 'secondary' });
  });

  it('zone create takes the server list as docs/operations.md writes it (--server-url A B C)', async () => {
    const dir = cluster.tempDir('docs');
    const res = await runIdns(['zone', 'create', 'example', '--server-url', 'http://127.0.0.1:1', 'http://127.0.0.1:2', '--data', dir, '--json']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout).servers).toEqual(['http://127.0.0.1:1', 'http://127.0.0.1:2']);
  });
});
