import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { DEFAULT_RATE_LIMITS, loadConfig } from '../src/config.js';
import { signChangeRequest } from '../src/client/requests.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BucketTable, RateLimits } from '../src/http/rate-limits.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, type TestServer } from './support/server.js';

describe('token buckets', () => {
  it('allow a burst, then the rate, and say how long to wait', () => {
    const clock = new ManualClock();
    const t = new BucketTable({ rate: 10, per: 60, burst: 3 }, clock, 100);
    expect([t.tryTake('a'), t.tryTake('a'), t.tryTake('a')]).toEqual([0, 0, 0]);
    expect(t.tryTake('a')).toBe(6); // one token every 6 s
    expect(() => t.take('a')).toThrow(expect.objectContaining({ code: 'rate_limited', details: { retryAfter: 6 } }));
    clock.advance(6000);
    expect(t.tryTake('a')).toBe(0);
    // Other keys have their own buckets.
    expect(t.tryTake('b')).toBe(0);
  });

  it('keep a bounded number of keys however many clients there are', () => {
    const t = new BucketTable({ rate: 1, per: 1, burst: 1 }, new ManualClock(), 1000);
    for (let i = 0; i < 50_000; i++) t.tryTake(`10.0.${i >> 8}.${i & 255}`);
    expect(t.size).toBe(1000);
  });
});

describe('configuration', () => {
  it('turns limits on for internet-facing servers and off on loopback, unless the file says', () => {
    expect(loadConfig({ listen: '0.0.0.0:8053' }, {}).rateLimits.enabled).toBe(true);
    expect(loadConfig({ listen: '127.0.0.1:8053' }, {}).rateLimits.enabled).toBe(false);
  });
});

describe('rate limits over HTTP', () => {
  let s: TestServer;
  const owner = newUserKey();
  beforeAll(async () => {
    s = await startTestServer({
      zones: { example: { policy: 'invite' }, open: {} },
      config: {
        rateLimits: {
          ...DEFAULT_RATE_LIMITS,
          enabled: true,
          lookups: { rate: 1, per: 60, burst: 5 },
          writes: { rate: 1, per: 60, burst: 50 },
          changesPerHandle: { rate: 3, per: 3600, burst: 3 },
          inviteFailuresPerZone: { rate: 1, per: 3600, burst: 2 },
        },
      },
    });
  });
  afterAll(async () => s.close());

  const post = (request: string) =>
    fetch(`${s.url}/v1/handles`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request }) });

  it('answers 429 with Retry-After once a client has used its lookups', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await fetch(`${s.url}/v1/resolve/nobody${i}@open`)).status);
    expect(statuses.slice(0, 5)).toEqual([404, 404, 404, 404, 404]);
    const limited = await fetch(`${s.url}/v1/resolve/x@open`);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await limited.json()).toMatchObject({ error: { code: 'rate_limited' } });
  });

  it('limits changes per handle', async () => {
    const handle = 'busy@open';
    const reg = await post(signChangeRequest({ action: 'register', handle, endpoint: 'https://h.example/0', keys: [owner.public] }, owner.private));
    expect(reg.status).toBe(201);
    let prev = ((await reg.json()) as { op: string }).op;
    const statuses: number[] = [];
    for (let i = 1; i <= 3; i++) {
      const request = signChangeRequest({ action: 'update', handle, endpoint: `https://h.example/${i}`, keys: [owner.public], prev }, owner.private);
      const res = await fetch(`${s.url}/v1/handles/${handle}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ request }),
      });
      statuses.push(res.status);
      if (res.status === 200) prev = ((await res.json()) as { op: string }).op;
    }
    expect(statuses).toEqual([200, 200, 429]);
    // Another handle is not affected.
    const other = await post(
      signChangeRequest({ action: 'register', handle: 'calm@open', endpoint: 'https://h.example/', keys: [owner.public] }, owner.private),
    );
    expect(other.status).toBe(201);
  });

  it('stops invite-code guessing per zone, even with a valid code after the limit', async () => {
    const tries: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await post(
        signChangeRequest(
          { action: 'register', handle: `guess${i}@example`, endpoint: 'https://h.example/', keys: [owner.public], invite: `inv_wrong${i}` },
          owner.private,
        ),
      );
      tries.push(res.status);
    }
    expect(tries).toEqual([403, 403, 429]);
    const { code } = s.ctx.zones.createInvite('example');
    const real = await post(
      signChangeRequest({ action: 'register', handle: 'real@example', endpoint: 'https://h.example/', keys: [owner.public], invite: code }, owner.private),
    );
    expect(real.status).toBe(429);
  });
});

describe('clients behind trusted proxies (rateLimits.trustedProxies)', () => {
  const limits = (trustedProxies: string[]) => new RateLimits({ ...DEFAULT_RATE_LIMITS, trustedProxies }, new ManualClock());
  const req = (remoteAddress: string, xff?: string | string[]) =>
    ({ socket: { remoteAddress }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }) as unknown as IncomingMessage;

  it('takes the client from X-Forwarded-For only when the socket is a trusted proxy, right to left past trusted hops', () => {
    const none = limits([]);
    expect(none.keyOf(req('198.51.100.7', '203.0.113.9'))).toBe('198.51.100.7');
    const behind = limits(['10.0.0.0/8', '::ffff:192.0.2.1', '2001:db8::/32']);
    expect(behind.keyOf(req('10.1.2.3', '203.0.113.9'))).toBe('203.0.113.9');
    // A client's own spoofed entries lie left of what the proxies appended: the first untrusted from the right wins.
    expect(behind.keyOf(req('10.1.2.3', '6.6.6.6, 203.0.113.9, 10.9.9.9'))).toBe('203.0.113.9');
    expect(behind.keyOf(req('::ffff:192.0.2.1', ['203.0.113.9', '10.0.0.1']))).toBe('203.0.113.9');
    expect(behind.keyOf(req('2001:db8::5', '2001:db9:1:2:3::4'))).toBe('2001:db9:1:2::/64');
    // No header, garbage, or an overlong header: the proxy itself is the client.
    expect(behind.keyOf(req('10.1.2.3'))).toBe('10.1.2.3');
    expect(behind.keyOf(req('10.1.2.3', 'not-an-address'))).toBe('10.1.2.3');
    expect(behind.keyOf(req('10.1.2.3', `${'1.2.3.4,'.repeat(400)}5.6.7.8`))).toBe('10.1.2.3');
    // Only proxies in the chain: the leftmost of them.
    expect(behind.keyOf(req('10.1.2.3', '10.2.2.2'))).toBe('10.2.2.2');
  });

  it('refuses a configuration entry that is not an address or CIDR block', () => {
    expect(() => limits(['10.0.0.0/33'])).toThrow(expect.objectContaining({ code: 'invalid_config' }));
    const dir = mkdtempSync(join(tmpdir(), 'idns-config-'));
    try {
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ rateLimits: { trustedProxies: ['example.com'] } }));
      expect(() => loadConfig({ config: join(dir, 'config.json') }, {})).toThrow(/trustedProxies/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('over HTTP: behind a trusted proxy each forwarded client has its own bucket; untrusted, the header is ignored', async () => {
    const config = (trustedProxies: string[]) => ({
      rateLimits: { ...DEFAULT_RATE_LIMITS, enabled: true, lookups: { rate: 1, per: 3600, burst: 2 }, trustedProxies },
    });
    const proxied = await startTestServer({ zones: { open: {} }, config: config(['127.0.0.1', '::1']) });
    const direct = await startTestServer({ zones: { open: {} }, config: config([]) });
    try {
      const ask = (s: TestServer, from: string) => fetch(`${s.url}/v1/resolve/nobody@open`, { headers: { 'x-forwarded-for': from } }).then((r) => r.status);
      const seq = async (s: TestServer, froms: string[]) => {
        const out: number[] = [];
        for (const f of froms) out.push(await ask(s, f));
        return out;
      };
      expect(await seq(proxied, ['203.0.113.1', '203.0.113.1', '203.0.113.1', '203.0.113.2'])).toEqual([404, 404, 429, 404]);
      expect(await seq(direct, ['203.0.113.1', '203.0.113.2', '203.0.113.3'])).toEqual([404, 404, 429]);
    } finally {
      await proxied.close();
      await direct.close();
    }
  });
});
