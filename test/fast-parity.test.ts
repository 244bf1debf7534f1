import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { ManualClock } from '../src/clock.js';
import { DEFAULT_CONFIG, DEFAULT_RATE_LIMITS, type ServerConfig } from '../src/config.js';
import { AppContext } from '../src/context.js';
import { createApp } from '../src/http/app.js';
import { FastPaths } from '../src/http/fast/dispatch.js';
import { appChain, assertMirrored, FAST_ROUTES } from '../src/http/fast/routes.js';
import { startServer, type RunningServer } from '../src/http/server.js';
import { createLogger } from '../src/log.js';
import { keepAlive, send, type Exchange, type ParityRequest, type ParityRow } from './support/fast-parity.js';
import { startHierarchy, type Hierarchy, hierarchyResolver } from './support/hierarchy.js';
import { newUserKey } from './support/keys.js';
import { parseExposition } from './support/prometheus.js';
import { tempDir } from './support/server.js';

type Line = Record<string, unknown>;
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const BURST = 3;

/**
 * Every behaviour the application has for the fast endpoints, on both paths: one context, two servers
 * over it, one with the fast paths and one without (startServer's `fastPaths: false`), rate limits on.
 */
describe('the fast paths and the application answer alike', () => {
  let h: Hierarchy;
  let ctx: AppContext;
  let fast: RunningServer;
  let app: RunningServer;
  let remove: () => void;
  const lines: Line[] = [];
  const owner = newUserKey();
  const clock = new ManualClock(Date.now());
  let etag = '';
  let boundEtag = '';

  beforeAll(async () => {
    h = await startHierarchy();
    const tmp = tempDir();
    remove = tmp.remove;
    const config: ServerConfig = {
      ...structuredClone(DEFAULT_CONFIG),
      dataDir: tmp.dir,
      bootstrap: false,
      limits: { ...DEFAULT_CONFIG.limits, bodyBytes: 4096 },
      resolver: hierarchyResolver(h, { cache: { prefetch: false }, limits: { requestTimeoutMs: 500 } }),
      rateLimits: {
        ...DEFAULT_RATE_LIMITS,
        enabled: true,
        lookups: { rate: 1, per: 3600, burst: BURST },
        writes: { rate: 1, per: 3600, burst: BURST },
        changesPerHandle: { rate: 100, per: 1, burst: 100 },
      },
    };
    ctx = new AppContext(
      config,
      clock,
      createLogger('info', (l) => lines.push(JSON.parse(l) as Line)),
    );
    fast = await startServer(ctx, '127.0.0.1', 0);
    app = await startServer(ctx, '127.0.0.1', 0, { fastPaths: false });
    ctx.zones.create('example', { servers: [fast.url] });
    await ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: 'alice@example', endpoint: 'https://h.example/a', keys: [owner.public] }, owner.private, clock),
    );
    ctx.zones.delegate('example', 'child.example', { servers: ['https://child.example.test'], ds: ['A'.repeat(43)] });
    etag = (await fetch(`${app.url}/v1/resolve/alice@example`, { headers: { 'x-request-id': 'setup' } })).headers.get('etag')!;
    // From an address of its own: the setup's others take the lookup limit's whole burst.
    const agent = keepAlive();
    boundEtag = (await send(app.url, '127.0.3.1', get('/v1/resolve/alice@example?log=1'), agent)).headers.etag as string;
    agent.destroy();
    expect(boundEtag).not.toBe(etag);
    // Resolver cache hits for the lookup rows.
    for (const path of ['/v1/lookup/alice@social.example', '/v1/lookup/nobody@social.example'])
      expect((await fetch(`${app.url}${path}`)).status).toBeLessThan(500);
  });
  afterAll(async () => {
    await fast?.close();
    await app?.close();
    await ctx?.close();
    remove?.();
    await h?.close();
  });

  const registration = (handle: string) =>
    JSON.stringify({
      request: signChangeRequest({ action: 'register', handle, endpoint: `https://h.example/${handle}`, keys: [owner.public] }, owner.private, clock),
    });
  const post = (body: string, extra: Partial<ParityRequest> = {}): ParityRequest => ({
    method: 'POST',
    path: '/v1/handles',
    headers: { 'content-type': 'application/json', 'x-request-id': 'r-1' },
    body,
    ...extra,
  });
  const batch = (handles: string[] | string, extra: Partial<ParityRequest> = {}): ParityRequest =>
    post(typeof handles === 'string' ? handles : JSON.stringify({ handles }), { path: '/v1/lookup', ...extra });
  const get = (path: string, headers: Record<string, string | string[]> = {}): ParityRequest => ({ path, headers: { 'x-request-id': 'r-1', ...headers } });
  const times = (n: number, r: ParityRequest) => Array.from({ length: n }, () => r);

  // The one table: each behaviour of the application for the fast endpoints.
  const ROWS: ParityRow[] = [
    { name: 'an answer', requests: [get('/v1/resolve/alice@example')], fast: true },
    { name: 'an answer, percent-encoded and not in normal form', requests: [get('/v1/resolve/ALICE%40Example')], fast: true },
    { name: 'a denial', requests: [get('/v1/resolve/nobody@example')], fast: true },
    { name: 'a referral', requests: [get('/v1/resolve/dave@child.example')], fast: true },
    { name: 'an invalid handle (error mapping)', requests: [get('/v1/resolve/not%20a%20handle')], fast: true },
    { name: 'a zone not held here (error mapping)', requests: [get('/v1/resolve/a@elsewhere.test')], fast: true },
    { name: 'If-None-Match naming the ETag: 304', requests: [get('/v1/resolve/alice@example', { 'if-none-match': '' })], fast: true },
    { name: 'If-None-Match: * : 304', requests: [get('/v1/resolve/alice@example', { 'if-none-match': '*' })], fast: true },
    {
      name: 'If-None-Match repeated, one naming the ETag: 304',
      requests: [get('/v1/resolve/alice@example', { 'if-none-match': ['"other"', ''] })],
      fast: true,
    },
    { name: 'If-None-Match naming another ETag: 200', requests: [get('/v1/resolve/alice@example', { 'if-none-match': '"other"' })], fast: true },
    { name: 'no X-Request-Id: a new one', requests: [{ path: '/v1/resolve/alice@example' }], fast: true },
    { name: 'an X-Request-Id that is not sane: a new one', requests: [get('/v1/resolve/alice@example', { 'x-request-id': 'a b' })], fast: true },
    { name: 'X-Request-Id repeated: a new one', requests: [get('/v1/resolve/alice@example', { 'x-request-id': ['r-1', 'r-2'] })], fast: true },
    { name: 'the lookup limit: 429 with Retry-After', requests: times(BURST + 1, get('/v1/resolve/alice@example')), fast: true },
    { name: 'the lookup limit, on errors too', requests: times(BURST + 1, get('/v1/resolve/not%20a%20handle')), fast: true },
    { name: 'a malformed escape, handed to the application and charged once', requests: times(BURST + 1, get('/v1/resolve/%E0%A4%A')), fast: true },
    { name: 'a query string (?zone=) goes to the application', requests: [get('/v1/resolve/alice@example?zone=example')], fast: false },
    { name: 'an answer bound to the log (?log=1)', requests: [get('/v1/resolve/alice@example?log=1')], fast: true },
    { name: 'an answer bound to the log, percent-encoded', requests: [get('/v1/resolve/ALICE%40Example?log=1')], fast: true },
    { name: 'a denial bound to the log', requests: [get('/v1/resolve/nobody@example?log=1')], fast: true },
    { name: 'a referral bound to the log', requests: [get('/v1/resolve/dave@child.example?log=1')], fast: true },
    { name: 'bound to the log, a zone not held here (error mapping)', requests: [get('/v1/resolve/a@elsewhere.test?log=1')], fast: true },
    { name: 'If-None-Match naming the bound ETag: 304', requests: [get('/v1/resolve/alice@example?log=1', { 'if-none-match': '<bound>' })], fast: true },
    {
      name: 'If-None-Match naming the unbound ETag, bound to the log: 200',
      requests: [get('/v1/resolve/alice@example?log=1', { 'if-none-match': '' })],
      fast: true,
    },
    { name: 'the lookup limit, bound to the log', requests: times(BURST + 1, get('/v1/resolve/alice@example?log=1')), fast: true },
    { name: 'log=1 with another query goes to the application', requests: [get('/v1/resolve/alice@example?zone=example&log=1')], fast: false },
    { name: 'log=2 goes to the application (invalid_request)', requests: [get('/v1/resolve/alice@example?log=2')], fast: false },
    { name: 'HEAD goes to the application', requests: [{ ...get('/v1/resolve/alice@example'), method: 'HEAD' }], fast: false },
    { name: 'a GET with a body goes to the application', requests: [{ ...get('/v1/resolve/alice@example'), body: 'x'.repeat(5000) }], fast: false },
    { name: 'a path of two segments is not the endpoint', requests: [get('/v1/resolve/a/b')], fast: false },
    { name: 'a resolver cache hit', requests: [get('/v1/lookup/alice@social.example')], fast: true },
    { name: 'a resolver cache hit, not found', requests: [get('/v1/lookup/nobody@social.example')], fast: true },
    { name: 'a lookup of an invalid handle (error mapping)', requests: [get('/v1/lookup/not%20a%20handle')], fast: true },
    { name: 'the lookup limit on the resolver', requests: times(BURST + 1, get('/v1/lookup/alice@social.example')), fast: true },
    {
      name: 'a batch of lookups: hits, a denial and an invalid handle',
      requests: [batch(['alice@social.example', 'nobody@social.example', 'not a handle'])],
      fast: true,
    },
    {
      name: 'a batch costs one lookup a handle: the limit reached inside a batch',
      requests: times(2, batch(['alice@social.example', 'alice@social.example'])),
      fast: true,
    },
    { name: 'a batch body that is not JSON', requests: [batch('{"handles": ')], fast: true },
    { name: 'a batch of the wrong form', requests: [batch('{"handles": []}')], fast: true },
    { name: 'a batch body over the limit: 413', requests: [batch(JSON.stringify({ handles: Array.from({ length: 100 }, () => 'x'.repeat(50)) }))], fast: true },
    { name: 'a chunked batch goes to the application', requests: [batch(['alice@social.example'], { chunked: true })], fast: false },
    {
      name: 'a registration',
      // A handle of the same length for each side, so that lengths match too.
      requests: (side) => [post(registration(`${side === 'fast' ? 'fast' : 'appx'}@example`))],
      fast: true,
      // The handles differ, and so what depends on them: the signed record, the operation's id, the serial.
      normalise: (t) =>
        t
          .replace(/\b(fast|appx)@example/g, 'X@example')
          .replace(/\\"(op|record)\\":\\"[^"\\]*\\"/g, '$1')
          .replace(/\\"serial\\":\d+/g, 'serial'),
    },
    { name: 'a body that is not JSON', requests: [post('{"request": ')], fast: true },
    { name: 'a body of the wrong form', requests: [post('[1]')], fast: true },
    {
      name: 'a bad signature',
      requests: [
        post(
          JSON.stringify({
            request: signChangeRequest(
              { action: 'register', handle: 'sig@example', endpoint: 'https://h.example/s', keys: [owner.public] },
              newUserKey().private,
              clock,
            ),
          }),
        ),
      ],
      fast: true,
    },
    { name: 'a handle already registered', requests: [post(registration('alice@example'))], fast: true },
    { name: 'a body over the limit: 413', requests: [post(JSON.stringify({ request: 'x'.repeat(5000) }))], fast: true },
    { name: 'the write limit: 429 with Retry-After', requests: times(BURST + 1, post('{"request": ')), fast: true },
    { name: 'a chunked body goes to the application', requests: [post('{"request": "x"}', { chunked: true })], fast: false },
  ];

  /** The request and query counters and the duration counts, by series. */
  const counters = async (): Promise<Map<string, number>> => {
    const e = parseExposition(await (await fetch(`${app.url}/metrics`)).text());
    const m = new Map<string, number>();
    for (const s of e.samples) {
      if (!/^idns_.*(_total|_count)$/.test(s.name) || s.labels.route === '/metrics') continue;
      m.set(`${s.name}${JSON.stringify(s.labels)}`, s.value);
    }
    return m;
  };
  const delta = (a: Map<string, number>, b: Map<string, number>) =>
    Object.fromEntries([...b].filter(([k, v]) => v !== (a.get(k) ?? 0)).map(([k, v]) => [k, v - (a.get(k) ?? 0)]));

  let row = 0;
  /** Sends a row to one server and records what the client, the log and the metrics saw. */
  async function run(
    r: ParityRow,
    side: 'fast' | 'app',
  ): Promise<{ exchanges: Exchange[]; logs: Line[]; metrics: Record<string, number>; tookFast: boolean[] }> {
    const base = side === 'fast' ? fast.url : app.url;
    // Its own client address: a fresh bucket per row and side.
    const address = `127.0.${side === 'fast' ? 1 : 2}.${++row}`;
    const requests = typeof r.requests === 'function' ? r.requests(side) : r.requests;
    const exchanges: Exchange[] = [];
    const logs: Line[] = [];
    const metrics: Record<string, number>[] = [];
    const spy = vi.spyOn(FastPaths.prototype, 'handle');
    const agent = keepAlive();
    for (const q of requests) {
      const request = q.headers?.['if-none-match'] !== undefined ? { ...q, headers: { ...q.headers, 'if-none-match': fill(q.headers['if-none-match']) } } : q;
      const before = await counters();
      lines.length = 0;
      exchanges.push(await send(base, address, request, agent));
      for (const l of lines) if (l.msg === 'request') expect(l.client, 'the client address in the request log line').toBe(address);
      // Each side has its own client address (its own rate-limit buckets): compared apart, above.
      logs.push(...lines.filter((l) => l.msg === 'request' || l.level !== 'info').map(({ time: _t, ms: _m, client: _c, ...rest }) => rest));
      metrics.push(delta(before, await counters()));
    }
    agent.destroy();
    const tookFast = spy.mock.results.map((x) => x.value as boolean);
    spy.mockRestore();
    const norm = (v: unknown) => JSON.parse((r.normalise ?? ((t: string) => t))(JSON.stringify(v)).replace(UUID, '<uuid>')) as unknown;
    return {
      exchanges: norm(exchanges) as Exchange[],
      logs: norm(logs) as Line[],
      metrics: Object.assign({}, ...metrics.map((m, i) => ({ [i]: m }))),
      tookFast,
    };
  }
  // '' stands for the answer's ETag, '<bound>' for the ETag of the answer bound to the log.
  const tag = (x: string) => (x === '' ? etag : x === '<bound>' ? boundEtag : x);
  const fill = (v: string | string[]) => (Array.isArray(v) ? v.map(tag) : tag(v));

  it.each(ROWS.map((r) => [r.name, r] as const))('%s', async (_, r) => {
    const a = await run(r, 'fast');
    const b = await run(r, 'app');
    // Where each request went: the application's server never uses the fast paths.
    expect(b.tookFast).toEqual([]);
    expect(a.tookFast.at(-1)).toBe(r.fast);
    expect(a.exchanges).toEqual(b.exchanges);
    expect(a.logs).toEqual(b.logs);
    expect(a.metrics).toEqual(b.metrics);
    // The rows say something: each request was logged and counted.
    expect(a.logs.filter((l) => l.msg === 'request')).toHaveLength(a.exchanges.length);
    expect(Object.keys(a.metrics)).toHaveLength(a.exchanges.length);
    if (r.name.includes('limit') && !r.name.includes('over the limit')) {
      const last = a.exchanges.at(-1)!;
      expect(last.status).toBe(429);
      expect(last.headers['retry-after']).toMatch(/^\d+$/);
      expect(JSON.parse(last.body)).toMatchObject({ error: { code: 'rate_limited' } });
      expect(a.exchanges.slice(0, -1).every((e) => e.status !== 429)).toBe(true);
    }
  });
});

describe('a middleware added to the application', () => {
  it('stops the server from starting until the fast paths mirror it', async () => {
    const tmp = tempDir();
    const ctx = new AppContext({ ...structuredClone(DEFAULT_CONFIG), dataDir: tmp.dir, bootstrap: false }, undefined, createLogger('silent'));
    try {
      const { app } = createApp(ctx);
      // As the application stands, each fast endpoint's chain is the one its fast path mirrors.
      for (const r of FAST_ROUTES) expect(appChain(app, r.method, r.sample)).toEqual(r.mirrors);
      expect(() => assertMirrored(app)).not.toThrow();
      // A middleware for every request, or for one fast endpoint only, or for a method: each is caught.
      // (The first fast endpoint whose chain differs is named.)
      for (const [path, first] of [
        ['*', '/v1/resolve/:handle'],
        ['/v1/lookup/*', '/v1/lookup/:handle'],
        ['/v1/lookup', '/v1/lookup'],
        ['/v1/handles', '/v1/handles'],
      ] as const) {
        const { app: changed } = createApp(ctx);
        changed.use(path, async function audit(_c, next) {
          await next();
        });
        const route = FAST_ROUTES.find((r) => r.pattern === first)!;
        expect(() => assertMirrored(changed), path).toThrow(
          new RegExp(`runs \\[[^\\]]*audit[^\\]]*\\] for ${route.method} ${route.pattern.replaceAll('/', '\\/')}`),
        );
      }
      // A middleware for other endpoints is not the fast paths' concern.
      const { app: other } = createApp(ctx);
      other.use('/v1/zones/*', async function zonesOnly(_c, next) {
        await next();
      });
      expect(() => assertMirrored(other)).not.toThrow();
    } finally {
      await ctx.close();
      tmp.remove();
    }
  });
});
