import { cpSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { requestId } from '../src/records/change-request.js';
import { EVIDENCE_MAX_CHARS } from '../src/records/history-evidence.js';
import { createResolver, type Resolver } from '../src/resolver/resolver.js';
import { verifyProof } from '../src/resolver/proof.js';
import { cleanupEachTest } from './support/cleanup.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

/**
 * How a resolver gets and keeps a handle's history (docs/protocol.md §6.5), observed from outside: the
 * requests the zone's server answers. A long history is verified from its compact form; one whose compact
 * form is longer than an answer's evidence is read from the log at first contact; afterwards the resolver's history book supplies what it verified before, so a change is
 * checked from there with no read of the log; a resolver without that book reads it again.
 */

const ZONE = 'example.com';
const H = `alice@${ZONE}`;
const owner = newUserKey();
const cleanups = cleanupEachTest();

const second = newUserKey();

/**
 * Update number `n` of alice, carrying ~1.2 KB of aliases so that a few of them fill a whole history's
 * evidence. With `changeKeys` (and ~16 KB of aliases), an odd-numbered update adds a second key and an even-numbered one drops it: every one
 * changes the key set, so the compact form of the history is all of it (docs/protocol.md §6.5).
 */
function update(prev: string, n: number, changeKeys = false): string {
  // With keys that change, ~16 KB of aliases: a few entries' compact form is more than an answer carries.
  const alsoKnownAs = changeKeys
    ? Array.from({ length: 8 }, (_, i) => `https://old.example/${String(n).padStart(4, '0')}/${i}/${'a'.repeat(1900)}`)
    : [`https://old.example/${String(n).padStart(4, '0')}/${'a'.repeat(900)}`];
  const adds = changeKeys && n % 2 === 1;
  return signChangeRequest(
    {
      action: 'update',
      handle: H,
      endpoint: `https://home.example/alice/${n}`,
      keys: adds ? [owner.public, second.public] : [owner.public],
      prev,
      alsoKnownAs,
    },
    owner.private,
    undefined,
    adds ? [second.private] : [],
  );
}

/** Log requests the server answered with 200 so far (its metrics). */
async function logReads(s: TestServer): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('idns_http_requests_total{') && line.includes('route="/v1/handles/:handle/log"') && line.includes('status="200"')) {
      n += Number(line.split(' ').pop());
    }
  }
  return n;
}

function resolverFor(s: TestServer, url = s.url): Resolver {
  const r = createResolver({ trustAnchors: new Map([[ZONE, s.ctx.zones.info(ZONE).keyThumbprints]]), rootServers: [url], allowPrivate: true });
  cleanups.push(() => r.close());
  return r;
}

/** Makes the updates numbered `from` … `to` of alice on `s`, after the entry `prev`; returns the last one's id. */
async function updates(s: TestServer, prev: string, from: number, to: number, changeKeys = false): Promise<string> {
  for (let n = from; n <= to; n++) {
    const u = update(prev, n, changeKeys);
    await s.ctx.changes.submit(u);
    prev = requestId(u);
  }
  return prev;
}

/** A fixed address in front of a server that can be swapped (a server restored elsewhere keeps its name). */
async function switchable(target: string): Promise<{ url: string; target: string; close: () => Promise<void> }> {
  const state = { target };
  const server: Server = createServer((req, res) => {
    void fetch(`${state.target}${req.url}`).then(async (up) => {
      res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/json' });
      res.end(Buffer.from(await up.arrayBuffer()));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(state, {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

describe("a resolver's history book", () => {
  let s: TestServer;

  it('verifies a long history of updates that keep the keys from its compact form, in one request', async () => {
    s = await startTestServer({ zones: { [ZONE]: {} } });
    cleanups.push(() => s.close());
    const reg = signChangeRequest({ action: 'register', handle: H, endpoint: 'https://home.example/alice', keys: [owner.public] }, owner.private);
    await s.ctx.changes.submit(reg);
    await updates(s, requestId(reg), 1, 30);
    // 31 entries of ~1.2 KB do not fit in the evidence; their compact form is the registration and the last.
    const answer = (await (await fetch(`${s.url}/v1/resolve/${H}`)).json()) as { history: [number, string][] };
    expect(answer.history.map(([seq]) => seq)).toEqual([1, 31]);

    const resolver = resolverFor(s);
    const before = await logReads(s);
    const first = await resolver.lookup(H);
    expect(first).toMatchObject({ status: 'found', endpoint: 'https://home.example/alice/30', genesis: requestId(reg) });
    expect(await logReads(s)).toBe(before);
    if (!first.verified) throw new Error('not verified');
    expect(first.proof.history!.map(([seq]) => seq)).toEqual([1, 31]);
    // The proof, compact as it is, verifies on its own (what a forwarding resolver checks), through JSON.
    const anchors = new Map([[ZONE, s.ctx.zones.info(ZONE).keyThumbprints]]);
    const again = verifyProof(JSON.parse(JSON.stringify(first.proof)), H, anchors, Math.floor(Date.now() / 1000), undefined, { allowLoopbackEndpoints: true });
    expect(again).toMatchObject({ status: 'found', endpoint: 'https://home.example/alice/30', genesis: requestId(reg) });
  });

  it('reads a history whose compact form does not fit from the log once, then checks each later change from what it kept', async () => {
    s = await startTestServer({ zones: { [ZONE]: {} } });
    cleanups.push(() => s.close());
    const reg = signChangeRequest({ action: 'register', handle: H, endpoint: 'https://home.example/alice', keys: [owner.public] }, owner.private);
    await s.ctx.changes.submit(reg);
    const prev = await updates(s, requestId(reg), 1, 12, true);
    // The answer carries only the last entries: the evidence is bounded, and every entry changed the keys.
    const answer = (await (await fetch(`${s.url}/v1/resolve/${H}`)).json()) as { history: [number, string][] };
    expect(answer.history[0]![0]).toBeGreaterThan(1);
    expect(answer.history.map(([, jws]) => jws).join('').length).toBeLessThanOrEqual(EVIDENCE_MAX_CHARS);

    const resolver = resolverFor(s);
    const before = await logReads(s);
    const first = await resolver.lookup(H);
    expect(first).toMatchObject({ status: 'found', endpoint: 'https://home.example/alice/12', genesis: requestId(reg) });
    expect(await logReads(s)).toBe(before + 1);
    if (!first.verified) throw new Error('not verified');
    expect(first.proof.history).toHaveLength(13);

    // One more change: checked from the point kept, with the prefix from the book, no log read.
    const u = update(prev, 13, true);
    await s.ctx.changes.submit(u);
    const second = await resolver.lookup(H, { forceRefresh: true });
    expect(second).toMatchObject({ endpoint: 'https://home.example/alice/13', genesis: requestId(reg) });
    expect(await logReads(s)).toBe(before + 1);

    // A resolver without the book reads the log again.
    const fresh = resolverFor(s);
    expect(await fresh.lookup(H)).toMatchObject({ endpoint: 'https://home.example/alice/13' });
    expect(await logReads(s)).toBe(before + 2);
  });

  it('checks a change from the book once the cached answer is gone (the book outlives the cache), its proof whole', async () => {
    s = await startTestServer({ zones: { [ZONE]: {} } });
    cleanups.push(() => s.close());
    const reg = signChangeRequest({ action: 'register', handle: H, endpoint: 'https://home.example/alice', keys: [owner.public] }, owner.private);
    await s.ctx.changes.submit(reg);
    const prev = await updates(s, requestId(reg), 1, 12, true);
    const resolver = resolverFor(s);
    const before = await logReads(s);
    await resolver.lookup(H);
    expect(await logReads(s)).toBe(before + 1);

    // The cached answer goes (as it does when it expires and is evicted); the book keeps the point and entries.
    resolver.clearCache();
    expect(resolver.cacheSize).toBe(0);
    const u = update(prev, 13, true);
    await s.ctx.changes.submit(u);
    const later = await resolver.lookup(H);
    expect(later).toMatchObject({ status: 'found', endpoint: 'https://home.example/alice/13', genesis: requestId(reg), stale: false });
    // No read of the log: the entries before the answer's evidence came from the book.
    expect(await logReads(s)).toBe(before + 1);
    if (!later.verified) throw new Error('not verified');
    expect(later.proof.history!.map(([seq]) => seq)).toEqual(Array.from({ length: 14 }, (_, i) => i + 1));
    // The proof made from the book's entries and the answer's verifies on its own, from nothing.
    const anchors = new Map([[ZONE, s.ctx.zones.info(ZONE).keyThumbprints]]);
    const alone = verifyProof(JSON.parse(JSON.stringify(later.proof)), H, anchors, Math.floor(Date.now() / 1000), undefined, { allowLoopbackEndpoints: true });
    expect(alone).toMatchObject({ endpoint: 'https://home.example/alice/13', genesis: requestId(reg) });
  });

  it('notices a handle registered anew: another genesis', async () => {
    s = await startTestServer({ zones: { [ZONE]: {} } });
    cleanups.push(() => s.close());
    // No cool-down: a stranger may take the name at once.
    s.ctx.zones.setTombstoneCooldown(ZONE, 0);
    const reg = signChangeRequest({ action: 'register', handle: H, endpoint: 'https://home.example/alice', keys: [owner.public] }, owner.private);
    await s.ctx.changes.submit(reg);
    const resolver = resolverFor(s);
    expect(await resolver.resolve(H)).toMatchObject({ genesis: requestId(reg), operatorAsserted: false });
    await s.ctx.changes.submit(signChangeRequest({ action: 'delete', handle: H, prev: requestId(reg) }, owner.private));
    const stranger = newUserKey();
    const again = signChangeRequest({ action: 'register', handle: H, endpoint: 'https://elsewhere.example/', keys: [stranger.public] }, stranger.private);
    await s.ctx.changes.submit(again);
    const now = await resolver.resolve(H, { forceRefresh: true });
    expect(now).toMatchObject({ genesis: requestId(again), endpoint: 'https://elsewhere.example/', keys: [stranger.public] });
  });

  it('resolves a zone restored from a backup whose history went another way than the entries it kept', async () => {
    const data = tempDir();
    cleanups.push(data.remove);
    const dataDir = data.dir;
    const first = await startTestServer({ dataDir, zones: { [ZONE]: {} } });
    const reg = signChangeRequest({ action: 'register', handle: H, endpoint: 'https://home.example/alice', keys: [owner.public] }, owner.private);
    await first.ctx.changes.submit(reg);
    const atBackup = await updates(first, requestId(reg), 1, 6, true);
    const keys = first.ctx.zones.info(ZONE).keyThumbprints;
    // The backup: a copy of the data directory with 7 entries, taken while the server is stopped.
    await first.close();
    const { dir: backup } = tempDir();
    cleanups.push(() => rmSync(backup, { recursive: true, force: true }));
    cpSync(dataDir, backup, { recursive: true });

    const live = await startTestServer({ dataDir });
    let liveOpen = true;
    cleanups.push(async () => {
      if (liveOpen) await live.close();
    });
    await updates(live, atBackup, 7, 13, true);
    const front = await switchable(live.url);
    cleanups.push(() => front.close());
    const resolver = createResolver({ trustAnchors: new Map([[ZONE, keys]]), rootServers: [front.url], allowPrivate: true });
    cleanups.push(() => resolver.close());
    expect(await resolver.lookup(H)).toMatchObject({ endpoint: 'https://home.example/alice/13' });

    // Restored from the backup, the zone goes another way: entries 8 on differ from those the resolver keeps.
    liveOpen = false;
    await live.close();
    const restored = await startTestServer({ dataDir: backup });
    cleanups.push(() => restored.close());
    await updates(restored, atBackup, 100, 107, true);
    front.target = restored.url;
    const answer = (await (await fetch(`${restored.url}/v1/resolve/${H}`)).json()) as { history: [number, string][] };
    expect(answer.history[0]![0]).toBeGreaterThan(8);
    expect(await resolver.lookup(H, { forceRefresh: true })).toMatchObject({ endpoint: 'https://home.example/alice/107' });
  });
});

describe("a resolver's zone versions: no rollback, forks kept (docs/protocol.md §10.1)", () => {
  /** A zone with alice and three updates, its data directory copied as a backup, and two more updates live. */
  async function liveAndBackup() {
    const data = tempDir();
    cleanups.push(data.remove);
    const first = await startTestServer({ dataDir: data.dir, zones: { [ZONE]: {} } });
    const reg = signChangeRequest({ action: 'register', handle: H, endpoint: 'https://home.example/alice', keys: [owner.public] }, owner.private);
    await first.ctx.changes.submit(reg);
    const atBackup = await updates(first, requestId(reg), 1, 3);
    const keys = first.ctx.zones.info(ZONE).keyThumbprints;
    await first.close();
    const { dir: backup } = tempDir();
    cleanups.push(() => rmSync(backup, { recursive: true, force: true }));
    cpSync(data.dir, backup, { recursive: true });
    const live = await startTestServer({ dataDir: data.dir });
    await updates(live, atBackup, 4, 5);
    const front = await switchable(live.url);
    cleanups.push(() => front.close());
    const resolver = createResolver({ trustAnchors: new Map([[ZONE, keys]]), rootServers: [front.url], allowPrivate: true });
    cleanups.push(() => resolver.close());
    expect(await resolver.lookup(H)).toMatchObject({ endpoint: 'https://home.example/alice/5' });
    return { live, backup, atBackup, front, resolver };
  }

  it('refuses an older version of a zone than one it verified (a backup served again): the state since is not undone', async () => {
    const { live, backup, front, resolver } = await liveAndBackup();
    await live.close();
    const restored = await startTestServer({ dataDir: backup });
    cleanups.push(() => restored.close());
    front.target = restored.url;
    // The refresh is refused; what the resolver serves meanwhile is the newer state, marked stale.
    expect(await resolver.lookup(H, { forceRefresh: true })).toMatchObject({ endpoint: 'https://home.example/alice/5', stale: true });
    resolver.clearCache();
    await expect(resolver.lookup(H)).rejects.toMatchObject({
      code: 'verification_failed',
      message: expect.stringMatching(/older than serial \d+ seen before/),
    });
    // The operator who meant to restore moves the serial past the newest published: resolvers take it again.
    const seen = Number(/older than serial (\d+)/.exec(String(await resolver.lookup(H).catch((err: Error) => err.message)))![1]);
    expect(restored.ctx.zones.bumpSerial(ZONE, seen + 1)).toBe(seen + 1);
    expect(() => restored.ctx.zones.bumpSerial(ZONE, seen)).toThrow(/is not after/);
    expect(await resolver.lookup(H)).toMatchObject({ endpoint: 'https://home.example/alice/3', stale: false });
    // A resolver that never saw the newer version takes it: only witnessed checkpoints will tell it (issue 18).
    const fresh = createResolver({
      trustAnchors: new Map([[ZONE, restored.ctx.zones.info(ZONE).keyThumbprints]]),
      rootServers: [front.url],
      allowPrivate: true,
    });
    cleanups.push(() => fresh.close());
    expect(await fresh.lookup(H)).toMatchObject({ endpoint: 'https://home.example/alice/3' });
  });

  it('keeps two zone records of one serial with different contents as evidence of a fork, and refuses the second', async () => {
    const { live, backup, atBackup, front, resolver } = await liveAndBackup();
    await live.close();
    // The backup goes on with two changes of its own: the same serial as the live zone, other contents.
    const restored = await startTestServer({ dataDir: backup });
    cleanups.push(() => restored.close());
    await updates(restored, atBackup, 40, 41);
    front.target = restored.url;
    resolver.clearCache();
    await expect(resolver.lookup(H)).rejects.toMatchObject({
      code: 'verification_failed',
      message: expect.stringMatching(/evidence of a fork/),
    });
    const forks = resolver.zoneForks();
    expect(forks).toHaveLength(1);
    expect(forks[0]).toMatchObject({ zone: ZONE });
    expect(forks[0]!.seen).not.toBe(forks[0]!.offered);
  });
});

describe('the forks a resolver role keeps, as a metric', () => {
  it('counts them in idns_resolver_zone_forks', async () => {
    const { Metrics } = await import('../src/http/metrics.js');
    let forks = 0;
    const metrics = new Metrics({
      now: () => Date.now(),
      zones: () => [],
      signatureExpiry: () => [],
      replication: () => [],
      notifies: () => ({ sent: 0, gaveUp: 0 }),
      answerFiles: () => [],
      zoneLogTrees: () => [],
      resolverCache: () => ({ entries: 0, bytes: 0 }),
      resolverZoneForks: () => forks,
      witnessForks: () => 0,
      rollovers: () => [],
    });
    expect(await metrics.registry.metrics()).toMatch(/^idns_resolver_zone_forks 0$/m);
    forks = 2;
    expect(await metrics.registry.metrics()).toMatch(/^idns_resolver_zone_forks 2$/m);
  });
});
