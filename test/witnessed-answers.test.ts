import { describe, expect, it } from 'vitest';
import type { PublicJwk } from '../src/records/keys.js';
import { historyKey } from '../src/records/history-key.js';
import { DEFAULT_WITNESS_FRESHNESS_SECONDS, keptBinding, verifyAnswerLog, type WitnessPolicy } from '../src/transparency/witnessed.js';
import { newUserKey } from './support/keys.js';
import type { TestServer } from './support/server.js';
import { until } from './support/cluster.js';
import { forkOf, registerHandle, serversOfEachTest, witnessedZone } from './support/witnessed-zone.js';
import { join } from 'node:path';
import { importHandles } from '../src/authority/import.js';
import { ZoneLogs } from '../src/authority/zone-logs.js';
import { serialOf } from '../src/records/serial.js';
import { KeyRing } from '../src/authority/keyring.js';
import { ZoneService } from '../src/authority/zones.js';
import { systemClock } from '../src/clock.js';
import { Store } from '../src/store/store.js';
import { inclusionProof } from '../src/transparency/merkle.js';
import { checkpointSize } from '../src/transparency/zone-log.js';
import { startTestServer, tempDir } from './support/server.js';
import { operatorAct } from '../src/authority/operator-acts.js';
import { boundBody, resolveBound } from '../src/http/routes/resolve.js';

/**
 * Answers bound to the zone's log (`GET /v1/resolve/{handle}?log=1`, docs/protocol.md §13.5) and their
 * check against a witness policy (src/transparency/witnessed.ts): the zone record is the checkpoint's last
 * leaf, the handle's history entry is in the tree, and enough of the required witnesses cosigned it
 * recently. What a fork of the zone (the same key, its own history) serves fails the policy.
 */

const owner = newUserKey();
const { server, cleanups } = serversOfEachTest();
const register = (s: TestServer, handle: string) => registerHandle(s, handle, owner);

interface Answer {
  status: string;
  zone: string;
  record: string;
  zoneRecord: string;
  history?: [number, string][];
  noCut?: string[];
  log?: { checkpoint: string; witnesses: Record<string, PublicJwk>; map?: string[][] };
}

async function resolve(s: TestServer, handle: string): Promise<Answer> {
  return (await (await fetch(`${s.url}/v1/resolve/${handle}?log=1`)).json()) as Answer;
}

const keysOf = (zoneRecord: string): PublicJwk[] => JSON.parse(Buffer.from(zoneRecord.split('.')[1]!, 'base64url').toString()).keys;
const now = () => Math.floor(Date.now() / 1000);

/** The history entry a handle answer's record names: the last of its evidence. */
function entryOf(answer: Answer): { key: string; jws: string } {
  const [seq, jws] = answer.history!.at(-1)!;
  return { key: historyKey(JSON.parse(Buffer.from(answer.record.split('.')[1]!, 'base64url').toString()).handle, seq), jws };
}

/** The records of an answer a binding's map proves current: its record, then its noCut denials. */
const recordsOf = (answer: Answer): string[] => [answer.record, ...(answer.noCut ?? [])];

const check = (answer: Answer, policy: WitnessPolicy | null, at = now()) =>
  verifyAnswerLog(
    answer.zone,
    answer.zoneRecord,
    keysOf(answer.zoneRecord),
    answer.log,
    policy,
    at,
    recordsOf(answer),
    answer.status === 'answer' ? entryOf(answer) : undefined,
  );

/** A primary whose two secondaries witness it; the policy that requires both. */
async function witnessedPolicy() {
  const zone = await witnessedZone(server);
  const policy: WitnessPolicy = { witnesses: zone.witnesses, quorum: 2, freshnessSeconds: DEFAULT_WITNESS_FRESHNESS_SECONDS };
  return { ...zone, policy };
}

/** Waits until `s` answers for `handle` with a binding both witnesses cosigned. */
async function cosignedAnswer(s: TestServer, handle: string, policy: WitnessPolicy): Promise<Answer> {
  return until(async () => {
    const answer = await resolve(s, handle);
    try {
      check(answer, policy);
      return answer;
    } catch {
      return undefined;
    }
  }, `a cosigned answer for ${handle} from ${s.url}`);
}

describe('answers bound to the log', () => {
  it('carry the checkpoint, its witnesses, and proofs of the zone record and the history entry, which a quorum policy accepts, on the primary and its secondaries', async () => {
    const { primary, secondaries, policy } = await witnessedPolicy();
    await register(primary, 'ann@example');
    await register(primary, 'bob@example');
    const answer = await cosignedAnswer(primary, 'ann@example', policy);
    const bound = check(answer, policy);
    expect(bound.freshUntil).toBeGreaterThan(now());
    expect(Object.keys(answer.log!.witnesses).sort()).toEqual(policy.witnesses.map((t) => `idns-witness/${t}`).sort());
    // The secondaries serve the same binding once they took the cosigned checkpoint (and the witnesses' keys).
    for (const s of secondaries) expect(check(await cosignedAnswer(s, 'bob@example', policy), policy).size).toBe(bound.size);
    // A denial is bound by its zone record.
    const denial = await resolve(primary, 'nobody@example');
    expect(denial.status).toBe('denial');
    check(denial, policy);
    // Without ?log the answer is as before; a bad value is refused.
    expect(await (await fetch(`${primary.url}/v1/resolve/ann@example`)).json()).not.toHaveProperty('log');
    const bad = await fetch(`${primary.url}/v1/resolve/ann@example?log=yes`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('invalid_request');
  });

  it('fail the policy without enough fresh cosignatures, and fail whatever the policy when the proofs do not hold', async () => {
    const { primary, policy } = await witnessedPolicy();
    await register(primary, 'ann@example');
    await register(primary, 'bob@example');
    const answer = await cosignedAnswer(primary, 'ann@example', policy);
    expect(() => check(answer, { ...policy, quorum: 3 })).toThrow(/cosigned by 2 of the witnesses required.*3 needed/);
    expect(() => check(answer, { ...policy, witnesses: [policy.witnesses[0]!], quorum: 2 })).toThrow(/cosigned by 1 of/);
    // Two hours later the same answer is stale: its cosignatures are older than the bound.
    expect(() => check(answer, policy, now() + 2 * 3600)).toThrow(/within the last 3600 s/);
    // Another handle's entry, or an older zone record, is not what this checkpoint binds.
    const bob = await resolve(primary, 'bob@example');
    expect(() =>
      verifyAnswerLog('example', answer.zoneRecord, keysOf(answer.zoneRecord), answer.log, policy, now(), recordsOf(answer), entryOf(bob)),
    ).toThrow();
    const older = answer.zoneRecord;
    await register(primary, 'cai@example');
    const newer = await cosignedAnswer(primary, 'cai@example', policy);
    expect(() => verifyAnswerLog('example', older, keysOf(older), newer.log, policy, now(), recordsOf(newer), entryOf(newer))).toThrow();
    // A binding stripped of its witnesses' keys counts no cosignature.
    expect(() => check({ ...answer, log: { ...answer.log!, witnesses: {} } }, policy)).toThrow(/cosigned by 0/);
    // More witness keys than a note has signature lines: refused unread. What a proof keeps of a binding
    // (what a forwarding resolver is passed) holds only keys under their own names.
    const padded = { ...answer.log!.witnesses, ...Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`junk${i}`, { kty: 'OKP' }])) };
    expect(() => check({ ...answer, log: { ...answer.log!, witnesses: padded as unknown as Record<string, PublicJwk> } }, policy)).toThrow(/at most 100 keys/);
    // More map proofs than an answer has records at most (a record and 127 noCut denials), or a proof
    // longer than a key has bits: refused before any hash is computed.
    const proof = answer.log!.map![0]!;
    expect(() => check({ ...answer, log: { ...answer.log!, map: Array.from({ length: 129 }, () => proof) } }, policy)).toThrow(/at most 128 proofs/);
    expect(() => check({ ...answer, log: { ...answer.log!, map: [Array.from({ length: 257 }, () => proof[0]!)] } }, policy)).toThrow(/at most 256 hashes/);
    const kept = keptBinding({ ...answer.log!, witnesses: { ...answer.log!.witnesses, junk: { kty: 'OKP' } } }, true);
    expect(Object.keys(kept.log.witnesses).sort()).toEqual(Object.keys(answer.log!.witnesses).sort());
    expect(kept.entry).toMatchObject({ leaf: expect.any(Number) });
    expect(keptBinding(answer.log, false).entry).toBeUndefined();
  });

  it("a fork's answers (a copy of the primary's data, the same key, its own history) pass without a policy and fail it: the witnesses follow the real primary", async () => {
    const { primary, policy } = await witnessedPolicy();
    await register(primary, 'ann@example');
    await cosignedAnswer(primary, 'ann@example', policy);
    const fork = await forkOf(primary, server, cleanups);
    await register(fork, 'mallory@example');
    const forged = await resolve(fork, 'mallory@example');
    expect(forged.status).toBe('answer');
    check(forged, null);
    expect(() => check(forged, policy)).toThrow(/cosigned by 0 of the witnesses required/);
    // The real primary's next answers stay witnessed.
    await register(primary, 'bob@example');
    check(await cosignedAnswer(primary, 'bob@example', policy), policy);
  });
});

describe("answers bound to the log, from the zone's tree in memory", () => {
  it('are the proofs of the stored tree while it fills and after, from the answer file and the database; a new copy of the zone gets a tree of its own', async () => {
    const dir = tempDir();
    cleanups.push(dir.remove);
    await (await startTestServer({ dataDir: dir.dir, zones: { example: {} } })).close();
    // More leaves than one slice of the fill (1,024): the tree is filled over several turns.
    const store = Store.open(dir.dir);
    const zones = new ZoneService(store, new KeyRing(join(dir.dir, 'keys')), systemClock);
    const lines = Array.from({ length: 6000 }, (_, i) =>
      JSON.stringify({ handle: `user${i}@example`, endpoint: `https://h.example/${i}`, keys: [owner.public] }),
    );
    await importHandles(store, zones, systemClock, 'example', lines.join('\n'));
    store.close();
    const s = await server({ dataDir: dir.dir, config: { answerFiles: { enabled: true, minHandles: 1000, rebuildAfter: 10_000 } }, background: true });
    await until(() => s.ctx.answerFiles!.status().find((f) => f.zone === 'example' && f.entries === 6000), 'the answer file');

    // Each answer's proofs are those computed from the stored subtrees, whichever path answered.
    const expectStoredProofs = (answer: Answer) => {
      check(answer, null);
      const row = s.ctx.zones.require('example');
      const size = checkpointSize(row.checkpoint);
      const stored = s.ctx.store.logs.subtrees(row.content);
      const b64 = (p: Buffer[]) => p.map((h) => h.toString('base64'));
      const log = answer.log as unknown as { zoneRecord: string[]; entry?: { leaf: number; proof: string[] } };
      expect(log.zoneRecord).toEqual(b64(inclusionProof(stored, size - 1, size)));
      if (answer.status === 'answer') {
        const { key } = entryOf(answer);
        expect(log.entry!.leaf).toBe(s.ctx.store.records.leafOf(row.content, key));
        expect(log.entry!.proof).toEqual(b64(inclusionProof(stored, log.entry!.leaf, size)));
      }
    };
    expect(s.ctx.zoneLogs.held()).toEqual([]);
    expectStoredProofs(await resolve(s, 'user1234@example'));
    const size = checkpointSize(s.ctx.zones.require('example').checkpoint);
    // The first zone record, the 6,000 entries and the import's zone record.
    expect(size).toBe(6002);
    expect(s.ctx.zoneLogs.held()).toMatchObject([{ zone: 'example', filling: true }]);
    await until(() => s.ctx.zoneLogs.held().find((t) => !t.filling), 'the tree filled');
    expect(s.ctx.zoneLogs.held()).toMatchObject([{ zone: 'example', leaves: size, filling: false }]);
    expect(s.ctx.zoneLogs.held()[0]!.bytes).toBeGreaterThanOrEqual(64 * size - 64);
    for (const handle of ['user0@example', 'user1234@example', 'user5999@example', 'nobody@example']) {
      const answer = await resolve(s, handle);
      expectStoredProofs(answer);
      // The application's route (another query) gives the same bytes.
      const viaApp = await (await fetch(`${s.url}/v1/resolve/${handle}?zone=example&log=1`)).json();
      expect(viaApp).toEqual(answer);
    }
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toContain(`idns_zone_log_tree_bytes{zone="example"} ${s.ctx.zoneLogs.held()[0]!.bytes}`);
    expect(metrics).toContain(`idns_zone_log_tree_leaves{zone="example"} ${size}`);

    // A change: answered from the database (not the file), its tree caught up at once.
    await register(s, 'new@example');
    const grown = checkpointSize(s.ctx.zones.require('example').checkpoint);
    expect(grown).toBeGreaterThan(size);
    expectStoredProofs(await resolve(s, 'new@example'));
    expect(s.ctx.zoneLogs.held()).toMatchObject([{ zone: 'example', leaves: grown, filling: false }]);
    expectStoredProofs(await resolve(s, 'user42@example'));

    // Another copy of the zone: proofs come from a tree of its own, which replaces the old one.
    s.ctx.zones.deleteZone('example');
    s.ctx.zones.create('example', { servers: [s.url] });
    await register(s, 'again@example');
    expectStoredProofs(await resolve(s, 'again@example'));
    expect(s.ctx.zoneLogs.held()).toMatchObject([{ zone: 'example', leaves: checkpointSize(s.ctx.zones.require('example').checkpoint), filling: false }]);
  });
});

describe('referrals and denials bound to the log', () => {
  it("prove their delegation, denial and noCut denials current in the zone's map; a delegation replaced since has no proof", async () => {
    const s = await server({ zones: { example: {} } });
    await register(s, 'ann@example');
    const ds = ['A'.repeat(43)];
    s.ctx.zones.delegate('example', 'child.example', { servers: ['https://child.example/'], ds });
    const referral = await resolve(s, 'x@child.example');
    expect(referral.status).toBe('referral');
    expect(referral.log!.map).toHaveLength(1);
    check(referral, null);
    // Hosts two levels below the zone: the denial and its noCut denials (once the zone's names span
    // several denials, some host's names fall in other gaps than the handle), each with its own proof.
    for (let i = 0; i < 70; i++) await register(s, `h${i}@example`);
    let withNoCut: Answer | undefined;
    for (let i = 0; i < 40 && withNoCut === undefined; i++) {
      const denial = await resolve(s, `x@d${i}.s${i}.example`);
      expect(denial.status).toBe('denial');
      expect(denial.log!.map).toHaveLength(1 + (denial.noCut ?? []).length);
      check(denial, null);
      if ((denial.noCut ?? []).length > 0) withNoCut = denial;
    }
    expect(withNoCut).toBeDefined();
    // A noCut denial's proof swapped for the record's: refused.
    expect(() => check({ ...withNoCut!, log: { ...withNoCut!.log!, map: [withNoCut!.log!.map![0]!, withNoCut!.log!.map![0]!] } }, null)).toThrow();
    // The delegation re-signed with another ds: the older one, shown with the new checkpoint and its
    // proof (or the new proof), is not the zone's current record.
    s.ctx.zones.delegate('example', 'child.example', { servers: ['https://child.example/'], ds: [`${'B'.repeat(42)}A`] });
    const current = await resolve(s, 'x@child.example');
    check(current, null);
    for (const map of [referral.log!.map!, current.log!.map!]) {
      expect(() => check({ ...current, record: referral.record, log: { ...current.log!, map } }, null)).toThrow(/not the zone’s current record/);
    }
  });
});

describe('answers bound to the log right after another connection commits', () => {
  it('are of the version committed and prove their records current in its map (the read path drops its cached rows and reads the answer again)', async () => {
    const s = await server({ zones: { example: {} } });
    await register(s, 'ann@example');
    await register(s, 'bob@example');
    const before = s.ctx.zones.cachedZone('example')!.version;
    // Committed through another connection, as the writer thread and the command line commit: the read
    // path's cached rows show it only once they are checked again (at most every 50 ms) or dropped.
    const other = Store.open(s.dataDir);
    try {
      operatorAct(other, new ZoneService(other, new KeyRing(join(s.dataDir, 'keys')), systemClock), 'bob@example', {
        action: 'takedown',
        reason: 'a test of a version committed elsewhere',
      });
    } finally {
      other.close();
    }
    // A new turn of the event loop: the reads see the committed version, the cached row may not yet.
    await new Promise((r) => setImmediate(r));
    const { answer, log } = resolveBound(s.ctx, 'ann@example', undefined, true);
    expect(answer.serial).toBe(serialOf(before + 1));
    const served = JSON.parse(boundBody(Buffer.from(JSON.stringify(answer)), log!).toString()) as Answer;
    check(served, null);
    // Over HTTP, on the fast path and the application's route alike.
    for (const url of [`${s.url}/v1/resolve/ann@example?log=1`, `${s.url}/v1/resolve/ann@example?log=1&zone=example`]) {
      const res = await fetch(url);
      expect(res.status).toBe(200);
      check((await res.json()) as Answer, null);
    }
  });
});

describe("the zones' trees held in memory stay within their bound", () => {
  it('lets go of the tree asked least lately, never holds one larger than the bound, and binds alike from memory and from the stored subtrees', async () => {
    const s = await server({ zones: { one: {}, two: {} } });
    for (let i = 0; i < 40; i++) {
      await register(s, `a${i}@one`);
      await register(s, `b${i}@two`);
    }
    const bindOf = (logs: ZoneLogs, zone: string, handle: string) => {
      const row = s.ctx.zones.require(zone);
      return logs
        .bindLeaf(zone, serialOf(row.version), s.ctx.store.records.newestLeaf(row.content, handle), [{ type: 'handle', key: handle }])
        .member.toString();
    };
    const size = (zone: string) => checkpointSize(s.ctx.zones.require(zone).checkpoint);
    expect(size('one')).toBe(size('two'));
    // Room for one zone's tree, not two.
    const logs = new ZoneLogs(s.ctx.store, s.ctx.zones, Math.floor(1.5 * size('one')));
    const fromOne = bindOf(logs, 'one', 'a7@one');
    expect(logs.held()).toMatchObject([{ zone: 'one', leaves: size('one') }]);
    bindOf(logs, 'two', 'b7@two');
    expect(logs.held()).toMatchObject([{ zone: 'two', leaves: size('two') }]);
    // A bound smaller than one zone's tree: nothing held, the same binding from the stored subtrees.
    const small = new ZoneLogs(s.ctx.store, s.ctx.zones, size('one') - 1);
    expect(bindOf(small, 'one', 'a7@one')).toBe(fromOne);
    expect(small.held()).toEqual([]);
    // And the same as the server's own, which holds both.
    expect(bindOf(s.ctx.zoneLogs, 'one', 'a7@one')).toBe(fromOne);
    logs.close();
    small.close();
  });
});
