import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { createResolver, type Resolver, type VerifiedResult } from '../src/resolver/resolver.js';
import type { ResolverOptions } from '../src/resolver/options.js';
import type { ResolverConfig } from '../src/config.js';
import { newUserKey } from './support/keys.js';
import { runIdns } from './support/process.js';
import type { TestServer } from './support/server.js';
import { until } from './support/cluster.js';
import { forkOf, registerHandle, serversOfEachTest, witnessedZone } from './support/witnessed-zone.js';
import { startFakeServer, type FakeServer } from './support/fake-server.js';
import { signChangeRequest } from '../src/client/requests.js';
import { requestId } from '../src/records/change-request.js';

/**
 * Resolvers that require witnesses (`witnesses` option, `idns lookup --witness`, docs/protocol.md §13.5):
 * the fork, served to one resolver while the witnesses follow the real primary, and replays of
 * older answers, refused by a resolver that saw newer checkpoints and by any past the freshness bound.
 */

const owner = newUserKey();

/** An authoritative answer bound to the log, as served. */
interface Bound {
  status: string;
  record: string;
  history?: unknown;
  log: { checkpoint: string; entry?: { leaf: number; proof: string[] }; map?: string[][] };
}
const { server, cleanups } = serversOfEachTest();
const register = (s: TestServer, handle: string) => registerHandle(s, handle, owner);
const fakes: FakeServer[] = [];
const resolvers: Resolver[] = [];

afterEach(async () => {
  for (const r of resolvers.splice(0)) await r.close();
  for (const f of fakes.splice(0)) await f.close();
});

function resolver(options: ResolverOptions): Resolver {
  const r = createResolver({ allowPrivate: true, ...options });
  resolvers.push(r);
  return r;
}

/** How many lines of a checkpoint note are cosignatures (every line but the zone key's). */
const cosignatures = (note: string) =>
  note
    .slice(note.lastIndexOf('\n\n') + 2)
    .trim()
    .split('\n').length - 1;

/** Waits until every server's checkpoint of the zone carries both witnesses' cosignatures. */
async function allCosigned(servers: TestServer[]): Promise<void> {
  for (const s of servers) {
    await until(
      async () => cosignatures(await (await fetch(`${s.url}/v1/zones/example/checkpoint`)).text()) === 2,
      `${s.url} to serve the cosigned checkpoint`,
    );
  }
}

/** An idns server with the resolver role for zone `example`, requiring `witnesses` (or none). */
const upstreamOf = (primary: TestServer, kid: string, witnesses?: ResolverConfig['witnesses']) =>
  server({
    config: {
      resolver: {
        rootServers: [primary.url],
        anchors: { example: [kid] },
        forwarders: [],
        discovery: null,
        webfinger: false,
        allowPrivate: true,
        cache: {},
        limits: {},
        ...(witnesses ? { witnesses } : {}),
      },
    },
  });

describe('a resolver requiring witnesses', () => {
  it('refuses what only a fork holds (a copy of the primary with the same key and its own history) and resolves the honest view through the zone’s other servers', async () => {
    const { primary, secondaries, kid, witnesses } = await witnessedZone(server);
    await register(primary, 'ann@example');
    await allCosigned([primary, ...secondaries]);
    const fork = await forkOf(primary, server, cleanups);
    await register(fork, 'mallory@example');
    const anchors = { example: [kid] };

    // Without witnesses, the fork's own history is believed: mallory resolves.
    const plain = resolver({ trustAnchors: anchors, rootServers: [fork.url] });
    expect(await plain.lookup('mallory@example')).toMatchObject({ status: 'found', witnessed: false });

    // Requiring both witnesses, nothing the fork says is taken: its checkpoint was never cosigned.
    const policy = { thumbprints: witnesses, quorum: 2 };
    const onlyFork = resolver({ trustAnchors: anchors, rootServers: [fork.url], witnesses: policy });
    await expect(onlyFork.lookup('mallory@example')).rejects.toThrow(/cosigned by 0 of the witnesses required/);
    // With the real primary among the servers, the fork's answers are refused and the honest ones taken.
    const both = resolver({ trustAnchors: anchors, rootServers: [fork.url, primary.url], witnesses: policy });
    expect(await both.lookup('mallory@example')).toMatchObject({ status: 'not_found', witnessed: true });
    expect(await both.lookup('ann@example')).toMatchObject({ status: 'found', witnessed: true, endpoint: 'https://home.example/ann@example' });

    // The command line, a process of its own, the same way.
    const args = (handle: string, root: string) => [
      'lookup',
      handle,
      '--root',
      root,
      '--anchor',
      `example=${kid}`,
      '--witness',
      witnesses[0]!,
      '--witness',
      witnesses[1]!,
      '--allow-private',
      '--json',
    ];
    const refused = await runIdns(args('mallory@example', fork.url));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/cosigned by 0 of the witnesses required/);
    const honest = await runIdns(args('ann@example', primary.url));
    expect(honest.stderr).toBe('');
    expect(JSON.parse(honest.stdout)).toMatchObject({ status: 'found', witnessed: true });
  });

  it('keeps a result no longer than its checkpoints stay fresh: its TTL within the freshness bound, then it asks again', async () => {
    const { primary, secondaries, kid, witnesses } = await witnessedZone(server);
    await register(primary, 'ann@example');
    await allCosigned([primary, ...secondaries]);
    const clock = new ManualClock(Date.now());
    const r = resolver({
      trustAnchors: { example: [kid] },
      rootServers: [primary.url],
      witnesses: { thumbprints: witnesses, quorum: 2, freshnessSeconds: 120 },
      clock,
    });
    const found = (await r.lookup('ann@example')) as VerifiedResult;
    expect(found).toMatchObject({ status: 'found', witnessed: true });
    // The record itself may be kept far longer: the bound is what shortens it.
    const recordTtl = (JSON.parse(Buffer.from(found.proof.record.split('.')[1]!, 'base64url').toString()) as { ttl: number }).ttl;
    expect(recordTtl).toBeGreaterThan(120);
    expect(found.ttl).toBeGreaterThan(0);
    expect(found.ttl).toBeLessThanOrEqual(120);
    // Within it, a cache hit; past it, the resolver asks the zone again rather than serve it as witnessed:
    // here the cosignatures are as old as the bound by then, so all it has is the old result, stale.
    const asked = r.upstreamRequests;
    expect(await r.lookup('ann@example')).toMatchObject({ witnessed: true, stale: false });
    expect(r.upstreamRequests).toBe(asked);
    clock.advance(121_000);
    expect(await r.lookup('ann@example')).toMatchObject({ status: 'found', witnessed: false, stale: true });
    expect(r.upstreamRequests).toBeGreaterThan(asked);
  });

  it('refuses a replayed older answer: after a newer checkpoint was seen, and past the freshness bound for any resolver', async () => {
    const { primary, secondaries, kid, witnesses } = await witnessedZone(server);
    await register(primary, 'ann@example');
    await allCosigned([primary, ...secondaries]);
    // A denial of bob, recorded as an attacker would, before bob registers.
    const recorded = await (await fetch(`${primary.url}/v1/resolve/bob@example?zone=example&log=1`)).text();
    expect(JSON.parse(recorded)).toMatchObject({ status: 'denial' });
    await register(primary, 'bob@example');
    await allCosigned([primary]);
    // In front of the primary: passes everything through until it replays the recorded denial.
    let replay = false;
    const proxy = await startFakeServer(async (req, res) => {
      if (replay && req.url!.startsWith('/v1/resolve/')) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(recorded);
        return;
      }
      const upstream = await fetch(`${primary.url}${req.url}`);
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
      res.end(await upstream.text());
    });
    fakes.push(proxy);
    const policy = { thumbprints: witnesses, quorum: 2 };
    const anchors = { example: [kid] };

    // A resolver that saw the newer checkpoint (bob registered) refuses the replayed denial: it keeps
    // serving what it verified, marked stale (and so not witnessed), rather than take the older version.
    const r = resolver({ trustAnchors: anchors, rootServers: [proxy.url], witnesses: policy });
    expect(await r.lookup('bob@example')).toMatchObject({ status: 'found', witnessed: true });
    replay = true;
    expect(await r.lookup('bob@example', { forceRefresh: true })).toMatchObject({ status: 'found', stale: true, witnessed: false });
    // A resolver that never saw the zone takes it while its cosignatures are fresh (the freshness bound is the limit)…
    const fresh = resolver({ trustAnchors: anchors, rootServers: [proxy.url], witnesses: policy });
    expect(await fresh.lookup('bob@example')).toMatchObject({ status: 'not_found', witnessed: true });
    // …and two hours on, any resolver requiring witnesses refuses it: its cosignatures are too old.
    const later = new ManualClock(Date.now() + 2 * 3600 * 1000);
    const stale = resolver({ trustAnchors: anchors, rootServers: [proxy.url], witnesses: policy, clock: later });
    await expect(stale.lookup('bob@example')).rejects.toThrow(/within the last 3600 s/);
  });
});

describe('a resolver requiring witnesses takes only current records', () => {
  it('refuses an older record shown with the current checkpoint (a key its owner rotated away, a denial from before a registration): the map of the zone’s records proves what is current', async () => {
    const { primary, secondaries, kid, witnesses } = await witnessedZone(server);
    const rotated = newUserKey();
    const reg = signChangeRequest({ action: 'register', handle: 'ann@example', endpoint: 'https://home.example/ann', keys: [owner.public] }, owner.private);
    await primary.ctx.changes.submit(reg);
    await allCosigned([primary, ...secondaries]);
    // Recorded as an attacker would: ann's answer with the key she is about to rotate away, bob's denial.
    const read = async (handle: string) => (await (await fetch(`${primary.url}/v1/resolve/${handle}?zone=example&log=1`)).json()) as Bound;
    const oldAnn = await read('ann@example');
    const oldBob = await read('bob@example');
    expect([oldAnn.status, oldBob.status]).toEqual(['answer', 'denial']);
    await primary.ctx.changes.submit(
      signChangeRequest(
        { action: 'update', handle: 'ann@example', endpoint: 'https://home.example/ann', keys: [rotated.public], prev: requestId(reg) },
        owner.private,
        undefined,
        [rotated.private],
      ),
    );
    await register(primary, 'bob@example');
    await allCosigned([primary, ...secondaries]);

    // In front of the primary: the current answer, its checkpoint and proofs, around the recorded record.
    // The older entry is in the current tree too (a valid inclusion proof): only the map tells it is not current.
    let swap: ((current: Bound) => Promise<Bound>) | null = null;
    const proxy = await startFakeServer(async (req, res) => {
      const upstream = await fetch(`${primary.url}${req.url}`);
      let body = (await upstream.json()) as Bound;
      if (swap !== null && req.url!.startsWith('/v1/resolve/')) body = await swap(body);
      res.writeHead(upstream.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    });
    fakes.push(proxy);
    const size = Number(oldAnn.log.checkpoint.split('\n')[1]);
    const current = await read('ann@example');
    const currentSize = Number(current.log.checkpoint.split('\n')[1]);
    expect(currentSize).toBeGreaterThan(size);
    const inclusion = (await (await fetch(`${primary.url}/v1/zones/example/log/inclusion?leaf=${oldAnn.log.entry!.leaf}&size=${currentSize}`)).json()) as {
      proof: string[];
    };
    const policy = { thumbprints: witnesses, quorum: 2 };
    const fresh = () => resolver({ trustAnchors: { example: [kid] }, rootServers: [proxy.url], witnesses: policy });

    expect(await fresh().lookup('ann@example')).toMatchObject({ status: 'found', witnessed: true, keys: [rotated.public] });
    for (const map of [(c: Bound) => c.log.map, () => oldAnn.log.map]) {
      swap = async (c) => ({
        ...c,
        record: oldAnn.record,
        history: oldAnn.history,
        log: { ...c.log, entry: { leaf: oldAnn.log.entry!.leaf, proof: inclusion.proof }, map: map(c) },
      });
      await expect(fresh().lookup('ann@example')).rejects.toThrow(/not the zone’s current record/);
    }
    // bob's older denial with the current checkpoint: the denial is no longer in the map.
    swap = async (c) => {
      const { history: _h, log, ...rest } = c;
      const { entry: _e, ...bare } = log;
      return { ...rest, status: 'denial', record: oldBob.record, log: { ...bare, map: oldBob.log.map } };
    };
    await expect(fresh().lookup('bob@example')).rejects.toThrow(/not the zone’s current record/);
    swap = null;
    expect(await fresh().lookup('bob@example')).toMatchObject({ status: 'found', witnessed: true });
  });
});

describe('a resolver requiring witnesses across a delegation', () => {
  it("walks a referral bound to the parent's log (its delegation proven current) to the child's answer, and a forwarder checks both zones' bindings", async () => {
    const { primary, secondaries, kid, witnesses } = await witnessedZone(server);
    // The child zone on its own primary, copied (and so witnessed) by the same two secondaries.
    const child = await server({ background: true });
    child.ctx.zones.create('kids.example', { servers: [child.url, ...secondaries.map((s) => s.url)] });
    const childKid = child.ctx.zones.info('kids.example').keyThumbprints[0]!;
    for (const s of secondaries) {
      s.ctx.zones.createSecondary('kids.example', { primaries: [child.url], ds: [childKid] });
      await s.ctx.replicator.checkNow('kids.example');
    }
    primary.ctx.zones.delegate('example', 'kids.example', { servers: [child.url], ds: [childKid] });
    // A change through the primary's writer: its witnesses are then offered the version with the delegation.
    await register(primary, 'ann@example');
    await register(child, 'kim@kids.example');
    await allCosigned([primary, ...secondaries]);
    for (const s of [child, ...secondaries]) {
      await until(
        async () => cosignatures(await (await fetch(`${s.url}/v1/zones/kids.example/checkpoint`)).text()) === 2,
        `${s.url} to serve the child's cosigned checkpoint`,
      );
    }
    const policy = { thumbprints: witnesses, quorum: 2 };
    const walking = resolver({ trustAnchors: { example: [kid] }, rootServers: [primary.url], witnesses: policy });
    const found = (await walking.lookup('kim@kids.example')) as VerifiedResult;
    expect(found).toMatchObject({ status: 'found', witnessed: true });
    // Each step keeps the map proofs it checked: the parent's of the delegation, the child's of the record.
    expect(found.proof.steps.map((s) => [s.zone, s.log!.map.length])).toEqual([
      ['example', 1],
      ['kids.example', 1],
    ]);
    expect(await walking.lookup('nobody@kids.example')).toMatchObject({ status: 'not_found', witnessed: true });

    // Through an upstream that requires witnesses, the forwarder checks both zones' bindings again.
    const upstream = await upstreamOf(primary, kid, policy);
    const forwarder = resolver({ trustAnchors: { example: [kid] }, forwarders: [upstream.url], witnesses: policy });
    expect(await forwarder.lookup('kim@kids.example')).toMatchObject({ status: 'found', witnessed: true });
  });
});

describe('a forwarding resolver requiring witnesses', () => {
  it("checks the bindings its upstream's proofs carry, keeps the result no longer than they stay fresh, and refuses a proof without them", async () => {
    const { primary, secondaries, kid, witnesses } = await witnessedZone(server);
    await register(primary, 'ann@example');
    await allCosigned([primary, ...secondaries]);
    const policy = { thumbprints: witnesses, quorum: 2 };
    const upstream = await upstreamOf(primary, kid, policy);
    const forwarder = resolver({ trustAnchors: { example: [kid] }, forwarders: [upstream.url], witnesses: { ...policy, freshnessSeconds: 600 } });
    const found = (await forwarder.lookup('ann@example')) as VerifiedResult;
    expect(found).toMatchObject({ status: 'found', witnessed: true });
    expect(found.trace).toEqual([expect.objectContaining({ zone: '(upstream resolver)', server: upstream.url })]);
    // What it keeps of the bindings: the checkpoint, the witnesses' keys and the proofs it checked.
    expect(found.proof.steps[0]!.log).toMatchObject({ checkpoint: expect.stringContaining('example/idns-log') });
    expect(Object.keys(found.proof.steps[0]!.log!.witnesses).sort()).toEqual(witnesses.map((t) => `idns-witness/${t}`).sort());
    expect(found.proof.entry).toMatchObject({ leaf: expect.any(Number) });
    expect(found.ttl).toBeGreaterThan(0);
    expect(found.ttl).toBeLessThanOrEqual(600);
    expect(await forwarder.lookup('nobody@example')).toMatchObject({ status: 'not_found', witnessed: true });

    // In front of the upstream, a proxy that drops the bindings, or points the entry at another leaf.
    let change: (proof: { steps: { log?: unknown }[]; entry?: { leaf: number } }) => void = () => {};
    const proxy = await startFakeServer(async (req, res) => {
      const up = await fetch(`${upstream.url}${req.url}`);
      const body = (await up.json()) as { proof?: { steps: { log?: unknown }[]; entry?: { leaf: number } } };
      if (body.proof) change(body.proof);
      res.writeHead(up.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    });
    fakes.push(proxy);
    const misled = () => resolver({ trustAnchors: { example: [kid] }, forwarders: [proxy.url], witnesses: policy });
    change = (p) => p.steps.forEach((s) => delete s.log);
    await expect(misled().lookup('ann@example')).rejects.toThrow(/log binding/);
    change = (p) => {
      p.entry!.leaf = 0;
    };
    await expect(misled().lookup('ann@example')).rejects.toThrow(/verification|leaf|tree/i);
    change = () => {};
    expect(await misled().lookup('ann@example')).toMatchObject({ status: 'found', witnessed: true });

    // An upstream that requires no witnesses asks for no bindings: it has none to give.
    const plain = await upstreamOf(primary, kid);
    await expect(resolver({ trustAnchors: { example: [kid] }, forwarders: [plain.url], witnesses: policy }).lookup('ann@example')).rejects.toThrow(
      /log binding/,
    );
  });
});
