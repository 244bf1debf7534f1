import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { epochSeconds, ManualClock } from '../src/clock.js';
import { DEFAULT_CONFIG, DEFAULT_RATE_LIMITS, type ServerConfig } from '../src/config.js';
import { AppContext } from '../src/context.js';
import { IdnsError } from '../src/errors.js';
import { startServer, type RunningServer } from '../src/http/server.js';
import { createLogger } from '../src/log.js';
import { proofFromBatch, verifyProof } from '../src/resolver/proof.js';
import type { Resolver } from '../src/resolver/resolver.js';
import { startHierarchy, type Hierarchy, hierarchyResolver } from './support/hierarchy.js';
import { tempDir } from './support/server.js';

/**
 * GET /v1/lookup on cache hits is served by a fast path beside the full application; both must answer
 * alike (a query string takes the full application). The resolvers here run on a ManualClock, the
 * hierarchy's servers on the real one, so the resolvers' caches age while every signature stays valid.
 */

const HOUR = 3600_000;
type Line = Record<string, unknown>;

interface ResolverServer {
  ctx: AppContext;
  server: RunningServer;
  url: string;
  resolver: Resolver;
  lines: Line[];
  close(): Promise<void>;
}

async function startResolver(
  h: Hierarchy,
  clock: ManualClock,
  extra: { cache?: NonNullable<ServerConfig['resolver']>['cache']; rateLimits?: boolean } = {},
): Promise<ResolverServer> {
  const tmp = tempDir();
  const lines: Line[] = [];
  const config: ServerConfig = {
    ...structuredClone(DEFAULT_CONFIG),
    dataDir: tmp.dir,
    bootstrap: false,
    // Prefetch is off so that hits near expiry do not refresh behind a test's back.
    resolver: hierarchyResolver(h, { cache: { prefetch: false, ...extra.cache }, limits: { requestTimeoutMs: 500 } }),
    ...(extra.rateLimits ? { rateLimits: { ...DEFAULT_RATE_LIMITS, enabled: true } } : {}),
  };
  const ctx = new AppContext(
    config,
    clock,
    createLogger('info', (l) => lines.push(JSON.parse(l) as Line)),
  );
  const server = await startServer(ctx, '127.0.0.1', 0);
  return {
    ctx,
    server,
    url: server.url,
    resolver: ctx.resolver!,
    lines,
    close: async () => {
      await server.close();
      await ctx.close();
      tmp.remove();
    },
  };
}

/** A response as compared between the two paths: everything but the date. */
async function get(base: string, path: string, requestId = 'req-1') {
  const res = await fetch(`${base}${path}`, { headers: { 'x-request-id': requestId } });
  const headers = Object.fromEntries([...res.headers].filter(([k]) => k !== 'date'));
  return { status: res.status, headers, body: await res.text() };
}

const metric = async (base: string, series: string) =>
  Number(
    (await (await fetch(`${base}/metrics`)).text())
      .split('\n')
      .find((l) => l.startsWith(`${series} `))
      ?.split(' ')
      .pop() ?? 0,
  );

describe('the resolver read fast path and the batch body', () => {
  let h: Hierarchy;
  const clock = new ManualClock(Date.now());
  let r: ResolverServer;
  /** The same, serving stale entries at once within 2 h of expiry (stale-while-revalidate). */
  let swr: ResolverServer;
  let limited: ResolverServer;

  beforeAll(async () => {
    h = await startHierarchy();
    r = await startResolver(h, clock);
    swr = await startResolver(h, clock, { cache: { staleWhileRevalidateSeconds: 7200 } });
    limited = await startResolver(h, clock, { rateLimits: true });
  });
  afterAll(async () => {
    for (const s of [r, swr, limited]) await s?.close();
    await h?.close();
  });

  // Found, not found, not found below the zone (set below: one whose proof carries noCut), encoded, not normalised.
  const PATHS = [
    '/v1/lookup/alice@social.example',
    '/v1/lookup/nobody@social.example',
    '',
    '/v1/lookup/alice%40social.example',
    '/v1/lookup/Alice@Social.Example',
  ];

  it('answers found and not_found with the same bytes and headers as the full application', async () => {
    // A host below social.example whose denial needs a noCut denial (they depend on the zone's salt). A
    // denial lists up to 32 name hashes, so the zone needs more names than that to have several denials.
    for (let i = 0; i < 40; i++) await h.register(`filler${i}@social.example`, 'social.example');
    for (let i = 0; PATHS[2] === '' && i < 100; i++) {
      const res = await fetch(`${h.zones.get('social.example')!.a.url}/v1/resolve/x@n${i}.social.example`);
      if (((await res.json()) as { noCut?: string[] }).noCut?.length) PATHS[2] = `/v1/lookup/x@n${i}.social.example`;
    }
    expect(PATHS[2]).not.toBe('');
    for (const path of PATHS) await get(r.url, `${path}?warm`);
    const lookups = vi.spyOn(r.resolver, 'lookupStored');
    for (const path of PATHS) {
      lookups.mockClear();
      const fast = await get(r.url, path);
      expect(lookups).not.toHaveBeenCalled();
      const full = await get(r.url, `${path}?via=app`);
      expect(lookups).toHaveBeenCalledTimes(1);
      expect(fast).toEqual(full);
      expect(fast.headers['content-type']).toBe('application/json');
      expect(fast.headers['x-request-id']).toBe('req-1');
    }
    lookups.mockRestore();
    const found = await get(r.url, PATHS[0]!);
    expect(found.status).toBe(200);
    expect(found.headers['cache-control']).toBe('public, max-age=3600');
    const missing = await get(r.url, PATHS[1]!);
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body)).toMatchObject({ handle: 'nobody@social.example', status: 'not_found', endpoint: null, keys: null, stale: false });
    // The body is the plain JSON of the documented GET shape.
    for (const name of ['alice@social.example', PATHS[2]!.slice('/v1/lookup/'.length)]) {
      const { handle, status, zone, endpoint, keys, genesis, operatorAsserted, verified, witnessed, anchor, ttl, stale, proof, trace } =
        r.resolver.lookupCached(name)!;
      expect((await get(r.url, `/v1/lookup/${name}`)).body).toBe(
        JSON.stringify({ handle, status, zone, endpoint, keys, genesis, operatorAsserted, verified, witnessed, anchor, ttl, stale, proof, trace }),
      );
    }
    expect(JSON.parse((await get(r.url, PATHS[2]!)).body).proof.noCut).toHaveLength(1);
  });

  it('says what is left of the TTL, in the body and in max-age, as the clock moves', async () => {
    const path = '/v1/lookup/bob@example';
    const first = await get(r.url, path);
    expect(JSON.parse(first.body).ttl).toBe(3600);
    for (const [step, left] of [
      [1500, 3599],
      [0, 3599],
      [500, 3598],
      [HOUR - 2000 - 200, 1],
    ] as const) {
      clock.advance(step);
      const fast = await get(r.url, path);
      expect(JSON.parse(fast.body).ttl).toBe(left);
      expect(fast.headers['cache-control']).toBe(`public, max-age=${left}`);
      expect(fast).toEqual(await get(r.url, `${path}?via=app`));
    }
  });

  it('counts and logs each request as the full application does', async () => {
    const path = '/v1/lookup/carol@news.example';
    await get(r.url, path, 'warm');
    const series = [
      'idns_http_requests_total{route="/v1/lookup/:handle",method="GET",status="200"}',
      'idns_queries_total{role="resolver",outcome="found"}',
      'idns_resolver_cache_total{result="hit"}',
    ];
    const before = await Promise.all(series.map((s) => metric(r.url, s)));
    await get(r.url, path, 'fast-1');
    const afterFast = await Promise.all(series.map((s) => metric(r.url, s)));
    expect(afterFast.map((v, i) => v - before[i]!)).toEqual([1, 1, 1]);
    await get(r.url, `${path}?via=app`, 'full-1');
    const afterFull = await Promise.all(series.map((s) => metric(r.url, s)));
    expect(afterFull.map((v, i) => v - afterFast[i]!)).toEqual([1, 1, 1]);
    const fastLine = r.lines.find((l) => l.reqId === 'fast-1')!;
    const fullLine = r.lines.find((l) => l.reqId === 'full-1')!;
    const { ms: fastMs, reqId: _a, time: _c, ...fastRest } = fastLine;
    const { ms: fullMs, reqId: _b, time: _d, ...fullRest } = fullLine;
    expect(fastRest).toEqual(fullRest);
    expect(fastRest).toMatchObject({ msg: 'request', method: 'GET', route: '/v1/lookup/:handle', status: 200, zone: 'news.example', outcome: 'found' });
    expect(typeof fastMs).toBe('number');
    expect(typeof fullMs).toBe('number');
  });

  it('leaves misses and what the router refuses to the full application, and answers hits with rate limits on', async () => {
    const bad = await get(r.url, '/v1/lookup/not%20a%20handle');
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error.code).toBe('invalid_handle');
    expect((await get(r.url, '/v1/lookup/%E0%A4%A')).status).toBe(400);
    expect((await get(r.url, '/v1/lookup/a/b')).status).toBe(404);
    const lookups = vi.spyOn(r.resolver, 'lookupStored');
    expect((await get(r.url, '/v1/lookup/dave@org')).status).toBe(200);
    expect(lookups).toHaveBeenCalledTimes(1);
    lookups.mockRestore();
    // With rate limits on, a hit is answered by the fast path too (charged there: test/fast-parity.test.ts).
    const limitedLookups = vi.spyOn(limited.resolver, 'lookupStored');
    expect((await get(limited.url, '/v1/lookup/bob@example')).status).toBe(200);
    expect((await get(limited.url, '/v1/lookup/bob@example')).status).toBe(200);
    expect(limitedLookups).toHaveBeenCalledTimes(1);
    limitedLookups.mockRestore();
  });

  it('answers a batch with each chain of proof steps once, and every result verifies from the anchor', async () => {
    const handles = [
      'alice@social.example',
      'carol@news.example',
      'bob@example',
      'nobody@social.example',
      'bad handle',
      'ALICE@social.example',
      'eve@deep.skip.example.org',
      'dave@org',
    ];
    for (const round of ['misses', 'hits']) {
      const res = await fetch(`${r.url}/v1/lookup`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ handles }) });
      expect(res.status, round).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      const text = await res.text();
      const body = JSON.parse(text) as { chains: unknown[]; results: Record<string, unknown>[] };
      expect(Object.keys(body)).toEqual(['chains', 'results']);
      // One chain per zone that answered: social.example, news.example, example, skip.example.org, the root.
      expect(body.chains).toHaveLength(5);
      const rootZoneRecord = (body.chains[0] as { zoneRecord: string }[])[0]!.zoneRecord;
      expect(text.split(rootZoneRecord)).toHaveLength(1 + 5);
      expect(body.results.map((x) => x.handle)).toEqual(handles.map((x) => (x === 'ALICE@social.example' ? 'alice@social.example' : x)));
      expect(body.results[4]).toEqual({ handle: 'bad handle', error: { code: 'invalid_handle', message: expect.any(String) } });
      expect((body.results[0]!.proof as { chain: number }).chain).toBe((body.results[3]!.proof as { chain: number }).chain);
      expect(body.results[5]).toEqual(body.results[0]);
      const now = epochSeconds(clock);
      for (const result of body.results) {
        if ('error' in result) continue;
        const proof = proofFromBatch(body.chains, result.proof);
        const verified = verifyProof(proof, result.handle as string, h.anchors, now);
        expect(verified).toMatchObject({ handle: result.handle, status: result.status, zone: result.zone, endpoint: result.endpoint, keys: result.keys });
        // The same proof as the GET body carries, once the chain is put back in place.
        const single = JSON.parse((await get(r.url, `/v1/lookup/${result.handle as string}`)).body) as Record<string, unknown>;
        expect(proof).toEqual(single.proof);
        const { proof: _p, ...restOfBatch } = result;
        const { proof: _q, ...restOfSingle } = single;
        expect(restOfBatch).toEqual(restOfSingle);
      }
      // A result checked against another zone's chain, or a chain the batch lacks, does not verify.
      const wrong = { ...(body.results[0]!.proof as object), chain: (body.results[1]!.proof as { chain: number }).chain };
      expect(() => verifyProof(proofFromBatch(body.chains, wrong), 'alice@social.example', h.anchors, now)).toThrow(IdnsError);
      expect(() => proofFromBatch(body.chains, { ...wrong, chain: 99 })).toThrow(/chain 99/);
      expect(() => proofFromBatch(body.chains, { ...wrong, chain: '0' })).toThrow(IdnsError);
    }
  });

  it('keeps the batch limits: at most 100 handles, each one charged to the rate limit', async () => {
    const tooMany = await fetch(`${r.url}/v1/lookup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ handles: Array.from({ length: 101 }, (_, i) => `u${i}@example`) }),
    });
    expect(tooMany.status).toBe(400);
    // The limited server allows a burst of 1000 lookups (its clock stands still, so none come back); two
    // went to GETs above. A batch costs exactly its handles: nine of 100 and one of 98 use up the rest, to
    // the lookup, and then a batch of one is refused.
    const batchOf = (n: number) => JSON.stringify({ handles: Array.from({ length: n }, () => 'bob@example') });
    const statuses: number[] = [];
    for (const n of [...Array<number>(9).fill(100), 98, 1])
      statuses.push((await fetch(`${limited.url}/v1/lookup`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: batchOf(n) })).status);
    expect(statuses).toEqual([...Array<number>(10).fill(200), 429]);
  });

  it('serves stale answers alike: at once within stale-while-revalidate, after a failed refresh otherwise', async () => {
    const paths = ['/v1/lookup/alice@social.example', '/v1/lookup/nobody@social.example'];
    for (const path of paths) {
      await get(r.url, `${path}?warm`);
      await get(swr.url, `${path}?warm`);
    }
    // social.example's servers go away; its answers expire.
    const social = h.zones.get('social.example')!;
    await social.a.close();
    await social.b.close();
    rmSync(social.dataDir, { recursive: true, force: true });
    h.zones.delete('social.example');
    clock.advance(HOUR + 1000);

    const lookups = vi.spyOn(swr.resolver, 'lookupStored');
    for (const path of paths) {
      lookups.mockClear();
      const fast = await get(swr.url, path);
      expect(lookups).not.toHaveBeenCalled();
      expect(JSON.parse(fast.body)).toMatchObject({ stale: true, ttl: 0 });
      expect(fast.headers['cache-control']).toBe('public, max-age=0');
      expect(fast).toEqual(await get(swr.url, `${path}?via=app`));
    }
    lookups.mockRestore();
    expect(await metric(swr.url, 'idns_queries_total{role="resolver",outcome="stale"}')).toBe(4);

    // Without stale-while-revalidate the fast path steps aside; the full application serves stale after the refresh fails.
    for (const path of paths) {
      const res = await get(r.url, path);
      expect(res.status).toBe(path.includes('alice') ? 200 : 404);
      expect(JSON.parse(res.body)).toMatchObject({ stale: true, ttl: 0 });
      expect(res.headers['cache-control']).toBe('public, max-age=0');
    }
    expect(await metric(r.url, 'idns_queries_total{role="resolver",outcome="stale"}')).toBe(2);
  });
});
