import { describe, expect, it } from 'vitest';
import type { PublicJwk } from '../src/records/keys.js';
import { cosignatureTime, cosignatureVerifier } from '../src/transparency/checkpoint.js';
import { parseNote } from '../src/transparency/note.js';
import { formatAddCheckpoint } from '../src/transparency/witness.js';
import { openCheckpoint } from '../src/transparency/zone-log.js';
import { newUserKey } from './support/keys.js';
import type { TestServer } from './support/server.js';
import { until } from './support/cluster.js';
import { forkOf, registerHandle, serversOfEachTest, witnessedZone } from './support/witnessed-zone.js';
import { runIdns } from './support/process.js';
import { sendJson, startFakeServer } from './support/fake-server.js';

/**
 * Witnesses (docs/protocol.md §14): every secondary cosigns the checkpoints of the zones it copies when
 * each extends the last it cosigned; the primary offers them, checks and keeps the cosignatures and
 * serves them with the checkpoint, as the secondaries do after it; a witness shown a fork keeps the
 * evidence and cosigns nothing more of that zone.
 */

const owner = newUserKey();
const { server, cleanups } = serversOfEachTest();
const register = (s: TestServer, handle: string) => registerHandle(s, handle, owner);

async function zoneKeys(s: TestServer): Promise<PublicJwk[]> {
  const body = (await (await fetch(`${s.url}/v1/zones/example`)).json()) as { record: string };
  return JSON.parse(Buffer.from(body.record.split('.')[1]!, 'base64url').toString()).keys;
}

async function witnessOf(s: TestServer) {
  return (await (await fetch(`${s.url}/v1/witness`)).json()) as {
    name: string;
    thumbprint: string;
    publicKey: PublicJwk;
    follows: { zone: string; servers: string[]; serial: number }[];
    forks: { origin: string; held: string; offered: string; why: string }[];
  };
}

const checkpointText = async (s: TestServer) => (await fetch(`${s.url}/v1/zones/example/checkpoint`)).text();

/** The witnesses (of `witnesses`) whose cosignature of the checkpoint verifies, with the times they state. */
async function cosignedBy(note: string, witnesses: TestServer[]): Promise<Map<string, number>> {
  const verifiers = await Promise.all(witnesses.map(async (w) => witnessOf(w).then((k) => cosignatureVerifier(k.name, k.publicKey))));
  const parsed = parseNote(note);
  const out = new Map<string, number>();
  for (const v of verifiers) {
    const line = parsed.signatures.find((s) => s.name === v.name && s.keyId === v.keyId);
    if (line && v.verify(parsed.text, line.signature)) out.set(v.name, cosignatureTime(line.signature)!);
  }
  return out;
}

describe('secondaries witness the zones they copy', () => {
  it('cosign each new checkpoint; the primary keeps the cosignatures and serves them, and so do the secondaries after it', async () => {
    const { primary, secondaries } = await witnessedZone(server);
    await register(primary, 'ann@example');
    await register(primary, 'bob@example');
    const keys = await zoneKeys(primary);
    const note = await until(async () => {
      const text = await checkpointText(primary);
      return (await cosignedBy(text, secondaries)).size === 2 && openCheckpoint('example', text, keys).size > 1 ? text : undefined;
    }, 'both witnesses to cosign the latest checkpoint');
    // Still the zone's checkpoint: its own signature verifies, and the tree is the one the zone signs.
    expect(openCheckpoint('example', note, keys).origin).toBe('example/idns-log');
    const serial = ((await (await fetch(`${primary.url}/v1/zones/example`)).json()) as { serial: number }).serial;
    // The secondaries take the cosigned checkpoint of the serial they hold (notified once it is cosigned).
    for (const s of secondaries) {
      await until(async () => (await checkpointText(s)) === (await checkpointText(primary)), 'the secondary to serve the cosigned checkpoint');
      expect(((await (await fetch(`${s.url}/v1/zones/example`)).json()) as { serial: number }).serial).toBe(serial);
    }
  });

  it('cosign an unchanged checkpoint again, so that a quiet zone keeps fresh cosignatures', async () => {
    const { primary, secondaries } = await witnessedZone(server, { witnessing: { recosignMs: 500 } });
    await register(primary, 'ann@example');
    const first = await until(async () => {
      const times = await cosignedBy(await checkpointText(primary), secondaries);
      return times.size === 2 ? Math.min(...times.values()) : undefined;
    }, 'two cosignatures');
    // Cosignature times are in seconds: a later round states a later second.
    const later = await until(async () => {
      const times = await cosignedBy(await checkpointText(primary), secondaries);
      return times.size === 2 && Math.min(...times.values()) > first ? times : undefined;
    }, 'fresher cosignatures of the same checkpoint');
    expect(later.size).toBe(2);
  });
});

describe('the primary asks its witnesses within bounds', () => {
  it("gives a witness whose answer passes 64 KiB, or that never answers, nothing, after at most 3 s a question, and keeps the other witnesses' cosignatures", async () => {
    const { primary, secondaries } = await witnessedZone(server);
    // One publishes a key document past 64 KiB; the other publishes a key but never answers add-checkpoint.
    const bloated = await startFakeServer((_req, res) => sendJson(res, 200, { publicKey: newUserKey().public, pad: 'x'.repeat(70 * 1024) }));
    const silent = await startFakeServer((req, res) => {
      if (req.url === '/v1/witness') sendJson(res, 200, { publicKey: newUserKey().public });
    });
    cleanups.push(
      () => void bloated.close(),
      () => void silent.close(),
    );
    primary.ctx.zones.setWitnesses('example', [bloated.url, silent.url]);
    const started = Date.now();
    await register(primary, 'ann@example');
    await until(async () => (await cosignedBy(await checkpointText(primary), secondaries)).size === 2, 'the secondaries to cosign');
    await primary.ctx.cosignatures.collect('example');
    const took = Date.now() - started;
    // The silent witness was given up on its timeout, not waited for without end.
    expect(took).toBeGreaterThanOrEqual(3000);
    expect(took).toBeLessThan(15_000);
    expect(silent.requests.some((r) => r.path === '/v1/witness/add-checkpoint')).toBe(true);
    const lines = parseNote(await checkpointText(primary)).signatures;
    // The zone's own signature and the two secondaries' cosignatures, nothing from the other two.
    expect(lines).toHaveLength(3);
  });
});

describe('a witness shown a fork', () => {
  it('keeps both checkpoints as evidence, says so (endpoint, metric), and cosigns nothing more of the zone, even its genuine next checkpoint', async () => {
    const primary = await server({ zones: { example: {} } });
    await register(primary, 'ann@example');
    const witness = await server();
    witness.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: primary.ctx.zones.info('example').keyThumbprints });
    await witness.ctx.replicator.checkNow('example');
    const add = async (oldSize: number, proof: string[], note: string) =>
      fetch(`${witness.url}/v1/witness/add-checkpoint`, {
        method: 'POST',
        body: formatAddCheckpoint({ oldSize, proof: proof.map((h) => Buffer.from(h, 'base64')), note }),
      });
    const sizeOf = (note: string) => Number(note.split('\n')[1]);
    // The genuine checkpoint, from nothing.
    const genuine = await checkpointText(primary);
    const ok = await add(0, [], genuine);
    expect(ok.status).toBe(200);
    expect(await cosignedBy(genuine + (await ok.text()), [witness])).toHaveProperty('size', 1);

    // A fork: a copy of the primary's data (the same key) that goes its own way.
    const fork = await forkOf(primary, server, cleanups);
    await register(fork, 'mallory@example');
    await register(primary, 'bob@example');
    // The witness follows the real primary: its checkpoint with bob, proven to extend the one held.
    const real = await checkpointText(primary);
    const realProof = (await (await fetch(`${primary.url}/v1/zones/example/log/consistency?from=${sizeOf(genuine)}&to=${sizeOf(real)}`)).json()) as {
      proof: string[];
    };
    expect((await add(sizeOf(genuine), realProof.proof, real)).status).toBe(200);
    // The fork's checkpoint, with mallory instead: a tree of the same size with another root. Refused, and kept.
    const forked = await checkpointText(fork);
    expect(sizeOf(forked)).toBe(sizeOf(real));
    const refused = await add(sizeOf(real), [], forked);
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('log_forked');
    const seen = await witnessOf(witness);
    expect(seen.forks).toHaveLength(1);
    expect(seen.forks[0]).toMatchObject({ origin: 'example/idns-log', held: real, offered: forked });
    expect(await (await fetch(`${witness.url}/metrics`)).text()).toMatch(/^idns_witness_forks 1$/m);
    expect(await (await fetch(`${witness.url}/`)).text()).toMatch(/<span class="badge bad">fork<\/span> as its witness/);
    // The primary's next genuine checkpoint, with a proof that does join: still refused.
    await register(primary, 'cai@example');
    const next = await checkpointText(primary);
    const genuineProof = (await (await fetch(`${primary.url}/v1/zones/example/log/consistency?from=${sizeOf(real)}&to=${sizeOf(next)}`)).json()) as {
      proof: string[];
    };
    const after = await add(sizeOf(real), genuineProof.proof, next);
    expect(after.status).toBe(409);
    expect(((await after.json()) as { error: { message: string } }).error.message).toMatch(/forked/);
    // Forks of many other zones (one each: a forked zone is refused from then on) evict nothing: the
    // refusal rests on the evidence, which is kept for good.
    const store = witness.ctx.store;
    for (let i = 0; i < 150; i++) {
      store.write(() => store.witness.addFork({ origin: `z${i}.example/idns-log`, held: 'h', offered: 'o', proof: [], why: 'another zone' }, Date.now() + i));
    }
    store.write(() => store.witness.addFork({ origin: 'example/idns-log', held: 'h', offered: 'o', proof: [], why: 'a second' }, Date.now()));
    const kept = (await witnessOf(witness)).forks;
    expect(kept).toHaveLength(151);
    expect(kept.filter((f) => f.origin === 'example/idns-log')).toMatchObject([{ held: real, offered: forked }]);
    expect((await add(sizeOf(real), genuineProof.proof, next)).status).toBe(409);
  });

  it('answers add-checkpoint as C2SP tlog-witness does: the size it holds on a conflict, and typed errors', async () => {
    const primary = await server({ zones: { example: {} } });
    await register(primary, 'ann@example');
    const witness = await server();
    witness.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: primary.ctx.zones.info('example').keyThumbprints });
    await witness.ctx.replicator.checkNow('example');
    const note = await checkpointText(primary);
    const post = (body: string) => fetch(`${witness.url}/v1/witness/add-checkpoint`, { method: 'POST', body });
    expect((await post(formatAddCheckpoint({ oldSize: 0, proof: [], note }))).status).toBe(200);
    await register(primary, 'bob@example');
    const next = await checkpointText(primary);
    // From a size the witness does not hold: 409 with the size it holds, as text/x.tlog.size.
    const conflict = await post(formatAddCheckpoint({ oldSize: 0, proof: [], note: next }));
    expect(conflict.status).toBe(409);
    expect(conflict.headers.get('content-type')).toBe('text/x.tlog.size');
    expect(await conflict.text()).toBe(`${note.split('\n')[1]}\n`);
    const codes = async (body: string) => ((await (await post(body)).json()) as { error: { code: string } }).error.code;
    expect(await codes('old 0\n')).toBe('invalid_request');
    expect(await codes(formatAddCheckpoint({ oldSize: 0, proof: [], note: note.replace('example/idns-log', 'other/idns-log') }))).toBe('unknown_log');
    expect(
      await codes(formatAddCheckpoint({ oldSize: 1, proof: [], note: next.replace(/\n[A-Za-z0-9+/]{43}=\n/, `\n${Buffer.alloc(32).toString('base64')}\n`) })),
    ).toBe('checkpoint_unsigned');
    // A zone this server does not copy is no log it witnesses.
    const other = await server({ zones: { other: {} } });
    expect(await codes(formatAddCheckpoint({ oldSize: 0, proof: [], note: await (await fetch(`${other.url}/v1/zones/other/checkpoint`)).text() }))).toBe(
      'unknown_log',
    );
  });
});

describe('a witness of zones it does not copy (idns witness follow)', () => {
  it("is offered a zone's checkpoints once its primary lists it, cosigns them, and reads the zone record again once its TTL has passed", async () => {
    const primary = await server({ background: true, zones: { example: {} } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    const witness = await server({ background: true });
    // Followed from the command line, on the running witness's data directory.
    const followed = await runIdns(['witness', 'follow', 'example', '--ds', kid, '--server', primary.url, '--data', witness.dataDir, '--json']);
    expect(followed.stderr).toBe('');
    expect(JSON.parse(followed.stdout)).toMatchObject({ zone: 'example', servers: [primary.url] });
    const listed = await runIdns(['witness', 'list', '--data', witness.dataDir, '--json']);
    expect(JSON.parse(listed.stdout)).toEqual([{ zone: 'example', servers: [primary.url], serial: JSON.parse(followed.stdout).serial }]);
    primary.ctx.zones.setWitnesses('example', [witness.url]);
    await register(primary, 'ann@example');
    await until(async () => (await cosignedBy(await checkpointText(primary), [witness])).size === 1, 'the standalone witness to cosign');

    // Its TTL passed (as if an hour went by): the next checkpoint offered makes it read the zone record again.
    const before = witness.ctx.store.witness.followed('example')!;
    witness.ctx.store.write(() => witness.ctx.store.witness.follow({ ...before, checkedAt: 0 }));
    await register(primary, 'bob@example');
    const serial = ((await (await fetch(`${primary.url}/v1/zones/example`)).json()) as { serial: number }).serial;
    await until(async () => witness.ctx.store.witness.followed('example')!.serial === serial, 'the witness to read the newer zone record');
    expect((await witnessOf(witness)).follows).toEqual([{ zone: 'example', servers: [primary.url], serial }]);

    const unfollowed = await runIdns(['witness', 'unfollow', 'example', '--data', witness.dataDir]);
    expect(unfollowed.code).toBe(0);
    expect((await runIdns(['witness', 'list', '--data', witness.dataDir, '--json'])).stdout.trim()).toBe('[]');
  });

  it('refuses to follow a zone whose servers give no zone record signed by a --ds key, or one it copies, saying why', async () => {
    const primary = await server({ zones: { example: {} } });
    const witness = await server();
    const wrong = await runIdns(['witness', 'follow', 'example', '--ds', 'A'.repeat(43), '--server', primary.url, '--data', witness.dataDir]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/no server of example gave a zone record signed by a trusted key/);
    const copy = await server();
    copy.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: primary.ctx.zones.info('example').keyThumbprints });
    const copied = await runIdns([
      'witness',
      'follow',
      'example',
      '--ds',
      primary.ctx.zones.info('example').keyThumbprints[0]!,
      '--server',
      primary.url,
      '--data',
      copy.dataDir,
    ]);
    expect(copied.code).not.toBe(0);
    expect(copied.stderr).toMatch(/copied here/);
    expect((await runIdns(['witness', 'unfollow', 'nowhere', '--data', witness.dataDir])).stderr).toMatch(/not followed here/);
  });
});
