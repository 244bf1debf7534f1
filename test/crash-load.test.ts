import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { checkAnswer } from '../src/client/answers.js';
import { signChangeRequest } from '../src/client/requests.js';
import { newUserKey } from './support/keys.js';
import { freePort } from './support/cluster.js';
import { startNoise } from './support/noise.js';
import { runIdns, spawnServer, type ServerProcess } from './support/process.js';

// Load and crash accounting: concurrent registrations against a primary with two secondaries, the
// primary killed with SIGKILL at pseudo-random moments several times, restarted each time; then every
// acknowledged registration must be on the primary and, after convergence, on both secondaries (equal
// digests), and nothing unacknowledged may be half-applied. Malformed traffic runs throughout.
const ROUNDS = 4;
const owner = newUserKey();
const dirs: string[] = [];
const procs: ServerProcess[] = [];

afterAll(async () => {
  for (const p of procs) await p.stop('SIGKILL').catch(() => undefined);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function until(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const res = await request(url, { headersTimeout: 5000, bodyTimeout: 5000 });
  return { status: res.statusCode, body: await res.body.json() };
}

async function zoneState(url: string): Promise<{ serial: number; digest: string }> {
  return (await getJson(`${url}/v1/zones/example`)).body as { serial: number; digest: string };
}

/** A deterministic sequence of delays, so a failure can be replayed with the same kill moments. */
function* delays(seed: number): Generator<number> {
  let x = seed;
  for (;;) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    yield 150 + (x % 600);
  }
}

describe('crash accounting under load', () => {
  it(`loses no acknowledged registration across ${ROUNDS} kill -9 of the primary, and the secondaries converge`, async () => {
    const [pp, p1, p2] = [await freePort(), await freePort(), await freePort()];
    const urls = [pp, p1, p2].map((p) => `http://127.0.0.1:${p}`);
    const [primaryDir, s1Dir, s2Dir] = [0, 1, 2].map(() => {
      const d = mkdtempSync(join(tmpdir(), 'idns-crash-'));
      dirs.push(d);
      return d;
    }) as [string, string, string];
    const created = await runIdns(['zone', 'create', 'example', '--server-url', ...urls, '--refresh', '1', '--retry', '1', '--data', primaryDir, '--json']);
    expect(created.code).toBe(0);
    const kid = (JSON.parse(created.stdout) as { keyThumbprints: string[] }).keyThumbprints[0]!;
    for (const dir of [s1Dir, s2Dir]) expect((await runIdns(['zone', 'secondary', 'example', '--primary', urls[0]!, '--ds', kid, '--data', dir])).code).toBe(0);

    const start = async (dir: string, port: number) => {
      const p = await spawnServer(['--listen', `127.0.0.1:${port}`, '--data', dir, '--no-bootstrap']);
      procs.push(p);
      return p;
    };
    await start(s1Dir, p1);
    await start(s2Dir, p2);
    let primary = await start(primaryDir, pp);
    const noise = startNoise(() => urls, { concurrency: 2, pauseMs: 10 });

    const acknowledged = new Map<string, string>(); // handle → op
    const sent = new Set<string>();
    let next = 0;
    const kills = delays(20261124);
    for (let round = 0; round < ROUNDS; round++) {
      let stop = false;
      const driver = async () => {
        while (!stop) {
          const handle = `user${next++}@example`;
          sent.add(handle);
          const jws = signChangeRequest({ action: 'register', handle, endpoint: `https://home.example/${handle}`, keys: [owner.public] }, owner.private);
          try {
            const res = await request(`${urls[0]}/v1/handles`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ request: jws }),
              headersTimeout: 5000,
              bodyTimeout: 5000,
            });
            const body = (await res.body.json()) as { op?: string };
            if (res.statusCode === 201) acknowledged.set(handle, body.op!);
            else if (res.statusCode !== 503) throw new Error(`unexpected ${res.statusCode} for ${handle}: ${JSON.stringify(body)}`);
          } catch (err) {
            // The primary was killed under us: this request may or may not have been applied.
            if ((err as Error).message.startsWith('unexpected')) throw err;
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      };
      const drivers = Array.from({ length: 24 }, driver);
      await new Promise((r) => setTimeout(r, kills.next().value));
      await primary.stop('SIGKILL');
      stop = true;
      await Promise.all(drivers);
      primary = await start(primaryDir, pp);
      // Every acknowledged registration survived this crash.
      for (const [handle, op] of acknowledged) {
        const { status, body } = await getJson(`${urls[0]}/v1/resolve/${handle}`);
        expect(status, `${handle} lost in round ${round}`).toBe(200);
        expect((body as { record: string }).record).toBeTruthy();
        const checked = checkAnswer(body, handle, new Map([['example', [kid]]]));
        expect(checked.status === 'answer' && checked.record.op).toBe(op);
      }
    }
    expect(acknowledged.size).toBeGreaterThan(ROUNDS * 10);

    // Nothing unacknowledged is half-applied: every name sent is either fully there or verifiably absent.
    let unacknowledgedPresent = 0;
    for (const handle of sent) {
      if (acknowledged.has(handle)) continue;
      const { body } = await getJson(`${urls[0]}/v1/resolve/${handle}`);
      const checked = checkAnswer(body, handle, new Map([['example', [kid]]]));
      if (checked.status === 'answer') unacknowledgedPresent += 1;
    }
    const zoneShown = await runIdns(['zone', 'show', 'example', '--data', primaryDir, '--json']);
    expect((JSON.parse(zoneShown.stdout) as { handles: number }).handles).toBe(acknowledged.size + unacknowledgedPresent);

    // The secondaries converge on the primary's serial with equal digests, holding every acknowledged handle.
    const target = await zoneState(urls[0]!);
    for (const url of urls.slice(1)) {
      await until(async () => (await zoneState(url)).serial === target.serial, `${url} to reach serial ${target.serial}`);
      expect((await zoneState(url)).digest).toBe(target.digest);
      for (const handle of acknowledged.keys()) expect((await getJson(`${url}/v1/resolve/${handle}`)).status).toBe(200);
    }
    const seen = await noise.stop();
    expect(seen.serverErrors).toEqual([]);
    expect(seen.sent).toBeGreaterThan(20);
    console.log(
      `crash accounting: ${ROUNDS} kill -9 rounds, ${acknowledged.size} acknowledged registrations, 0 lost, ` +
        `${unacknowledgedPresent} unacknowledged applied whole, ${sent.size - acknowledged.size - unacknowledgedPresent} absent; ` +
        `${seen.sent} malformed requests meanwhile, no 5xx`,
    );
  }, 120_000);
});
