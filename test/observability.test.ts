import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { DEFAULT_CONFIG } from '../src/config.js';
import { AppContext } from '../src/context.js';
import { startServer, type RunningServer } from '../src/http/server.js';
import { createLogger } from '../src/log.js';
import { startHierarchy, type Hierarchy } from './support/hierarchy.js';
import { newUserKey } from './support/keys.js';
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
      resolver: { rootServers: h.rootServers, forwarders: [], discovery: null, webfinger: false, anchors: { '.': [h.anchors.get('.')![0]!] }, allowPrivate: true, cache: {}, limits: {} },
    };
    ctx = new AppContext(config, undefined, createLogger('info', (l) => lines.push(JSON.parse(l) as Record<string, unknown>)));
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
  const value = (text: string, series: string) => Number(text.split('\n').find((l) => l.startsWith(`${series} `))?.split(' ').pop() ?? NaN);

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
    expect(value(text, 'idns_transfers{zone="social.example",kind="full"}')).toBe(1);
  });

  it('never takes a label value from raw input', async () => {
    const marker = `zz${Date.now()}`;
    await fetch(`${server.url}/v1/resolve/${marker}@nowhere.${marker}`);
    await fetch(`${server.url}/v1/zones/${marker}`);
    await fetch(`${server.url}/${marker}`);
    expect(await metrics()).not.toContain(marker);
  });

  it('logs one JSON line per request with a request id, route, status, duration, zone and outcome', async () => {
    lines.length = 0;
    const res = await fetch(`${server.url}/v1/resolve/nobody@local.test`, { headers: { 'x-request-id': 'trace-123' } });
    expect(res.headers.get('x-request-id')).toBe('trace-123');
    const mine = await fetch(`${server.url}/v1/resolve/x@local.test`);
    const generated = mine.headers.get('x-request-id')!;
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);
    await new Promise((r) => setTimeout(r, 50));
    const requests = lines.filter((l) => l.msg === 'request');
    expect(requests).toHaveLength(2);
    expect(requests[0]).toMatchObject({ level: 'info', reqId: 'trace-123', method: 'GET', route: '/v1/resolve/:handle', status: 404, zone: 'local.test', outcome: 'denial' });
    expect(requests[1]).toMatchObject({ reqId: generated, status: 200, outcome: 'answer' });
    expect(typeof requests[0]!.ms).toBe('number');
    expect(typeof requests[0]!.time).toBe('string');
    // A hostile request id is replaced, not logged.
    const hostile = await fetch(`${server.url}/healthz`, { headers: { 'x-request-id': 'a"b\\nc' } });
    expect(hostile.headers.get('x-request-id')).not.toContain('"');
  });
});
