import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { DEFAULT_CONFIG } from '../src/config.js';
import { AppContext } from '../src/context.js';
import { startServer, type RunningServer } from '../src/http/server.js';
import { HandlesEndpoint } from '../src/http/fast/handles.js';
import { LookupEndpoint } from '../src/http/fast/lookup.js';
import { ResolveEndpoint } from '../src/http/fast/resolve.js';
import { createLogger } from '../src/log.js';
import { IdnsError } from '../src/errors.js';
import { startHierarchy, type Hierarchy, hierarchyResolver } from './support/hierarchy.js';
import { newUserKey } from './support/keys.js';
import { parseExposition, sampleValue } from './support/prometheus.js';
import { tempDir } from './support/server.js';

describe('metrics and request logs', () => {
  const owner = newUserKey();
  const lines: Record<string, unknown>[] = [];
  let h: Hierarchy;
  let ctx: AppContext;
  let server: RunningServer;
  const tmp = tempDir();

  beforeAll(async () => {
    h = await startHierarchy();
    const config = {
      ...structuredClone(DEFAULT_CONFIG),
      dataDir: tmp.dir,
      bootstrap: false,
      resolver: hierarchyResolver(h),
    };
    ctx = new AppContext(
      config,
      undefined,
      createLogger('info', (l) => lines.push(JSON.parse(l) as Record<string, unknown>)),
    );
    server = await startServer(ctx, '127.0.0.1', 0);
    ctx.zones.create('local.test', { servers: [server.url] });
    // This server also holds a secondary copy of social.example.
    const social = h.zones.get('social.example')!;
    ctx.zones.createSecondary('social.example', { primaries: [social.a.url], ds: [social.kid] });
    await ctx.replicator.checkNow('social.example');
  });
  afterAll(async () => {
    await server.close();
    await ctx.close();
    await h.close();
    tmp.remove();
  });

  const metrics = async () => (await fetch(`${server.url}/metrics`)).text();
  const value = (text: string, series: string) =>
    Number(
      text
        .split('\n')
        .find((l) => l.startsWith(`${series} `))
        ?.split(' ')
        .pop() ?? NaN,
    );

  it('counts queries by role and outcome, changes, cache hits and misses, upstream latency, serials and lag', async () => {
    await fetch(`${server.url}/v1/resolve/alice@social.example`);
    await fetch(`${server.url}/v1/resolve/nobody@local.test`);
    await fetch(`${server.url}/v1/resolve/bad handle`);
    await fetch(`${server.url}/v1/lookup/carol@news.example`);
    await fetch(`${server.url}/v1/lookup/carol@news.example`);
    const request = signChangeRequest({ action: 'register', handle: 'x@local.test', endpoint: 'https://h.example/', keys: [owner.public] }, owner.private);
    await fetch(`${server.url}/v1/handles`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request }) });
    await fetch(`${server.url}/v1/handles`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request }) });

    const text = await metrics();
    expect(value(text, 'idns_queries_total{role="authoritative",outcome="answer"}')).toBe(1);
    expect(value(text, 'idns_queries_total{role="authoritative",outcome="denial"}')).toBe(1);
    expect(value(text, 'idns_queries_total{role="authoritative",outcome="invalid_handle"}')).toBe(1);
    expect(value(text, 'idns_queries_total{role="resolver",outcome="found"}')).toBe(2);
    expect(value(text, 'idns_resolver_cache_total{result="miss"}')).toBe(1);
    expect(value(text, 'idns_resolver_cache_total{result="hit"}')).toBe(1);
    expect(value(text, 'idns_resolver_upstream_seconds_count{outcome="ok"}')).toBe(3);
    expect(value(text, 'idns_changes_total{action="register",outcome="accepted"}')).toBe(1);
    expect(value(text, 'idns_changes_total{action="register",outcome="replayed"}')).toBe(1);
    expect(value(text, 'idns_zone_serial{zone="local.test",role="primary"}')).toBe(ctx.zones.info('local.test').serial);
    expect(value(text, 'idns_zone_serial{zone="social.example",role="secondary"}')).toBe(ctx.zones.info('social.example').serial);
    expect(value(text, 'idns_secondary_lag_serials{zone="social.example"}')).toBe(0);
    expect(value(text, 'idns_secondary_seconds_since_check{zone="social.example"}')).toBeGreaterThanOrEqual(0);
    expect(value(text, 'idns_transfers_total{zone="social.example",kind="full"}')).toBe(1);
    expect(value(text, 'idns_transfers_total{zone="social.example",kind="failed"}')).toBe(0);
    expect(value(text, 'idns_notifies_total{result="gave_up"}')).toBe(0);
  });

  it('serves valid Prometheus text in which every cumulative count is a counter named _total', async () => {
    const e = parseExposition(await metrics());
    for (const [name, type] of e.types) {
      // prom-client's own nodejs_active_*_total are gauges (totals of a moment); ours follow the convention both ways.
      if (name.startsWith('idns_') && name.endsWith('_total')) expect(type, name).toBe('counter');
      if (type === 'counter') expect(name, name).toMatch(/_total$/);
    }
    for (const name of [
      'idns_http_requests_total',
      'idns_queries_total',
      'idns_changes_total',
      'idns_http_refused_total',
      'idns_resolver_cache_total',
      'idns_transfers_total',
      'idns_notifies_total',
    ]) {
      expect(e.types.get(name), name).toBe('counter');
    }
    expect(e.types.has('idns_transfers')).toBe(false);
    expect(e.types.has('idns_notifies')).toBe(false);
    expect(e.types.get('idns_http_request_duration_seconds')).toBe('histogram');
    expect(e.types.get('idns_resolver_upstream_seconds')).toBe('histogram');
    expect(e.types.get('idns_resolver_cache_bytes')).toBe('gauge');
  });

  it('times every request by route pattern, on the application and on each fast path', async () => {
    const count = async (route: string, method: string, statusClass: string) =>
      sampleValue(parseExposition(await metrics()), 'idns_http_request_duration_seconds_count', { route, method, status_class: statusClass }) ?? 0;
    const resolveFast = vi.spyOn(ResolveEndpoint.prototype, 'answer');
    const lookupFast = vi.spyOn(LookupEndpoint.prototype, 'answer');
    const handlesFast = vi.spyOn(HandlesEndpoint.prototype, 'answer');
    const before = {
      zones: await count('/v1/zones/:zone', 'GET', '2xx'),
      resolve: await count('/v1/resolve/:handle', 'GET', '2xx'),
      lookup: await count('/v1/lookup/:handle', 'GET', '2xx'),
      register: await count('/v1/handles', 'POST', '4xx'),
    };
    expect((await fetch(`${server.url}/v1/zones/local.test`)).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await fetch(`${server.url}/v1/resolve/x@local.test`)).status).toBe(200);
    expect((await fetch(`${server.url}/v1/lookup/carol@news.example`)).status).toBe(200);
    const bad = await fetch(`${server.url}/v1/handles`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"request":"x"}' });
    expect(bad.status).toBe(400);
    // Each of these went where the test says: the fast paths took theirs, the zone read went to the application.
    expect(resolveFast.mock.results.filter((r) => r.value !== null)).toHaveLength(3);
    expect(lookupFast.mock.results.filter((r) => r.value !== null)).toHaveLength(1);
    expect(handlesFast.mock.results).toHaveLength(1);
    resolveFast.mockRestore();
    lookupFast.mockRestore();
    handlesFast.mockRestore();
    expect((await count('/v1/zones/:zone', 'GET', '2xx')) - before.zones).toBe(1);
    expect((await count('/v1/resolve/:handle', 'GET', '2xx')) - before.resolve).toBe(3);
    expect((await count('/v1/lookup/:handle', 'GET', '2xx')) - before.lookup).toBe(1);
    expect((await count('/v1/handles', 'POST', '4xx')) - before.register).toBe(1);
    // The durations are plausible: positive and under the request timeout.
    const e = parseExposition(await metrics());
    const sum = sampleValue(e, 'idns_http_request_duration_seconds_sum', { route: '/v1/resolve/:handle', method: 'GET', status_class: '2xx' })!;
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(ctx.config.limits.requestTimeoutMs / 1000);
  });

  it('reports the build and the process and Node.js metrics', async () => {
    const e = parseExposition(await metrics());
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(sampleValue(e, 'idns_build_info', { version: pkg.version, node: process.version })).toBe(1);
    expect(e.types.get('process_cpu_seconds_total')).toBe('counter');
    expect(sampleValue(e, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(e.types.get('nodejs_heap_size_total_bytes')).toBe('gauge');
    expect(sampleValue(e, 'nodejs_heap_size_total_bytes')).toBeGreaterThan(0);
    expect(e.types.get('nodejs_eventloop_lag_seconds')).toBe('gauge');
  });

  it("reports the seconds until each zone's earliest signature expires", async () => {
    const expiry = async (zone: string) => sampleValue(parseExposition(await metrics()), 'idns_zone_signature_expiry_seconds', { zone });
    const validity = ctx.zones.settings(ctx.zones.require('local.test')).signatureValidity;
    const primary = (await expiry('local.test'))!;
    expect(primary).toBeGreaterThan(0);
    expect(primary).toBeLessThanOrEqual(validity);
    const secondary = (await expiry('social.example'))!;
    expect(secondary).toBeGreaterThan(0);
    expect(secondary).toBeLessThanOrEqual(21 * 86_400);
    // The earliest of the primary's records counts, not only its zone record.
    const [record] = ctx.store.records.expiringBefore('local.test', 2 ** 32, 1);
    const now = Math.floor(ctx.clock.now() / 1000);
    ctx.store.records.setExp('local.test', record!.type, record!.key, now + 1000);
    try {
      expect(Math.abs((await expiry('local.test'))! - 1000)).toBeLessThanOrEqual(2);
    } finally {
      ctx.store.records.setExp('local.test', record!.type, record!.key, record!.exp);
    }
  });

  it('never takes a label value from raw input', async () => {
    const marker = `zz${Date.now()}`;
    await fetch(`${server.url}/v1/resolve/${marker}@nowhere.${marker}`);
    await fetch(`${server.url}/v1/zones/${marker}`);
    await fetch(`${server.url}/${marker}`);
    expect(await metrics()).not.toContain(marker);
  });

  it('logs one JSON line per request with a request id, the client address, route, status, duration, zone and outcome', async () => {
    lines.length = 0;
    const res = await fetch(`${server.url}/v1/resolve/nobody@local.test`, { headers: { 'x-request-id': 'trace-123' } });
    expect(res.headers.get('x-request-id')).toBe('trace-123');
    const mine = await fetch(`${server.url}/v1/resolve/x@local.test`);
    const generated = mine.headers.get('x-request-id')!;
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);
    await new Promise((r) => setTimeout(r, 50));
    const requests = lines.filter((l) => l.msg === 'request');
    expect(requests).toHaveLength(2);
    expect(requests[0]).toMatchObject({
      level: 'info',
      reqId: 'trace-123',
      client: '127.0.0.1',
      method: 'GET',
      route: '/v1/resolve/:handle',
      status: 404,
      zone: 'local.test',
      outcome: 'denial',
    });
    expect(requests[1]).toMatchObject({ reqId: generated, status: 200, outcome: 'answer' });
    expect(typeof requests[0]!.ms).toBe('number');
    expect(typeof requests[0]!.time).toBe('string');
    // A hostile request id is replaced, not logged.
    const hostile = await fetch(`${server.url}/healthz`, { headers: { 'x-request-id': 'a"b\\nc' } });
    expect(hostile.headers.get('x-request-id')).not.toContain('"');
  });
});

describe('error log lines', () => {
  it('give an expected (typed) failure as its code and message, without a stack; anything else with its stack', () => {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger('info', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
    log.warn('zone check failed', { err: new IdnsError('network_error', 'GET http://127.0.0.1:1/x: connect ECONNREFUSED', { cause: new Error('deep') }) });
    log.error('unexpected', { err: new TypeError('a bug') });
    expect(lines[0]!.err).toEqual({ type: 'IdnsError', code: 'network_error', message: 'GET http://127.0.0.1:1/x: connect ECONNREFUSED' });
    expect((lines[1]!.err as { stack?: string }).stack).toMatch(/TypeError: a bug/);
  });
});
