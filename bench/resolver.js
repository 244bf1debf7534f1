// Targets of the resolver side: 3 (a cold three-hop lookup), 8 (the cache's memory) and 2 (cache hits
// over HTTP, in batches, and in-process), on a hierarchy root → example → social.example, each zone
// served by its own process.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  baselineOf,
  bodiesFile,
  fmt,
  freePort,
  gcNodeFlags,
  http,
  idns,
  importFile,
  loadInterleaved,
  loadJobs,
  log,
  median,
  memoryAfterGc,
  PRODUCTION_HOST,
  PRODUCTION_LABEL,
  productionServeArgs,
  rss,
  serve,
  stop,
  tmp,
} from './lib.js';

/** The three zones, delegated, social.example holding `count` handles u0…; every server started. */
async function hierarchy(count, pub) {
  const hier = {};
  await Promise.all(
    ['.', 'example', 'social.example'].map(async (zone) => {
      const dir = tmp('zone');
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const kid = JSON.parse(await idns('zone', 'create', zone, '--server-url', url, '--data', dir, '--json')).keyThumbprints[0];
      hier[zone] = { dir, port, url, kid };
    }),
  );
  const social = hier['social.example'];
  await Promise.all([
    idns('zone', 'delegate', '.', 'example', '--server-url', hier.example.url, '--ds', hier.example.kid, '--data', hier['.'].dir),
    idns('zone', 'delegate', 'example', 'social.example', '--server-url', social.url, '--ds', social.kid, '--data', hier.example.dir),
    idns('zone', 'import', 'social.example', importFile('social.example', 'u', count, pub), '--data', social.dir),
  ]);
  await Promise.all(Object.values(hier).map((z) => serve(z.dir, `127.0.0.1:${z.port}`)));
  return hier;
}

/** A resolver server anchored at the root, on loopback or on `host`; resolves to { url, proc }. */
async function resolverServer(hier, extra = [], node = [], host = '127.0.0.1') {
  const port = await freePort();
  const proc = await serve(tmp('resolver'), `${host}:${port}`, ['--root', hier['.'].url, '--anchor', `.=${hier['.'].kid}`, '--allow-private', ...extra], node);
  return { url: `http://127.0.0.1:${port}`, proc };
}

/**
 * Looks handles up through POST /v1/lookup, 100 a request, `parallel` requests at a time; throws on any
 * failed handle. The first handle goes alone: a cold resolver would otherwise walk the hierarchy once
 * for every handle in flight, and time out on the parent zones' servers.
 */
async function lookupAll(url, handles, parallel = 2) {
  const send = async (batch) => {
    const r = await http(`${url}/v1/lookup`, { method: 'POST', json: { handles: batch } });
    const failed = r.status === 200 ? r.body.results.find((x) => x.error) : r.body;
    if (failed) throw new Error(`lookup on ${url}: ${r.status} ${JSON.stringify(failed).slice(0, 300)}`);
  };
  await send(handles.slice(0, 1));
  let next = 1;
  const worker = async () => {
    while (next < handles.length) {
      const from = next;
      next += 100;
      await send(handles.slice(from, from + 100));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

/** The resolver's cache counters from /metrics: { hit, miss, stale, entries }. */
async function cacheCounters(url) {
  const text = (await http(`${url}/metrics`)).body;
  const value = (re) => Number(re.exec(text)?.[1] ?? 0);
  return {
    hit: value(/^idns_resolver_cache_total\{result="hit"\} (\S+)/m),
    miss: value(/^idns_resolver_cache_total\{result="miss"\} (\S+)/m),
    stale: value(/^idns_resolver_cache_total\{result="stale"\} (\S+)/m),
    entries: value(/^idns_resolver_cache_entries (\S+)/m),
  };
}

export async function resolverTargets(ctx) {
  const { opts, rows, pub } = ctx;
  const want = (t) => opts.only.has(t);
  // social.example holds what target 8 caches; the other targets use its first 2,000 handles.
  log('root → example → social.example');
  const hier = await hierarchy(Math.max(2000, want(8) ? opts.cachedHandles : 0), pub);
  const social = hier['social.example'];

  // 3. A cold lookup through root → example → social.example, against one authoritative round trip.
  if (want(3)) {
    log('cold lookups');
    const colds = [];
    const direct = [];
    for (let i = 0; i < opts.coldLookups; i++) {
      const r = ctx.createResolver({ trustAnchors: { '.': [hier['.'].kid] }, rootServers: [hier['.'].url], allowPrivate: true });
      let t = performance.now();
      await r.lookup(`u${i}@social.example`);
      colds.push(performance.now() - t);
      await r.close();
      t = performance.now();
      await (await fetch(`${social.url}/v1/resolve/u${(i + 1000) % 2000}@social.example?zone=social.example`)).text();
      direct.push(performance.now() - t);
    }
    const [cold, oneTrip] = [median(colds), median(direct)];
    rows.add({
      target: 3,
      id: 'cold',
      name: 'cold lookup root → example → social.example (fresh resolver each time)',
      figure: `p50 ${cold.toFixed(2)} ms`,
      baseline: `one authoritative round trip p50 ${oneTrip.toFixed(2)} ms`,
      ratio: `${(cold / oneTrip).toFixed(1)}×`,
      goal: '≤ 5×',
      met: cold / oneTrip <= 5,
      compare: { ratio: { value: cold / oneTrip, better: 'lower' } },
    });
  }

  // 8. The cache's memory: a fresh resolver's RSS before and after looking up N distinct handles, with a
  // second pass checking (by the cache counters) that every one of them is held.
  if (want(8)) {
    log('resolver cache memory');
    const N = opts.cachedHandles;
    const handles = Array.from({ length: N }, (_, i) => `u${i}@social.example`);
    // The default cache.maxEntries (100,000) counts the zone cuts too, so it holds slightly fewer than
    // 100,000 handles, and a second pass in order would then miss every time (LRU): give it room.
    const config = join(tmp('config'), 'idns.json');
    // A long request timeout: filling the cache is not what is timed, and a loaded machine answers slowly.
    writeFileSync(config, JSON.stringify({ resolver: { cache: { maxEntries: 2 * N }, limits: { requestTimeoutMs: 30_000 } } }));
    const resolver = await resolverServer(hier, ['--config', config], gcNodeFlags);
    // "Empty": after its first 100 lookups, so that the code has run and its connections are open.
    await lookupAll(resolver.url, handles.slice(0, 100));
    const empty = await memoryAfterGc(resolver.proc);
    await lookupAll(resolver.url, handles);
    const before = await cacheCounters(resolver.url);
    await lookupAll(resolver.url, handles);
    const after = await cacheCounters(resolver.url);
    const full = await memoryAfterGc(resolver.proc);
    const peak = rss(resolver.proc.child.pid, 'VmHWM');
    const allHits = after.hit - before.hit >= N && after.miss === before.miss && after.stale === before.stale;
    const grown = full.rss - empty.rss;
    // The live heap is what the cache holds; RSS adds what V8 keeps mapped once its heap has grown, which
    // on a few thousand handles is most of the difference, so the quick mode extrapolates the live heap.
    const perHandleKb = ((full.live - empty.live) * 1024) / (N - 100);
    const at100k = N >= 100_000 ? grown : (perHandleKb * 100_000) / 1024;
    rows.add({
      target: 8,
      id: 'cache-memory',
      name: `resolver cache holding ${fmt(N)} handles (cache.maxEntries ${fmt(2 * N)}), RSS above the empty resolver`,
      figure: `${Math.round(grown)} MB (${Math.round(empty.rss)} → ${Math.round(full.rss)} MB after a full GC; live heap ${perHandleKb.toFixed(1)} kB a handle${N >= 100_000 ? '' : `, so ~${fmt(at100k)} MB for 100,000`}; peak RSS ${Math.round(peak)} MB); second pass ${allHits ? 'all hits' : `NOT all hits (${after.hit - before.hit} hits, ${after.miss - before.miss} misses)`}, ${fmt(after.entries)} entries`,
      goal: N >= 100_000 ? '≤ 200 MB' : '≤ 200 MB for 100,000 handles (here: the live heap, extrapolated)',
      met: at100k <= 200 && allHits,
      compare: { 'live kB a handle': { value: perHandleKb, better: 'lower', slack: 0.2 } },
    });
    await stop(resolver.proc);
  }

  if (!want(2)) return;
  // 2. The resolver role over HTTP on cache hits (single and batch), against the baseline: as operators
  // run it (public address, limits on), the headline, then on loopback beside it.
  const hot = Array.from({ length: opts.quick ? 1000 : 2000 }, (_, i) => `u${i}@social.example`);
  const batchBodies = Array.from({ length: 200 }, (_, b) =>
    JSON.stringify({ handles: Array.from({ length: 100 }, (_, i) => hot[(b * 100 + i) % hot.length]) }),
  );
  const batchFile = bodiesFile(batchBodies);
  const lookups = async (resolver, suffix, how) => {
    log(`resolver cache hits (${how})`);
    await lookupAll(resolver.url, hot);
    const lookupPaths = hot.map((h) => `/v1/lookup/${h}`);
    const lookupSample = (await http(`${resolver.url}${lookupPaths[0]}`)).body;
    const lookupBase = await baselineOf(JSON.stringify(lookupSample).length);
    const { ours: lk, base: lkb } = await loadInterleaved(
      opts.runs,
      { url: resolver.url, paths: lookupPaths, duration: opts.duration },
      { url: lookupBase, paths: ['/'], duration: opts.duration },
    );
    const [lrps, lbrps] = [median(lk.map((o) => o.rps)), median(lkb.map((o) => o.rps))];
    const failed = lk.reduce((k, o) => k + o.errors + o.non2xx, 0);
    rows.add({
      target: 2,
      id: `lookup${suffix}`,
      name: `resolver GET /v1/lookup, all cache hits, ${how}`,
      figure: `${Math.round(lrps)} req/s (errors ${failed})`,
      baseline: `${Math.round(lbrps)} req/s`,
      ratio: (lrps / lbrps).toFixed(2),
      goal: '≥ 0.6',
      met: lrps / lbrps >= 0.6 && failed === 0,
      compare: { ratio: { value: lrps / lbrps, better: 'higher' } },
    });
    const batchJob = { url: resolver.url, paths: ['/v1/lookup'], method: 'POST', bodiesFile: batchFile, repeat: true, duration: opts.duration };
    const batches = await loadJobs(Array.from({ length: opts.runs }, () => batchJob));
    const batch = median(batches.map((b) => b.rps)) * 100;
    const batchFailed = batches.reduce((k, o) => k + o.errors + o.non2xx, 0);
    rows.add({
      target: 2,
      id: `batch${suffix}`,
      name: `resolver POST /v1/lookup, 100 handles per request, cache hits, ${how}`,
      figure: `${fmt(batch)} handles/s (errors ${batchFailed})`,
      goal: '≥ 100,000 handles/s',
      met: batch >= 100_000 && batchFailed === 0,
      compare: { 'handles/s': { value: batch, better: 'higher' } },
    });
    await stop(resolver.proc);
  };
  await lookups(await resolverServer(hier, await productionServeArgs(), [], PRODUCTION_HOST), '-production', PRODUCTION_LABEL);
  await lookups(await resolverServer(hier), '', 'loopback (limits off)');

  // 2. The library's resolve() on cache hits, in-process (anchored at social.example: one hop).
  log('library cache hits');
  const lib = ctx.createResolver({ trustAnchors: { 'social.example': [social.kid] }, rootServers: [social.url], allowPrivate: true });
  const libHot = hot.slice(0, 1000);
  for (const h of libHot) await lib.resolve(h);
  let n = 0;
  const t1 = performance.now();
  while (performance.now() - t1 < 2000) {
    for (let i = 0; i < 1000; i++) await lib.resolve(libHot[(n + i) % 1000]);
    n += 1000;
  }
  const hitsPerS = n / ((performance.now() - t1) / 1000);
  await lib.close();
  rows.add({
    target: 2,
    id: 'library',
    name: 'library resolve() on cache hits, in-process',
    figure: `${fmt(hitsPerS)} lookups/s`,
    goal: '≥ 500,000/s',
    met: hitsPerS >= 500_000,
    compare: { 'lookups/s': { value: hitsPerS, better: 'higher' } },
  });
}
