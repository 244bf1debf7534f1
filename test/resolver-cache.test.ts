import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { signChangeRequest } from '../src/client/requests.js';
import { IdnsError } from '../src/errors.js';
import { createResolver, type Resolver } from '../src/resolver/resolver.js';
import { ArrayInterner } from '../src/resolver/intern.js';
import type { ResolverOptions } from '../src/resolver/options.js';
import type { TraceStep } from '../src/resolver/proof.js';
import { freshKey, sendJson, startFakeServer, zoneReply, ZoneSigner, type FakeServer } from './support/fake-server.js';
import { cleanupEachTest } from './support/cleanup.js';
import { startHierarchy, verified, type Hierarchy } from './support/hierarchy.js';
import { startTestServer } from './support/server.js';

/**
 * The resolver's cache, driven by a ManualClock given to the resolver only: the servers keep the real
 * clock, so their signatures (valid 21 days) stay valid while the resolver's clock moves by hours.
 * `resolver.upstreamRequests` counts every request sent to a server.
 */

const LIMITS = { requestTimeoutMs: 300, lookupBudgetMs: 3000 };
const HOUR = 3600_000;
const endpointOf = (handle: string) => `https://home.example/${handle}`;

let h: Hierarchy;
const cleanups = cleanupEachTest();
beforeAll(async () => {
  h = await startHierarchy();
});
afterAll(async () => h?.close());

function resolver(clock: ManualClock, cache: ResolverOptions['cache'] = {}, hierarchy: Hierarchy = h): Resolver {
  const r = createResolver({
    trustAnchors: hierarchy.anchors,
    rootServers: hierarchy.rootServers,
    allowPrivate: true,
    clock,
    limits: LIMITS,
    // Prefetch is off unless a test is about it, so that hits near expiry do not refresh behind its back.
    cache: { prefetch: false, ...cache },
  });
  cleanups.push(() => r.close());
  return r;
}

async function failure(p: Promise<unknown>): Promise<IdnsError> {
  const outcome = await p.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if ('value' in outcome) throw new Error(`expected a typed error, got ${JSON.stringify(outcome.value).slice(0, 300)}`);
  expect(outcome.error).toBeInstanceOf(IdnsError);
  return outcome.error as IdnsError;
}

describe('freshness', () => {
  it('keeps an answer for its TTL (3600 s), then asks upstream again', async () => {
    const clock = new ManualClock(Date.now());
    const r = resolver(clock);
    const first = verified(await r.lookup('alice@social.example'));
    expect(first.ttl).toBe(3600);
    expect(r.upstreamRequests).toBe(3);
    clock.advance(3599_000);
    const cached = verified(await r.lookup('alice@social.example'));
    expect(cached).toMatchObject({ status: 'found', endpoint: endpointOf('alice@social.example'), stale: false, ttl: 1 });
    expect(r.upstreamRequests).toBe(3);
    clock.advance(2_000);
    const again = verified(await r.lookup('alice@social.example'));
    expect(again).toMatchObject({ status: 'found', stale: false, ttl: 3600 });
    expect(r.upstreamRequests).toBeGreaterThan(3);
  });

  it('keeps an answer no longer than its signature is valid, and never serves it stale past exp', async () => {
    // A zone whose signatures live 1 h while its handles ask for a 2 h TTL.
    const server = await startTestServer({
      zones: { 'short.example': { allowLoopbackEndpoints: true, timers: { signatureValidity: 3600, resignBefore: 60, handleTtl: 7200 } } },
    });
    cleanups.push(() => server.close());
    const kid = server.ctx.zones.info('short.example').keyThumbprints[0]!;
    await server.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: 'u@short.example', endpoint: endpointOf('u@short.example'), keys: [h.owner.public] }, h.owner.private),
    );
    h.zones.get('example')!.a.ctx.zones.delegate('example', 'short.example', { servers: [server.url], ds: [kid] });

    const clock = new ManualClock(Date.now());
    const r = resolver(clock, { serveStaleSeconds: 86_400 });
    const first = verified(await r.lookup('u@short.example'));
    expect(first.ttl).toBeLessThanOrEqual(3600);
    expect(first.ttl).toBeGreaterThan(3500);
    const requests = r.upstreamRequests;
    clock.advance(3500_000);
    const cached = verified(await r.lookup('u@short.example'));
    expect(cached.stale).toBe(false);
    expect(cached.ttl).toBeLessThanOrEqual(100);
    expect(r.upstreamRequests).toBe(requests);
    // Past the signature's exp (the TTL of 7200 s is not reached): the entry is gone, not served stale;
    // upstream still has the same (now expired) records, so the lookup is a verification failure.
    clock.advance(200_000);
    const err = await failure(r.lookup('u@short.example'));
    expect(err.code).toBe('verification_failed');
    expect(r.upstreamRequests).toBeGreaterThan(requests);
  });

  it("keeps a denial for the zone's minimum (300 s)", async () => {
    const clock = new ManualClock(Date.now());
    const r = resolver(clock);
    const first = verified(await r.lookup('nobody@social.example'));
    expect(first).toMatchObject({ status: 'not_found', zone: 'social.example', ttl: 300 });
    const requests = r.upstreamRequests;
    clock.advance(299_000);
    expect(verified(await r.lookup('nobody@social.example'))).toMatchObject({ status: 'not_found', ttl: 1, stale: false });
    expect(r.upstreamRequests).toBe(requests);
    clock.advance(2_000);
    expect(verified(await r.lookup('nobody@social.example'))).toMatchObject({ status: 'not_found', ttl: 300, stale: false });
    expect(r.upstreamRequests).toBe(requests + 1);
  });

  it("keeps zone cuts for the delegation's TTL: within it a new name costs one request, after it a full walk", async () => {
    const clock = new ManualClock(Date.now());
    const r = resolver(clock);
    verified(await r.lookup('alice@social.example'));
    expect(r.upstreamRequests).toBe(3);
    clock.advance(3000_000);
    verified(await r.lookup('zed@social.example'));
    expect(r.upstreamRequests).toBe(4);
    clock.advance(700_000);
    verified(await r.lookup('yan@social.example'));
    expect(r.upstreamRequests).toBe(7);
  });

  it('does not keep a zone cut past the earliest signature expiry of the proof leading to it', async () => {
    // root (real) → mid (scripted) → leaf.mid (scripted). mid's zone record is signed for 10 minutes only,
    // its delegation of leaf.mid for a day; mid re-signs on every query (as a healthy primary does).
    const clock = new ManualClock(Date.now());
    const now = () => Math.floor(clock.now() / 1000);
    const mid = new ZoneSigner('mid', freshKey(), now);
    const leaf = new ZoneSigner('leaf.mid', freshKey(), now);
    let f: FakeServer | undefined;
    f = await startFakeServer((_req, res, q) => {
      const url = f!.url;
      if (q.zone === 'mid') {
        const zr = mid.zoneRecord([url], { exp: now() + 600 });
        sendJson(res, 200, zoneReply('referral', 'mid', mid.delegation('leaf.mid', [url], [leaf.kid], { exp: now() + 86_400 }), zr));
      } else {
        sendJson(res, 200, zoneReply('answer', 'leaf.mid', leaf.handle(q.handle!, endpointOf(q.handle!), [h.owner.public]), leaf.zoneRecord([url])));
      }
    });
    cleanups.push(() => f!.close());
    h.zones.get('.')!.a.ctx.zones.delegate('.', 'mid', { servers: [f.url], ds: [mid.kid] });

    const r = resolver(clock);
    expect(verified(await r.lookup('a@leaf.mid')).endpoint).toBe(endpointOf('a@leaf.mid'));
    // mid's zone record in the cached proof has expired; a new walk would get a fresh one.
    clock.advance(700_000);
    const outcome = await r.lookup('b@leaf.mid').then(
      (x) => ({ endpoint: x.endpoint }),
      (e: IdnsError) => ({ code: e.code, message: e.message }),
    );
    // Control: the hierarchy itself is fine at this time, a resolver without the cached cut succeeds.
    expect(verified(await resolver(clock).lookup('b@leaf.mid')).endpoint).toBe(endpointOf('b@leaf.mid'));
    // Expected: re-walk from the root and succeed. Actual (bug): verification_failed, "the zone record's
    // signature expired", from the zone cut for leaf.mid cached until its delegation's exp/ttl.
    expect(outcome).toEqual({ endpoint: endpointOf('b@leaf.mid') });
  });
});

describe('size bound', () => {
  it('keeps at most cache.maxEntries entries (LRU) across many lookups, answering each correctly', async () => {
    const clock = new ManualClock(Date.now());
    const r = resolver(clock, { maxEntries: 3 });
    const handles = ['alice@social.example', 'bob@example', 'carol@news.example', 'dave@org', 'eve@deep.skip.example.org'];
    for (let round = 0; round < 2; round++) {
      for (const handle of handles) {
        expect(verified(await r.lookup(handle)).endpoint).toBe(endpointOf(handle));
        expect(r.cacheSize).toBeLessThanOrEqual(3);
      }
      for (let i = 0; i < 10; i++) {
        expect(verified(await r.lookup(`nobody${i}@news.example`)).status).toBe('not_found');
        expect(r.cacheSize).toBeLessThanOrEqual(3);
      }
    }
    expect(r.cacheSize).toBe(3);
  });
});

describe('byte bound (issue 14, item 2)', () => {
  it('stays under cache.maxBytes however many answers and denials it is given, answering each correctly', async () => {
    const clock = new ManualClock(Date.now());
    const maxBytes = 48 * 1024;
    const r = createResolver({
      trustAnchors: h.anchors,
      rootServers: h.rootServers,
      allowPrivate: true,
      clock,
      // About bytes, not time: limits a busy machine cannot trip by accident.
      limits: { requestTimeoutMs: 10_000, lookupBudgetMs: 30_000 },
      cache: { prefetch: false, maxBytes, maxEntryBytes: 16 * 1024 },
    });
    cleanups.push(() => r.close());
    const handles = ['alice@social.example', 'bob@example', 'carol@news.example', 'dave@org', 'eve@deep.skip.example.org'];
    let peak = 0;
    for (let i = 0; i < 40; i++) {
      const found = handles[i % handles.length]!;
      expect(verified(await r.lookup(found)).endpoint).toBe(endpointOf(found));
      expect(verified(await r.lookup(`nobody${i}@x.y.news.example`)).status).toBe('not_found');
      peak = Math.max(peak, r.cacheBytes);
      expect(r.cacheBytes).toBeLessThanOrEqual(maxBytes);
    }
    // Overfilled: entries were evicted for bytes (the entry bound, 100,000, is far away)...
    expect(peak).toBeGreaterThan(maxBytes / 2);
    expect(r.cacheSize).toBeLessThan(45);
    // ...least recently used first: the last answer is still a hit.
    const before = r.upstreamRequests;
    expect(verified(await r.lookup('nobody39@x.y.news.example')).status).toBe('not_found');
    expect(r.upstreamRequests).toBe(before);
    r.clearCache();
    expect(r.cacheBytes).toBe(0);
  });

  it('returns an answer heavier than cache.maxEntryBytes without caching it; lighter ones are cached', async () => {
    const clock = new ManualClock(Date.now());
    const zone = new ZoneSigner('big.example', freshKey(), () => Math.floor(clock.now() / 1000));
    const keys = Array.from({ length: 8 }, () => freshKey().publicJwk);
    const longEndpoint = `https://home.example/${'a'.repeat(2000)}`;
    const f: FakeServer = await startFakeServer((_req, res, q) => {
      const record = q.handle === 'large@big.example' ? zone.handle(q.handle, longEndpoint, keys) : zone.handle(q.handle!, endpointOf(q.handle!), [keys[0]!]);
      sendJson(res, 200, zoneReply('answer', 'big.example', record, zone.zoneRecord([f.url])));
    });
    cleanups.push(() => f.close());
    const r = createResolver({
      trustAnchors: { 'big.example': [zone.kid] },
      rootServers: [f.url],
      allowPrivate: true,
      clock,
      limits: { requestTimeoutMs: 10_000, lookupBudgetMs: 30_000 },
      cache: { maxEntryBytes: 8 * 1024 },
    });
    cleanups.push(() => r.close());
    for (let i = 0; i < 2; i++) {
      const large = verified(await r.lookup('large@big.example'));
      expect(large).toMatchObject({ status: 'found', endpoint: longEndpoint, stale: false });
      expect(large.keys).toHaveLength(8);
      verified(await r.lookup('small@big.example'));
    }
    // The large answer was asked for both times; the small one once.
    expect(f.requests.map((q) => q.handle)).toEqual(['large@big.example', 'small@big.example', 'large@big.example']);
    expect(r.lookupCached('large@big.example')).toBeUndefined();
    expect(r.lookupCached('small@big.example')?.endpoint).toBe(endpointOf('small@big.example'));
  });

  it('refuses a per-entry cap above the byte bound', () => {
    expect(() => createResolver({ trustAnchors: h.anchors, rootServers: h.rootServers, cache: { maxBytes: 10_000, maxEntryBytes: 20_000 } })).toThrow(
      /maxEntryBytes/,
    );
  });
});

describe('sharing between entries', () => {
  it('holds one chain of proof steps for all the handles of a zone, frozen, and one trace array per distinct trace', async () => {
    const clock = new ManualClock(Date.now());
    const r = resolver(clock);
    const found = verified(await r.lookup('alice@social.example'));
    const denied = verified(await r.lookup('nobody@social.example'));
    const again = verified(await r.lookup('nobody2@social.example'));
    expect(denied.status).toBe('not_found');
    // The same object, not an equal copy: each reply brought its own copy of the zone's records.
    expect(denied.proof.steps).toBe(found.proof.steps);
    expect(again.proof.steps).toBe(found.proof.steps);
    expect(Object.isFrozen(found.proof.steps) && found.proof.steps.every((s) => Object.isFrozen(s))).toBe(true);
    expect(found.proof.steps.map((s) => s.zone)).toEqual(['.', 'example', 'social.example']);
    // The first lookup walked three zones, the others one: different traces, each shared once equal.
    expect(found.trace?.map((t) => t.zone)).toEqual(['.', 'example', 'social.example']);
    expect(denied.trace?.map((t) => t.zone)).toEqual(['social.example']);
    expect(Object.isFrozen(denied.trace)).toBe(true);
    // A hit hands out the cached objects themselves.
    expect(verified(await r.lookup('alice@social.example')).proof.steps).toBe(found.proof.steps);
  });

  it('interns arrays by their exact content: equal ones become one frozen copy, others stay apart', () => {
    const traces = new ArrayInterner<TraceStep>(2);
    const a = traces.intern([{ zone: 'z', server: 'https://s', rttMs: 3 }]);
    expect(traces.intern([{ zone: 'z', server: 'https://s', rttMs: 3 }])).toBe(a);
    expect(traces.intern([{ zone: 'z', server: 'https://s', rttMs: 4 }])).not.toBe(a);
    expect(Object.isFrozen(a) && Object.isFrozen(a[0])).toBe(true);
    // Bounded: past `max` distinct arrays the oldest is forgotten (its holders keep their copy).
    traces.intern([{ zone: 'z', server: 'https://s', rttMs: 5 }]);
    expect(traces.size).toBe(2);
    expect(traces.intern([{ zone: 'z', server: 'https://s', rttMs: 3 }])).not.toBe(a);
  });
});

describe('interner bounds (issue 14, item 2)', () => {
  it('remembers arrays up to a total of characters, and never one longer than its per-array bound', () => {
    const step = (n: number, rttMs = 1) => [{ zone: 'z', server: 's'.repeat(n), rttMs }];
    const traces = new ArrayInterner<TraceStep>(1024, 1000, 600);
    const a = traces.intern(step(400));
    const b = traces.intern(step(400, 2));
    expect(traces.intern(step(400))).toBe(a);
    expect(traces.size).toBe(2);
    // Over the total (about 3 × 440 characters): the oldest is forgotten to make room.
    traces.intern(step(300));
    expect(traces.size).toBe(2);
    expect(traces.intern(step(400, 2))).toBe(b);
    expect(traces.intern(step(400))).not.toBe(a);
    // Over the per-array bound: frozen, handed back, not remembered.
    const big = traces.intern(step(700));
    expect(Object.isFrozen(big) && Object.isFrozen(big[0])).toBe(true);
    expect(traces.intern(step(700))).not.toBe(big);
  });
});

describe('serve-stale (RFC 8767)', () => {
  let h2: Hierarchy;
  beforeAll(async () => {
    h2 = await startHierarchy();
  });
  afterAll(async () => h2?.close());

  it('serves expired data marked stale while every server of the zone is down, and a clear error after the window', async () => {
    const clock = new ManualClock(Date.now());
    const r = resolver(clock, { serveStaleSeconds: 600 }, h2);
    const fresh = verified(await r.lookup('carol@news.example'));
    expect(fresh).toMatchObject({ status: 'found', stale: false });
    const news = h2.zones.get('news.example')!;
    await news.a.server.close();
    await news.b.server.close();

    clock.advance(HOUR + 1_000);
    const before = r.upstreamRequests;
    const started = Date.now();
    const stale = verified(await r.lookup('carol@news.example'));
    expect(stale).toMatchObject({ status: 'found', endpoint: endpointOf('carol@news.example'), zone: 'news.example', stale: true, ttl: 0 });
    expect(stale.proof).toEqual(fresh.proof);
    // It did try upstream first (root, example, both news servers), within bounded time.
    expect(r.upstreamRequests - before).toBeGreaterThanOrEqual(3);
    expect(Date.now() - started).toBeLessThan(LIMITS.lookupBudgetMs);
    // A name never cached in that zone has nothing to fall back on.
    expect((await failure(r.lookup('zed@news.example'))).code).toBe('resolution_failed');
    // Other zones are unaffected.
    expect(verified(await r.lookup('bob@example'))).toMatchObject({ status: 'found', stale: false });

    clock.advance(600_000);
    const err = await failure(r.lookup('carol@news.example'));
    expect(err.code).toBe('resolution_failed');
  });
});

describe('stale-while-revalidate', () => {
  async function swrCase(cache: ResolverOptions['cache']) {
    const clock = new ManualClock(Date.now());
    const r = resolver(clock, cache);
    verified(await r.lookup('alice@social.example'));
    const before = r.upstreamRequests;
    clock.advance(HOUR + 1_000);
    const result = verified(await r.lookup('alice@social.example'));
    const sentWhenReturned = r.upstreamRequests - before;
    return { r, result, before, sentWhenReturned };
  }

  it('returns the expired answer at once and refreshes it in the background', async () => {
    const { r, result, before, sentWhenReturned } = await swrCase({ staleWhileRevalidateSeconds: 60 });
    expect(result).toMatchObject({ status: 'found', endpoint: endpointOf('alice@social.example'), stale: true, ttl: 0 });
    // The refresh has started (its first request is out) but the caller did not wait for it.
    expect(sentWhenReturned).toBeGreaterThanOrEqual(1);
    expect(sentWhenReturned).toBeLessThan(3);
    await vi.waitFor(
      async () => {
        const later = verified(await r.lookup('alice@social.example'));
        expect(later.stale).toBe(false);
        expect(later.ttl).toBe(3600);
      },
      { timeout: 20_000, interval: 20 },
    );
    // One background walk (root, example, social.example), shared by the lookups that polled meanwhile.
    expect(r.upstreamRequests - before).toBe(3);
  });

  it('works with serve-stale turned off (the two windows are separate settings)', async () => {
    const { result } = await swrCase({ staleWhileRevalidateSeconds: 60, serveStaleSeconds: 0 });
    // Expected: stale data at once. Actual (bug): the entry is dropped at expiry because the cache keeps
    // entries only for serveStaleSeconds past expiry, so the caller waits for a synchronous refresh.
    expect(result.stale).toBe(true);
  });
});

describe('prefetch', () => {
  it('refreshes an entry hit twice with less than 10% of its TTL left, without the caller waiting', async () => {
    const clock = new ManualClock(Date.now());
    const r = resolver(clock, { prefetch: true });
    verified(await r.lookup('alice@social.example'));
    const base = r.upstreamRequests;
    // Hot, but far from expiry: no prefetch.
    clock.advance(1800_000);
    verified(await r.lookup('alice@social.example'));
    verified(await r.lookup('alice@social.example'));
    expect(r.upstreamRequests).toBe(base);
    // 180 s of 3600 left (5%): this hit (the third) triggers a background refresh and is answered from cache.
    clock.advance(1620_000);
    const hit = verified(await r.lookup('alice@social.example'));
    expect(hit).toMatchObject({ stale: false, ttl: 180 });
    expect(r.upstreamRequests).toBeGreaterThan(base);
    await vi.waitFor(
      async () => {
        const later = verified(await r.lookup('alice@social.example'));
        expect(later.ttl).toBe(3600);
      },
      { timeout: 20_000, interval: 20 },
    );
    expect(r.upstreamRequests - base).toBe(1); // the social.example cut was still fresh
  });

  it('does not prefetch an entry hit only once near expiry', async () => {
    const clock = new ManualClock(Date.now());
    const r = resolver(clock, { prefetch: true });
    verified(await r.lookup('bob@example'));
    const base = r.upstreamRequests;
    clock.advance(3420_000);
    expect(verified(await r.lookup('bob@example')).ttl).toBe(180);
    expect(r.upstreamRequests).toBe(base);
    // The second hit near expiry does.
    verified(await r.lookup('bob@example'));
    expect(r.upstreamRequests).toBeGreaterThan(base);
  });
});
