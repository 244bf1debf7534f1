import Database from 'better-sqlite3';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { recordTimes } from '../src/authority/authority.js';
import { decodePayload } from '../src/authority/editor.js';
import { IdnsError } from '../src/errors.js';
import { FastPaths } from '../src/http/fast/dispatch.js';
import { DEFAULT_CONFIG, DEFAULT_RATE_LIMITS } from '../src/config.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, type TestServer } from './support/server.js';

/** POSTs a body to `base`/v1/handles with a Content-Length (fast path) or chunked (full application). */
function postHandles(base: string, body: string, chunked: boolean) {
  return new Promise<{ status: number; type: string | undefined; retryAfter: string | undefined; body: string }>((resolve, reject) => {
    const u = new URL(`${base}/v1/handles`);
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(chunked ? {} : { 'content-length': Buffer.byteLength(body) }) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () =>
          resolve({ status: res.statusCode!, type: res.headers['content-type'], retryAfter: res.headers['retry-after'] as string | undefined, body: text }),
        );
      },
    );
    req.on('error', reject);
    if (chunked) req.write(body.slice(0, 5));
    req.end(chunked ? body.slice(5) : body);
  });
}

// GET /v1/resolve is served by a fast path beside the full application; both must answer alike.
describe('the authoritative read fast path', () => {
  let s: TestServer;
  const owner = newUserKey();
  beforeAll(async () => {
    s = await startTestServer({ zones: { example: {} } });
    await s.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: 'alice@example', endpoint: 'https://h.example/a', keys: [owner.public] }, owner.private),
    );
    await s.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: 'carol@deep.sub.example', endpoint: 'https://h.example/c', keys: [owner.public] }, owner.private),
    );
    s.ctx.zones.delegate('example', 'child.example', { servers: ['https://child.example.test'], ds: ['A'.repeat(43)] });
  });
  afterAll(async () => s.close());

  const get = async (path: string) => {
    const res = await fetch(`${s.url}${path}`);
    return {
      status: res.status,
      body: await res.text(),
      etag: res.headers.get('etag'),
      cache: res.headers.get('cache-control'),
      type: res.headers.get('content-type'),
      length: res.headers.get('content-length'),
    };
  };

  it.each([
    ['an answer', '/v1/resolve/alice@example'],
    ['an answer, percent-encoded', '/v1/resolve/alice%40example'],
    ['an answer to a handle that is not in normal form', '/v1/resolve/ALICE@Example'],
    ['an answer below the apex', '/v1/resolve/carol@deep.sub.example'],
    ['a denial', '/v1/resolve/nobody@example'],
    ['a denial below the apex, with noCut gaps', '/v1/resolve/nobody@other.sub.example'],
    ['a referral', '/v1/resolve/dave@child.example'],
    ['a referral from below the cut', '/v1/resolve/dave@x.child.example'],
  ])('answers %s exactly as the full application does', async (_, path) => {
    const served = vi.spyOn(FastPaths.prototype, 'handle');
    const fast = await get(path);
    expect(served.mock.results.map((r) => r.value)).toEqual([true]);
    const full = await get(`${path}?via=app`); // a query string takes the full application
    expect(served.mock.results.map((r) => r.value)).toEqual([true, false]);
    served.mockRestore();
    expect(fast).toEqual(full);
    expect(fast.type).toBe('application/json');
  });

  it('serialises answers exactly as JSON.stringify of the answer object', () => {
    const inputs = [
      'alice@example',
      'Alice@EXAMPLE',
      'carol@deep.sub.example',
      'nobody@example',
      'nobody@other.sub.example',
      'dave@child.example',
      'x@y.child.example',
    ];
    for (const input of inputs) {
      const answer = s.ctx.authority.resolve(input);
      const serialised = s.ctx.authority.resolveSerialised(input);
      expect(serialised.body.toString('utf8')).toBe(JSON.stringify(answer));
      expect(serialised).toMatchObject({ status: answer.status, zone: answer.zone, ttl: answer.ttl, version: s.ctx.zones.cachedZone('example')!.version });
    }
    expect(JSON.parse(s.ctx.authority.resolveSerialised('nobody@other.sub.example').body.toString())).toHaveProperty('noCut');
  });

  it('parses handles as parseHandle does, also once their host has been seen', () => {
    s.ctx.authority.resolve('alice@example'); // the host `example` is now remembered
    const locals = [
      'a',
      'a.b',
      'a_b',
      '_a',
      'a_',
      '0',
      'a-b',
      'A',
      'aB',
      'a..b',
      '.a',
      'a.',
      '-a',
      'a-',
      'a b',
      'a+b',
      'ä',
      '\u212A',
      '',
      'a'.repeat(64),
      'a'.repeat(65),
      'a@b',
    ];
    const outcome = (f: () => unknown) => {
      try {
        return f();
      } catch (err) {
        return err instanceof IdnsError ? err.code : err;
      }
    };
    for (const local of locals) {
      for (const input of [`${local}@example`, `${local}@EXAMPLE`, `${local}@${'a'.repeat(320)}.example`]) {
        const slow = outcome(() => JSON.stringify(s.ctx.authority.resolve(input)));
        expect(
          outcome(() => s.ctx.authority.resolveSerialised(input).body.toString()),
          input,
        ).toEqual(slow);
      }
    }
  });

  it('keeps an answer for reuse from the second time its URL is asked for', async () => {
    const built = vi.spyOn(s.ctx.authority, 'resolveSerialised');
    const bodies = [];
    for (let i = 0; i < 4; i++) bodies.push(await get('/v1/resolve/asked-often@example'));
    expect(built).toHaveBeenCalledTimes(2);
    built.mockRestore();
    expect(new Set(bodies.map((b) => JSON.stringify(b))).size).toBe(1);
  });

  it('counts what it answers in the request and query metrics', async () => {
    const metric = async (series: string) =>
      Number(
        (await (await fetch(`${s.url}/metrics`)).text())
          .split('\n')
          .find((l) => l.startsWith(`${series} `))
          ?.split(' ')
          .pop() ?? 0,
      );
    const answers = 'idns_queries_total{role="authoritative",outcome="answer"}';
    const denials = 'idns_http_requests_total{route="/v1/resolve/:handle",method="GET",status="404"}';
    const [a0, d0] = [await metric(answers), await metric(denials)];
    for (const path of [
      '/v1/resolve/alice@example',
      '/v1/resolve/alice@example',
      '/v1/resolve/none1@example',
      '/v1/resolve/none2@example',
      '/v1/resolve/none3@example',
    ])
      await get(path);
    expect([(await metric(answers)) - a0, (await metric(denials)) - d0]).toEqual([2, 3]);
  });

  it('treats X-Request-Id and If-None-Match as the full application does, however they are spelled or repeated', async () => {
    // node:http, to send a header twice (fetch would join the values).
    const raw = (path: string, headers: Record<string, string | string[]>) =>
      new Promise<{ status: number; id: string | undefined }>((resolve, reject) => {
        request(`${s.url}${path}`, { headers }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, id: res.headers['x-request-id'] as string | undefined }));
        })
          .on('error', reject)
          .end();
      });
    const uuid = /^[0-9a-f-]{36}$/;
    for (const path of ['/v1/resolve/alice@example', '/v1/resolve/alice@example?via=app']) {
      expect(await raw(path, { 'X-Request-ID': 'trace-1' })).toEqual({ status: 200, id: 'trace-1' });
      expect((await raw(path, { 'x-request-id': ['trace-1', 'trace-2'] })).id).toMatch(uuid);
      expect((await raw(path, { 'x-request-id': 'not sane' })).id).toMatch(uuid);
    }
    const etag = (await get('/v1/resolve/alice@example')).etag!;
    expect((await raw('/v1/resolve/alice@example', { 'IF-NONE-MATCH': etag })).status).toBe(304);
  });

  it('leaves errors, conditional requests and queries to the full application', async () => {
    expect((await get('/v1/resolve/not a handle')).status).toBe(400);
    expect((await get('/v1/resolve/x@elsewhere.test')).status).toBe(421);
    const first = await fetch(`${s.url}/v1/resolve/alice@example`);
    const etag = first.headers.get('etag')!;
    expect((await fetch(`${s.url}/v1/resolve/alice@example`, { headers: { 'if-none-match': etag } })).status).toBe(304);
  });

  it('commits a write made in the same turn as batched reads at once, not with the batch', () => {
    s.ctx.authority.resolveSerialised('alice@example'); // opens the turn's read transaction
    s.ctx.zones.setPolicy('example', 'closed'); // a write, before the batch would end
    const other = new Database(join(s.dataDir, 'idns.sqlite'), { readonly: true });
    try {
      expect(other.prepare('SELECT policy FROM zones WHERE name = ?').pluck().get('example')).toBe('closed');
    } finally {
      other.close();
      s.ctx.zones.setPolicy('example', 'open');
    }
  });

  it('never serves an answer older than the zone: a change is visible at once', async () => {
    const before = await get('/v1/resolve/bob@example');
    expect(before.status).toBe(404);
    await s.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: 'bob@example', endpoint: 'https://h.example/b', keys: [owner.public] }, owner.private),
    );
    const after = await get('/v1/resolve/bob@example');
    expect(after.status).toBe(200);
    // And the answer for another name carries the new zone record too.
    expect(JSON.parse((await get('/v1/resolve/alice@example')).body).serial).toBe(JSON.parse(after.body).serial);
  });
});

describe('recordTimes', () => {
  const jwsOf = (payload: string) => `eyJhbGciOiJFZERTQSJ9.${Buffer.from(payload).toString('base64url')}.c2ln`;
  it.each([
    '{"v":1,"type":"handle","exp":1797336946,"keys":[{"kty":"OKP","crv":"Ed25519","x":"a"}],"ttl":3600,"op":"x"}',
    '{"ttl":0,"exp":0}',
    '{"exp":5,"keys":[{"exp":7}],"ttl":1}',
    '{"a\\"exp":9,"exp":5,"ttl":1}',
    '{"endpoint":"x\\",\\"exp\\":9","exp":5,"ttl":1}',
    '{"exp":1.5,"ttl":2}',
    '{"exp":-5,"ttl":2}',
    '{"exp":5e3,"ttl":2}',
    '{"exp":123456789012345678,"ttl":2}',
    '{"exp":1234567890123456,"ttl":2}',
    '{"exp":123456789012345,"ttl":2}',
    '{"exp":"5","ttl":2}',
    '{"exp":5}',
    '{"exp":5,"ttl":null}',
    '{"exp" :5,"ttl":2}',
  ])('reads ttl and exp as the parsed payload gives them: %s', (payload) => {
    const jws = jwsOf(payload);
    const p = decodePayload(jws);
    expect(recordTimes(jws)).toEqual({ ttl: Number(p.ttl), exp: Number(p.exp) });
  });
});

// POST /v1/handles is served by a fast path when the body has a Content-Length; a chunked body takes
// the full application. Both must answer alike, errors included.
describe('the registration fast path', () => {
  let s: TestServer;
  const owner = newUserKey();
  beforeAll(async () => {
    s = await startTestServer({ zones: { example: {} }, config: { limits: { ...DEFAULT_CONFIG.limits, bodyBytes: 4096 } } });
  });
  afterAll(async () => s.close());

  const post = (body: string, chunked: boolean) => postHandles(s.url, body, chunked);
  const registration = (handle: string) =>
    JSON.stringify({
      request: signChangeRequest({ action: 'register', handle, endpoint: `https://h.example/${handle}`, keys: [owner.public] }, owner.private),
    });

  let registered = '';
  it('registers exactly as the full application does', async () => {
    const served = vi.spyOn(FastPaths.prototype, 'handle');
    registered = registration('fast@example');
    const fast = await post(registered, false);
    const full = await post(registration('full@example'), true);
    expect(served.mock.results.map((r) => r.value)).toEqual([true, false]);
    served.mockRestore();
    expect(fast.status).toBe(201);
    expect([fast.status, fast.type]).toEqual([full.status, full.type]);
    const [f, a] = [JSON.parse(fast.body), JSON.parse(full.body)];
    expect(Object.keys(f)).toEqual(Object.keys(a));
    expect(f).toMatchObject({ handle: 'fast@example', zone: 'example', action: 'register' });
    expect((await fetch(`${s.url}/v1/resolve/fast@example`)).status).toBe(200);
  });

  it.each([
    ['a body that is not JSON', () => '{"request": '],
    ['a body of the wrong form', () => JSON.stringify({ req: 'x' })],
    ['a body that is not an object', () => '[1]'],
    ['a request that is not a JWS', () => JSON.stringify({ request: 'not.a.jws' })],
    [
      'a bad signature',
      () =>
        JSON.stringify({
          request: signChangeRequest(
            { action: 'register', handle: 'sig@example', endpoint: 'https://h.example/s', keys: [owner.public] },
            newUserKey().private,
          ),
        }),
    ],
    [
      'an update sent as a registration',
      () =>
        JSON.stringify({
          request: signChangeRequest(
            { action: 'update', handle: 'fast@example', endpoint: 'https://h.example/u', keys: [owner.public], prev: 'x'.repeat(43) },
            owner.private,
          ),
        }),
    ],
    // Another endpoint, so that this is not the very request registered above (that is a replay).
    [
      'a handle already registered',
      () =>
        JSON.stringify({
          request: signChangeRequest({ action: 'register', handle: 'fast@example', endpoint: 'https://h.example/again', keys: [owner.public] }, owner.private),
        }),
    ],
    ['the very request already accepted', () => registered],
    ['a body over the limit', () => JSON.stringify({ request: 'x'.repeat(5000) })],
  ])('refuses %s exactly as the full application does', async (_, body) => {
    // One body for both: a request signed again in another second is another request.
    const sent = body();
    const fast = await post(sent, false);
    const full = await post(sent, true);
    expect(fast.status).toBeGreaterThanOrEqual(400);
    expect(fast).toEqual(full);
    expect(JSON.parse(fast.body).error.code).toMatch(/^[a-z_]+$/);
  });

  it('applies the per-client write limit, with Retry-After, like the full application', async () => {
    const limited = await startTestServer({
      zones: { example: {} },
      config: { rateLimits: { ...DEFAULT_RATE_LIMITS, enabled: true, writes: { rate: 1, per: 3600, burst: 2 } } },
    });
    try {
      const send = (handle: string, chunked: boolean) => postHandles(limited.url, registration(handle), chunked);
      expect((await send('r1@example', false)).status).toBe(201);
      expect((await send('r2@example', true)).status).toBe(201);
      const fast = await send('r3@example', false);
      const full = await send('r4@example', true);
      expect(fast.status).toBe(429);
      expect(fast.retryAfter).toMatch(/^\d+$/);
      expect({ ...fast, body: JSON.parse(fast.body).error.code }).toEqual({ ...full, body: JSON.parse(full.body).error.code });
    } finally {
      await limited.close();
    }
  });
});
