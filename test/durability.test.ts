import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'undici';
import { describe, expect, it } from 'vitest';
import { checkAnswer, queryAuthoritative } from '../src/client/answers.js';
import { signChangeRequest } from '../src/client/requests.js';
import { newUserKey } from './support/keys.js';
import { integrityCheck, until } from './support/cluster.js';
import { startNoise } from './support/noise.js';
import { runIdns, spawnServer, type ServerProcess } from './support/process.js';
import { cleanupEachTest } from './support/cleanup.js';
import { tempDir } from './support/server.js';

// Durability of acknowledged writes across kill -9 and SIGTERM, with real `idns serve` child processes over
// real SQLite files. Every process and directory a test makes is released in afterEach, pass or fail.

const cleanups = cleanupEachTest();

function newDir(): string {
  const tmp = tempDir('idns-durability-');
  cleanups.push(tmp.remove);
  return tmp.dir;
}

async function serve(args: string[], options: { cwd?: string } = {}): Promise<ServerProcess> {
  const server = await spawnServer(args, options);
  cleanups.push(() => server.stop('SIGKILL'));
  return server;
}

/** Waits (bounded) until the server's output matches `pattern`, and returns the match. */
async function waitForOutput(server: ServerProcess, pattern: RegExp, timeoutMs = 5_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = pattern.exec(server.output());
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`no ${pattern} in the output within ${timeoutMs} ms:\n${server.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function newPool(url: string, connections: number): Pool {
  const pool = new Pool(url, { connections, keepAliveTimeout: 1_000 });
  cleanups.push(() => pool.destroy());
  return pool;
}

/** Creates zone example.com in `dir` with the real CLI, as an operator would. */
async function createZone(dir: string, zone = 'example.com'): Promise<void> {
  const made = await runIdns(['zone', 'create', zone, '--server-url', 'http://127.0.0.1:1', '--data', dir]);
  expect(made.code, made.stderr).toBe(0);
}

interface Registration {
  handle: string;
  jws: string;
}

function registrations(count: number, host: string, prefix: string): Registration[] {
  return Array.from({ length: count }, (_, i) => {
    const key = newUserKey();
    const handle = `${prefix}${i}@${host}`;
    const jws = signChangeRequest({ action: 'register', handle, endpoint: `https://social.example/users/${prefix}${i}`, keys: [key.public] }, key.private);
    return { handle, jws };
  });
}

interface Acked {
  serial: number;
  op: string;
}

/**
 * Sends the registrations with `concurrency` requests in flight at a time; `onAck` runs after each
 * acknowledged (201) registration with the running count and the handle. Network failures (the server died) are recorded,
 * never thrown. Resolves when every request has settled.
 */
async function fire(
  pool: Pool,
  regs: Registration[],
  concurrency: number,
  onAck: (count: number, handle: string) => void,
): Promise<{ acked: Map<string, Acked>; failed: number; refused: { handle: string; status: number; body: unknown }[] }> {
  const acked = new Map<string, Acked>();
  const refused: { handle: string; status: number; body: unknown }[] = [];
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < regs.length) {
      const reg = regs[next++]!;
      let status: number;
      let text: string;
      try {
        const res = await pool.request({
          path: '/v1/handles',
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ request: reg.jws }),
          headersTimeout: 10_000,
          bodyTimeout: 10_000,
        });
        status = res.statusCode;
        text = await res.body.text();
      } catch {
        failed += 1;
        continue;
      }
      if (status === 201) {
        const body = JSON.parse(text) as { serial: number; op: string; handle: string };
        expect(body.handle).toBe(reg.handle);
        acked.set(reg.handle, { serial: body.serial, op: body.op });
        onAck(acked.size, reg.handle);
      } else {
        refused.push({ handle: reg.handle, status, body: text });
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { acked, failed, refused };
}

async function getJson(pool: Pool, path: string): Promise<{ status: number; body: unknown }> {
  const res = await pool.request({ path, method: 'GET', headersTimeout: 10_000, bodyTimeout: 10_000 });
  return { status: res.statusCode, body: JSON.parse(await res.body.text()) as unknown };
}

/**
 * After a restart: every acknowledged handle resolves with the acknowledged state and a verified record;
 * every other attempted handle either resolves (committed, reply lost) or has a verified denial; the zone's
 * handle count and serial agree with that; an unregistered name has a verified denial; a new registration
 * takes a serial above everything acknowledged before the crash.
 */
async function checkAfterRestart(url: string, dir: string, regs: Registration[], acked: Map<string, Acked>): Promise<void> {
  const pool = newPool(url, 16);
  const zone = (await getJson(pool, '/v1/zones/example.com')) as { status: number; body: { serial: number } };
  expect(zone.status).toBe(200);
  const zoneSerial = zone.body.serial;
  const maxAcked = Math.max(...[...acked.values()].map((a) => a.serial));
  expect(zoneSerial).toBeGreaterThanOrEqual(maxAcked);

  let present = 0;
  const lost: string[] = [];
  await Promise.all(
    regs.map(async ({ handle }) => {
      const res = await getJson(pool, `/v1/resolve/${encodeURIComponent(handle)}`);
      const ack = acked.get(handle);
      if (ack && res.status !== 200) {
        lost.push(handle);
        return;
      }
      expect([200, 404]).toContain(res.status);
      const answer = checkAnswer(res.body, handle, new Map());
      expect(answer.zone).toBe('example.com');
      // Every answer comes with the zone record current at its serial, never an older one.
      expect(answer.serial).toBe(zoneSerial);
      if (answer.status === 'answer') {
        present += 1;
        expect(answer.record.serial).toBeLessThanOrEqual(answer.serial);
        if (ack) {
          expect(answer.record.op).toBe(ack.op);
          expect(answer.record.serial).toBeGreaterThanOrEqual(ack.serial);
        }
        // The signed change that made the record is in the handle's log (the journal committed with it).
        const log = (await getJson(pool, `/v1/handles/${encodeURIComponent(handle)}/log`)) as {
          status: number;
          body: { operations: { op: string; action: string }[] };
        };
        expect(log.status).toBe(200);
        expect(log.body.operations.map((o) => [o.action, o.op])).toEqual([['register', answer.record.op]]);
      }
    }),
  );
  expect(lost, 'acknowledged registrations lost').toEqual([]);
  expect(present).toBeGreaterThanOrEqual(acked.size);

  // The zone counts exactly the handles that resolve: nothing half-applied.
  const shown = await runIdns(['zone', 'show', 'example.com', '--data', dir, '--json']);
  expect(shown.code, shown.stderr).toBe(0);
  const info = JSON.parse(shown.stdout) as { serial: number; handles: number };
  expect(info.handles).toBe(present);
  expect(info.serial).toBe(zoneSerial);

  // The denial chain is intact: names never registered get verified denials from the restarted server.
  for (const name of ['nobody@example.com', 'zzzz@example.com', 'a@example.com', 'reg-x@example.com']) {
    const denial = await queryAuthoritative(url, name);
    expect(denial.status).toBe('denial');
    expect(denial.serial).toBe(zoneSerial);
  }

  // The zone keeps going: a new registration is accepted at a serial beyond every acknowledged one.
  const [fresh] = registrations(1, 'example.com', 'after-restart-');
  const res = await pool.request({
    path: '/v1/handles',
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ request: fresh!.jws }),
  });
  const body = JSON.parse(await res.body.text()) as { serial: number };
  expect(res.statusCode).toBe(201);
  expect(body.serial).toBeGreaterThan(zoneSerial);
  expect((await queryAuthoritative(url, fresh!.handle)).status).toBe('answer');
}

// Each test is a few seconds on an idle machine; the bound is for hangs on a very busy one (every wait
// inside is for progress: a count of acknowledgements, a line of output, a process exit).
describe('durability of acknowledged writes', { timeout: 300_000 }, () => {
  it('keeps every acknowledged registration across kill -9 in the middle of a burst, with garbage from a second client throughout', async () => {
    const dir = newDir();
    await createZone(dir);
    const server = await serve(['--listen', '127.0.0.1:0', '--data', dir, '--no-bootstrap']);
    const regs = registrations(200, 'example.com', 'reg-');
    const pool = newPool(server.url, 48);

    // A second client sends garbage to the same server before, during and after the burst and the kill,
    // and tries to update and delete the handles just acknowledged with a stranger's key.
    let target = server.url;
    const victims: string[] = [];
    const noise = startNoise(() => [target], { concurrency: 2, raw: true, zone: 'example.com', victims: () => victims.slice(-20) });
    cleanups.push(() => noise.stop());
    // Progress, not time: the garbage is flowing before the first registration is sent.
    await until(
      () => noise.done(target) >= 10,
      () => `10 garbage exchanges with ${target} (have ${noise.done(target)})`,
      60_000,
      10,
    );

    let killedAt = -1;
    const outcome = await fire(pool, regs, 48, (count, handle) => {
      victims.push(handle);
      if (count === 50 && killedAt < 0) {
        killedAt = noise.done(target);
        server.child.kill('SIGKILL');
      }
    });
    await server.stop('SIGKILL');
    expect(server.child.signalCode).toBe('SIGKILL');
    expect(outcome.refused, 'no registration may be refused').toEqual([]);
    // The kill really happened mid-burst: some were acknowledged, some were cut off.
    expect(outcome.acked.size).toBeGreaterThanOrEqual(50);
    expect(outcome.acked.size).toBeLessThan(regs.length);
    expect(outcome.failed).toBe(regs.length - outcome.acked.size);
    expect(integrityCheck(dir), 'the database after kill -9').toBe('ok');

    const restarted = await serve(['--listen', '127.0.0.1:0', '--data', dir, '--no-bootstrap']);
    target = restarted.url;
    const garbageBefore = noise.done(target);
    await checkAfterRestart(restarted.url, dir, regs, outcome.acked);
    // The restarted server got garbage while it was being checked, too.
    await until(
      () => noise.done(target) - garbageBefore >= 10,
      () => `10 garbage exchanges with the restarted ${target} (have ${noise.done(target) - garbageBefore})`,
      60_000,
      10,
    );
    const seen = await noise.stop();
    expect(seen.problems, `garbage answered with anything but an error:\n${seen.problems.join('\n')}`).toEqual([]);
    expect(seen.serverErrors, seen.serverErrors.join('\n')).toEqual([]);
    // None of the registrations the garbage forged exists: checkAfterRestart showed the zone holds exactly
    // the handles of `regs` that resolve; a sample of the forged names is also denied by name.
    expect(seen.forgedHandles.length).toBeGreaterThan(0);
    for (const handle of seen.forgedHandles.slice(0, 50)) expect((await queryAuthoritative(restarted.url, handle)).status, handle).toBe('denial');
    expect(await restarted.stop('SIGTERM')).toBe(0);
    expect(integrityCheck(dir), 'the database after a clean stop').toBe('ok');
    expect(killedAt, 'garbage exchanges before the kill').toBeGreaterThanOrEqual(10);
  });

  it('exits 0 on SIGTERM with registrations in flight and keeps every acknowledged one', async () => {
    const dir = newDir();
    await createZone(dir);
    const server = await serve(['--listen', '127.0.0.1:0', '--data', dir, '--no-bootstrap']);
    const regs = registrations(150, 'example.com', 'term-');
    const pool = newPool(server.url, 32);

    let stopping: Promise<number | null> | null = null;
    const outcome = await fire(pool, regs, 32, (count) => {
      if (count === 30 && stopping === null) stopping = server.stop('SIGTERM');
    });
    // The clients go away (connections that were busy at SIGTERM would otherwise idle until keep-alive ends).
    await pool.close();
    expect(stopping).not.toBeNull();
    expect(await stopping).toBe(0);
    expect(server.child.signalCode).toBeNull();
    expect(outcome.refused).toEqual([]);
    expect(outcome.acked.size).toBeGreaterThanOrEqual(30);

    const restarted = await serve(['--listen', '127.0.0.1:0', '--data', dir, '--no-bootstrap']);
    await checkAfterRestart(restarted.url, dir, regs, outcome.acked);
    expect(await restarted.stop('SIGTERM')).toBe(0);
  });

  it('zero-config serve creates ./data and zone localhost, and reuses its key after a restart', async () => {
    const cwd = newDir();
    const first = await serve(['--listen', '127.0.0.1:0'], { cwd });
    const m = await waitForOutput(first, /zone localhost: primary, serial \d+, open registration, key (\S+)/);
    await waitForOutput(first, /resolve alice@localhost/);
    const out = first.output();
    const kid = m![1]!;
    expect(kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // It tells a newcomer what to do next, with the URL it actually listens on.
    expect(out).toContain('Next');
    expect(out).toContain('keygen --out alice.jwk');
    expect(out).toContain(`handle register alice@localhost --key alice.jwk --endpoint https://social.example/users/alice --server ${first.url}`);
    expect(out).toContain(`resolve alice@localhost --server ${first.url}`);

    // ./data holds the database and the zone key, which nobody else may read.
    expect(existsSync(join(cwd, 'data', 'idns.sqlite'))).toBe(true);
    const keyDir = join(cwd, 'data', 'keys', 'localhost');
    expect(readdirSync(keyDir)).toEqual([`${kid}.jwk`]);
    expect(statSync(join(keyDir, `${kid}.jwk`)).mode & 0o777).toBe(0o600);

    // Open registration: anyone registers with their own key, no invite.
    const alice = newUserKey();
    const pool = newPool(first.url, 2);
    const jws = signChangeRequest(
      { action: 'register', handle: 'alice@localhost', endpoint: 'https://social.example/users/alice', keys: [alice.public] },
      alice.private,
    );
    const res = await pool.request({
      path: '/v1/handles',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ request: jws }),
    });
    const text = await res.body.text();
    expect(res.statusCode, text).toBe(201);
    await pool.close();
    expect(await first.stop('SIGTERM')).toBe(0);

    const second = await serve(['--listen', '127.0.0.1:0'], { cwd });
    const again = await waitForOutput(second, /zone localhost: primary, serial (\d+), open registration, key (\S+)/);
    expect(again![2]).toBe(kid);
    expect(Number(again![1])).toBeGreaterThanOrEqual(2);
    expect(readdirSync(keyDir)).toEqual([`${kid}.jwk`]);
    const answer = await queryAuthoritative(second.url, 'alice@localhost', new Map([['localhost', [kid]]]));
    expect(answer.status).toBe('answer');
    expect(answer.anchored).toBe(true);
    expect(answer.status === 'answer' && answer.record.endpoint).toBe('https://social.example/users/alice');
    expect((await queryAuthoritative(second.url, 'bob@localhost', new Map([['localhost', [kid]]]))).status).toBe('denial');
    expect(await second.stop('SIGTERM')).toBe(0);
  });
});
