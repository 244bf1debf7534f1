import { afterEach, describe, expect, it } from 'vitest';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { signChangeRequest } from '../src/client/requests.js';
import { epochSeconds, ManualClock, systemClock } from '../src/clock.js';
import { IdnsError } from '../src/errors.js';
import { authorization, MAX_AUTH_SKEW, verifyAuthorization, type Credential } from '../src/replication/credentials.js';
import { AUTH_NONCE_CAPACITY, NonceStore } from '../src/replication/nonces.js';
import { until } from './support/cluster.js';
import { startGate, type Gate } from './support/gate.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

/**
 * Transfer credentials (docs/protocol.md §11.4) against replay, and notifies that follow the current
 * targets and credentials (§11.5), between real servers on loopback: issue 14, items 11 and 13.
 */

const owner = newUserKey();
const cleanups: (() => Promise<unknown> | unknown)[] = [];

afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

async function server(options: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const s = await startTestServer({ background: true, ...options });
  // Closed once, whether by a test (a restart) or after it.
  const close = s.close;
  let closing: Promise<void> | null = null;
  s.close = () => (closing ??= close());
  cleanups.push(() => s.close());
  return s;
}

async function gate(target: string): Promise<Gate> {
  const g = await startGate(target);
  cleanups.push(() => g.close());
  return g;
}

let handles = 0;
async function register(s: TestServer, zone = 'example'): Promise<void> {
  const handle = `user${handles++}@${zone}`;
  await s.ctx.changes.submit(
    signChangeRequest({ action: 'register', handle, endpoint: `https://home.example/${handle}`, keys: [owner.public] }, owner.private),
  );
}

function serial(s: TestServer, zone = 'example'): number {
  return s.ctx.zones.info(zone).serial;
}

async function get(url: string, authorizationHeader?: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url, authorizationHeader === undefined ? {} : { headers: { authorization: authorizationHeader } });
  const text = await res.text();
  return { status: res.status, body: res.headers.get('content-type')?.startsWith('application/json') ? JSON.parse(text) : text };
}

async function post(url: string, body: string, authorizationHeader?: string): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (authorizationHeader !== undefined) headers.authorization = authorizationHeader;
  const res = await fetch(url, { method: 'POST', headers, body });
  return { status: res.status, body: await res.json() };
}

const now = () => epochSeconds(systemClock);

/**
 * A primary holding `example` whose transfers are restricted to the credential `s`, and a secondary
 * holding it, copied once; `via` may put a gate on the way to the primary (transfers) and to the
 * secondary (the notify URL the primary is given).
 */
async function restrictedPair(
  options: { primaryDataDir?: string; toPrimary?: (url: string) => Promise<string>; toSecondary?: (url: string) => Promise<string> } = {},
) {
  const primary = await server({
    zones: { example: { timers: { refresh: 3600, retry: 3600 } } },
    ...(options.primaryDataDir ? { dataDir: options.primaryDataDir } : {}),
  });
  const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
  const secondary = await server();
  const source = options.toPrimary ? await options.toPrimary(primary.url) : primary.url;
  const notify = options.toSecondary ? await options.toSecondary(secondary.url) : secondary.url;
  const cred = primary.ctx.credentials.allow('example', 's', notify);
  secondary.ctx.zones.createSecondary('example', { primaries: [source], ds: [kid] });
  secondary.ctx.credentials.setOwn('example', cred);
  await register(primary);
  const status = await secondary.ctx.replicator.checkNow('example');
  expect(status.lastError).toBeNull();
  return { primary, secondary, kid, cred };
}

describe('transfer credentials: a header is good for one request, once (item 11)', () => {
  it('a header copied from a genuine transfer or notify is refused when replayed, identically or after the server restarted', async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    let link!: Gate;
    let toSecondary!: Gate;
    const { primary, secondary, cred } = await restrictedPair({
      primaryDataDir: dir.dir,
      toPrimary: async (url) => (link = await gate(url)).url,
      toSecondary: async (url) => (toSecondary = await gate(url)).url,
    });
    const transfer = link.requests.find((r) => r.path.includes('/transfer'))!;
    expect(transfer.status).toBe(200);
    expect(transfer.authorization).toMatch(/^IDNS-HMAC /);

    const replay = await get(`${primary.url}${transfer.path}`, transfer.authorization);
    expect(replay.status).toBe(403);
    expect(replay.body.error.code).toBe('auth_failed');
    expect(replay.body.error.message).toContain('used before');

    // A notify signed by the primary, copied on its way, is refused by the secondary the second time.
    await register(primary);
    const notify = await until(
      () => toSecondary.requests.find((r) => r.path.endsWith('/notify') && r.status === 202),
      'a signed notify accepted by the secondary',
    );
    expect(notify.authorization).toMatch(/^IDNS-HMAC /);
    const again = await post(`${secondary.url}${notify.path}`, notify.body, notify.authorization);
    expect(again.status).toBe(403);
    expect(again.body.error.code).toBe('auth_failed');
    expect(again.body.error.message).toContain('used before');

    // The primary restarts: it no longer remembers the nonce, and still refuses the copy (signed before it started).
    const copied = transfer.authorization!;
    const signedAt = Number(/ts="(\d+)"/.exec(copied)![1]);
    await until(() => now() > signedAt, 'the second the header was signed to pass');
    await primary.close();
    const restarted = await server({ dataDir: dir.dir });
    const afterRestart = await get(`${restarted.url}${transfer.path}`, copied);
    expect(afterRestart.status).toBe(403);
    expect(afterRestart.body.error.code).toBe('auth_failed');
    expect(afterRestart.body.error.message).toContain('signed too long ago');
    // A request signed now is served.
    const path = '/v1/zones/example/transfer';
    expect((await get(`${restarted.url}${path}`, authorization({ name: 's', secret: cred.secret }, 'GET', path, '', now()))).status).toBe(200);
  });

  it('builds the mac input byte for byte as docs/protocol.md §11.4 gives it (its example)', () => {
    const input = [
      'IDNS-HMAC-2',
      'ns2',
      'GET',
      '/v1/zones/example/transfer?since=7',
      '1767225600',
      'A'.repeat(22),
      createHash('sha256').update('').digest('hex'),
    ].join('\n');
    const mac = createHmac('sha256', Buffer.alloc(32)).update(input).digest('base64url');
    expect(mac).toBe('GIjTCwsayf0KZxkCMtL4-Nuz2ThbcabXk7KLUdjKnW8');
    const header = authorization({ name: 'ns2', secret: 'A'.repeat(43) }, 'GET', '/v1/zones/example/transfer?since=7', '', 1767225600, 'A'.repeat(22));
    expect(header).toBe(`IDNS-HMAC name="ns2", ts="1767225600", nonce="${'A'.repeat(22)}", mac="${mac}"`);
  });

  it('a header is good only for the method, target and body it was signed for; refusals do not use it up', async () => {
    const { primary, secondary, cred } = await restrictedPair();
    const signed = '/v1/zones/example/transfer?format=compact';
    const header = authorization(cred, 'GET', signed, '', now());
    for (const moved of [
      '/v1/zones/example/transfer',
      '/v1/zones/example/transfer?format=ndjson',
      '/v1/zones/example/transfer?format=compact&since=1',
      `/v1/zones/example/transfer?since=${serial(primary)}`,
    ]) {
      const res = await get(`${primary.url}${moved}`, header);
      expect(res.status, moved).toBe(403);
      expect(res.body.error).toEqual({ code: 'auth_failed', message: 'transfer credentials refused' });
    }
    // The secondary shares the secret: the transfer header is no notify there, nor is a notify's header good for another body or a transfer.
    const notifyPath = '/v1/zones/example/notify';
    const notifyBody = JSON.stringify({ serial: serial(primary) });
    expect((await post(`${secondary.url}${notifyPath}`, notifyBody, header)).status).toBe(403);
    const notifyHeader = authorization(cred, 'POST', notifyPath, notifyBody, now());
    expect((await post(`${secondary.url}${notifyPath}`, JSON.stringify({ serial: serial(primary) + 1 }), notifyHeader)).status).toBe(403);
    expect((await get(`${primary.url}${notifyPath.replace('notify', 'transfer')}`, notifyHeader)).status).toBe(403);
    // One spelling only: the same header with its time written with a leading zero is refused.
    const zeroed = header.replace(/ts="(\d+)"/, 'ts="0$1"');
    expect(zeroed).not.toBe(header);
    expect((await get(`${primary.url}${signed}`, zeroed)).body.error).toEqual({ code: 'auth_failed', message: 'malformed transfer credentials' });
    // Nor with the mac's last character changed only in the two bits base64url leaves unused.
    const lastAt = header.length - 2;
    const last = header[lastAt]!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const respelt = `${header.slice(0, lastAt)}${alphabet[alphabet.indexOf(last) ^ 1]}"`;
    expect(Buffer.from(/mac="([^"]+)"/.exec(respelt)![1]!, 'base64url')).toEqual(Buffer.from(/mac="([^"]+)"/.exec(header)![1]!, 'base64url'));
    expect((await get(`${primary.url}${signed}`, respelt)).status).toBe(403);
    // Each header still works, once, for its own request.
    expect((await get(`${primary.url}${signed}`, header)).status).toBe(200);
    expect((await post(`${secondary.url}${notifyPath}`, notifyBody, notifyHeader)).status).toBe(202);
    expect((await get(`${primary.url}${signed}`, header)).status).toBe(403);
  });

  it('a genuine secondary keeps working over many consecutive signed transfers and notifies, and many requests signed in one second', async () => {
    let link!: Gate;
    const { primary, secondary, cred } = await restrictedPair({ toPrimary: async (url) => (link = await gate(url)).url });
    for (let i = 0; i < 25; i++) {
      await register(primary);
      const target = serial(primary);
      await until(() => serial(secondary) === target, `the secondary to follow change ${i} through its notify`);
    }
    const signed = link.requests.filter((r) => r.path.includes('/transfer'));
    expect(signed.length).toBeGreaterThanOrEqual(25);
    expect(signed.every((r) => r.status === 200)).toBe(true);
    expect(new Set(signed.map((r) => r.authorization)).size).toBe(signed.length);
    expect(primary.ctx.notifier.failed).toBe(0);
    // Fifty requests signed within the same second, each with its own nonce: all served.
    const ts = now();
    const path = `/v1/zones/example/transfer?since=${serial(primary)}`;
    const results = await Promise.all(Array.from({ length: 50 }, () => get(`${primary.url}${path}`, authorization(cred, 'GET', path, '', ts))));
    expect(results.map((r) => r.status)).toEqual(Array(50).fill(200));
  }, 90_000);

  it('the nonce store is bounded: when full it forgets the nonce that expires first and shrinks the window behind it', () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const t = epochSeconds(clock);
    const store = new NonceStore(clock, MAX_AUTH_SKEW, 3);
    const cred: Credential = { name: 's', secret: randomBytes(32).toString('base64url') };
    const path = '/v1/zones/example/transfer';
    const check = (header: string) =>
      verifyAuthorization(header, { method: 'GET', target: path, body: '' }, t, (n) => (n === 's' ? cred.secret : undefined), store);
    const refusal = (header: string) => {
      try {
        check(header);
      } catch (err) {
        expect(err).toBeInstanceOf(IdnsError);
        expect((err as IdnsError).code).toBe('auth_failed');
        return (err as IdnsError).message;
      }
      throw new Error('accepted');
    };
    // Signed before the store existed (before a restart): refused, since a nonce of then is not known.
    expect(refusal(authorization(cred, 'GET', path, '', t - 1))).toContain('signed too long ago');
    const h = [t, t + 1, t + 2, t + 3].map((ts) => authorization(cred, 'GET', path, '', ts));
    for (const header of h.slice(0, 3)) expect(check(header)).toBe('s');
    expect(store.size).toBe(3);
    expect(refusal(h[1]!)).toContain('used before');
    // Full: the fourth forgets the first (whose window closes first), and the window now starts after it.
    expect(check(h[3]!)).toBe('s');
    expect(store.size).toBe(3);
    expect(refusal(authorization(cred, 'GET', path, '', t))).toContain('signed too long ago');
    // The forgotten nonce is not accepted again.
    expect(refusal(h[0]!)).toContain('signed too long ago');
    expect(store.size).toBe(3);
    // Windows close: their nonces are dropped and there is room again.
    clock.advance(2 * MAX_AUTH_SKEW * 1000);
    const later = epochSeconds(clock);
    const fresh = authorization(cred, 'GET', path, '', later);
    expect(verifyAuthorization(fresh, { method: 'GET', target: path, body: '' }, later, () => cred.secret, store)).toBe('s');
    expect(store.size).toBe(1);
  });

  it(`a server whose nonce store reached its bound (${AUTH_NONCE_CAPACITY}) still serves genuine requests and refuses every replay`, async () => {
    const { primary, secondary, cred } = await restrictedPair();
    const store = primary.ctx.authNonces;
    // Fill the real server's store as a flood of accepted requests signed in one second would.
    const ts = now();
    for (let i = store.size; i < AUTH_NONCE_CAPACITY; i++) store.use('s', `flood${String(i).padStart(17, '0')}`, ts);
    expect(store.size).toBe(AUTH_NONCE_CAPACITY);
    // Requests signed in that second may now be refused; the next second's are not.
    await until(() => now() > ts, 'the flooded second to pass', 3000);
    // The genuine secondary follows a change (its requests are signed now).
    await register(primary);
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.lastError).toBeNull();
    expect(serial(secondary)).toBe(serial(primary));
    expect(store.size).toBe(AUTH_NONCE_CAPACITY);
    // The window shrank behind the forgotten nonces: a request signed as long ago as they were is refused.
    const path = '/v1/zones/example/transfer';
    const old = await get(`${primary.url}${path}`, authorization(cred, 'GET', path, '', ts));
    expect(old.status).toBe(403);
    expect(old.body.error.message).toContain('signed too long ago');
    const header = authorization(cred, 'GET', path, '', now());
    expect((await get(`${primary.url}${path}`, header)).status).toBe(200);
    expect((await get(`${primary.url}${path}`, header)).status).toBe(403);
    expect(store.size).toBe(AUTH_NONCE_CAPACITY);
  });
});

describe('notifies use the current targets and credentials (item 13)', () => {
  /** A primary whose zone lists `via` (a gate to the secondary) as a server, and the secondary, copied once. */
  async function notifiedPair() {
    const secondary = await server();
    const link = await gate(secondary.url);
    const primary = await server();
    primary.ctx.zones.create('example', { servers: [primary.url, link.url], timers: { refresh: 3600, retry: 3600 } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await register(primary);
    expect((await secondary.ctx.replicator.checkNow('example')).lastError).toBeNull();
    // A round of cosignatures (the secondary is a witness) ends in a notify of its own: both must be over.
    await until(() => primary.ctx.cosignatures.pending === 0 && primary.ctx.notifier.pending === 0, 'the notifies of the set-up to finish', 20_000);
    // The notifies sent while the zone was being set up may have been refused (the secondary did not hold it yet).
    return { primary, secondary, link, failedBefore: primary.ctx.notifier.failed };
  }

  const cases: { name: string; before: (p: TestServer, s: TestServer, link: Gate) => void; change: (p: TestServer, s: TestServer, link: Gate) => void }[] = [
    {
      name: 'credentials set (allow-transfer) on an open zone',
      before: () => {},
      change: (p, s, link) => s.ctx.credentials.setOwn('example', p.ctx.credentials.allow('example', 's', link.url)),
    },
    {
      name: 'the secret rotated',
      before: (p, s, link) => s.ctx.credentials.setOwn('example', p.ctx.credentials.allow('example', 's', link.url)),
      change: (p, s, link) => s.ctx.credentials.setOwn('example', p.ctx.credentials.allow('example', 's', link.url)),
    },
  ];
  for (const c of cases) {
    it(`a notify in flight when ${c.name}, and the one folded into it, reach the secondary signed with the new credential`, async () => {
      const { primary, secondary, link, failedBefore } = await notifiedPair();
      c.before(primary, secondary, link);
      const mark = link.requests.length;
      link.hold = (r) => r.path.endsWith('/notify');
      await register(primary);
      await until(() => link.held() === 1, 'the notify to be in flight');
      c.change(primary, secondary, link);
      // A change while the first notify is in flight: folded into one more notify after it.
      await register(primary);
      const target = serial(primary);
      link.release();
      await until(() => primary.ctx.notifier.pending === 0, 'the notifies to finish', 20_000);
      const accepted = link.requests.slice(mark).filter((r) => r.path.endsWith('/notify') && r.status === 202);
      expect(accepted.length).toBeGreaterThan(0);
      expect(accepted.every((r) => r.authorization !== undefined)).toBe(true);
      expect(primary.ctx.notifier.failed).toBe(failedBefore);
      // Notified, the secondary checks at once (its refresh is an hour away).
      await until(() => serial(secondary) === target, 'the secondary to follow the notify');
    });
  }

  it('a notify in flight to a target that was replaced is not retried there; the new target gets it, signed', async () => {
    const secondary = await server();
    const oldLink = await gate(secondary.url);
    const newLink = await gate(secondary.url);
    const primary = await server({ zones: { example: { timers: { refresh: 3600, retry: 3600 } } } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    secondary.ctx.credentials.setOwn('example', primary.ctx.credentials.allow('example', 's', oldLink.url));
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await register(primary);
    expect((await secondary.ctx.replicator.checkNow('example')).lastError).toBeNull();
    // A round of cosignatures (the secondary is a witness) ends in a notify of its own: both must be over.
    await until(() => primary.ctx.cosignatures.pending === 0 && primary.ctx.notifier.pending === 0, 'the notifies of the set-up to finish', 20_000);
    const before = oldLink.requests.length;

    // The old target's notify is held, then its connection cut: a failure the notifier retries.
    oldLink.hold = (r) => r.path.endsWith('/notify');
    oldLink.cut = (r) => r.path.endsWith('/notify');
    await register(primary);
    await until(() => oldLink.held() === 1, 'the notify to the old target to be in flight');
    secondary.ctx.credentials.setOwn('example', primary.ctx.credentials.allow('example', 's', newLink.url));
    await register(primary);
    const target = serial(primary);
    oldLink.release();
    await until(() => primary.ctx.notifier.pending === 0, 'the notifies to finish', 20_000);
    expect(oldLink.requests.length - before).toBe(1);
    const accepted = newLink.requests.filter((r) => r.path.endsWith('/notify') && r.status === 202);
    expect(accepted.length).toBeGreaterThan(0);
    expect(accepted.every((r) => r.authorization !== undefined)).toBe(true);
    await until(() => serial(secondary) === target, 'the secondary to follow the notify to its new URL');
  });

  it('a secondary signs each request with the credential it holds when the request is made, not when its check began', async () => {
    const primary = await server({ zones: { example: { timers: { refresh: 3600, retry: 3600 } } } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    const cred = primary.ctx.credentials.allow('example', 's', null);
    await register(primary);
    // No background loop: the only check is the one this test starts.
    const secondary = await server({ background: false });
    const link = await gate(primary.url);
    secondary.ctx.zones.createSecondary('example', { primaries: [link.url], ds: [kid] });
    secondary.ctx.credentials.setOwn('example', { name: 's', secret: randomBytes(32).toString('base64url') });
    // The check starts with a wrong secret; the operator fixes it while the zone record is being fetched.
    link.hold = (r) => r.path === '/v1/zones/example';
    const check = secondary.ctx.replicator.checkNow('example');
    await until(() => link.held() === 1, 'the check to be fetching the zone record');
    secondary.ctx.credentials.setOwn('example', cred);
    link.release();
    const status = await check;
    expect(status.lastError).toBeNull();
    expect(status.transfers.full).toBe(1);
    expect(serial(secondary)).toBe(serial(primary));
  });
  it('a secondary whose check failed on a credential changed meanwhile checks again at once, not at its retry interval', async () => {
    const primary = await server({ zones: { example: { timers: { refresh: 3600, retry: 3600 } } } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    // No notifies and no background loop: the only checks are this test's and those the secondary schedules.
    const cred = primary.ctx.credentials.allow('example', 's', null);
    await register(primary);
    const secondary = await server({ background: false });
    const link = await gate(primary.url);
    secondary.ctx.zones.createSecondary('example', { primaries: [link.url], ds: [kid] });
    secondary.ctx.credentials.setOwn('example', cred);
    expect((await secondary.ctx.replicator.checkNow('example')).lastError).toBeNull();
    // The primary's operator rotates the secret; a change follows, and the secondary's next check is
    // signed with the old secret and held on its way while the secondary's operator installs the new one.
    const rotated = primary.ctx.credentials.allow('example', 's', null);
    await register(primary);
    link.hold = (r) => r.path.includes('/transfer');
    const check = secondary.ctx.replicator.checkNow('example');
    await until(() => link.held() === 1, 'the transfer request to be in flight');
    secondary.ctx.credentials.setOwn('example', rotated);
    link.release();
    const status = await check;
    expect(status.lastError).toContain('auth_failed');
    // The zone's retry is an hour: only the changed credential can bring the next check this soon.
    await until(() => status.lastError === null, 'the secondary to check again with its new credential');
    expect(serial(secondary)).toBe(serial(primary));
  });
});
