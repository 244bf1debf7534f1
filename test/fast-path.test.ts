import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, type TestServer } from './support/server.js';

// GET /v1/resolve is served by a fast path beside the full application; both must answer alike.
describe('the authoritative read fast path', () => {
  let s: TestServer;
  const owner = newUserKey();
  beforeAll(async () => {
    s = await startTestServer({ zones: { example: {} } });
    await s.ctx.changes.submit(signChangeRequest({ action: 'register', handle: 'alice@example', endpoint: 'https://h.example/a', keys: [owner.public] }, owner.private));
  });
  afterAll(async () => s.close());

  const get = async (path: string) => {
    const res = await fetch(`${s.url}${path}`);
    return { status: res.status, body: await res.text(), etag: res.headers.get('etag'), cache: res.headers.get('cache-control'), type: res.headers.get('content-type') };
  };

  it.each(['/v1/resolve/alice@example', '/v1/resolve/nobody@example', '/v1/resolve/alice%40example'])('answers %s exactly as the full application does', async (path) => {
    const fast = await get(path);
    const full = await get(`${path}?via=app`); // a query string takes the full application
    expect(fast).toEqual(full);
    expect(fast.type).toBe('application/json');
  });

  it('leaves errors, conditional requests and queries to the full application', async () => {
    expect((await get('/v1/resolve/not a handle')).status).toBe(400);
    expect((await get('/v1/resolve/x@elsewhere.test')).status).toBe(421);
    const first = await fetch(`${s.url}/v1/resolve/alice@example`);
    const etag = first.headers.get('etag')!;
    expect((await fetch(`${s.url}/v1/resolve/alice@example`, { headers: { 'if-none-match': etag } })).status).toBe(304);
  });

  it('never serves an answer older than the zone: a change is visible at once', async () => {
    const before = await get('/v1/resolve/bob@example');
    expect(before.status).toBe(404);
    await s.ctx.changes.submit(signChangeRequest({ action: 'register', handle: 'bob@example', endpoint: 'https://h.example/b', keys: [owner.public] }, owner.private));
    const after = await get('/v1/resolve/bob@example');
    expect(after.status).toBe(200);
    // And the answer for another name carries the new zone record too.
    expect(JSON.parse((await get('/v1/resolve/alice@example')).body).serial).toBe(JSON.parse(after.body).serial);
  });
});
