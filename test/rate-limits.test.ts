import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { DEFAULT_RATE_LIMITS, loadConfig } from '../src/config.js';
import { signChangeRequest } from '../src/client/requests.js';
import { BucketTable } from '../src/http/rate-limits.js';
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
