import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startNoise, type Noise } from './support/noise.js';
import { signChangeRequest } from '../src/client/requests.js';
import { Housekeeper } from '../src/replication/housekeeping.js';
import { ManualClock } from '../src/clock.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

const owner = newUserKey();
const started: TestServer[] = [];
const proxies: Server[] = [];

// Malformed and oversized requests hit every server of these tests while they run.
let noise: Noise;
beforeAll(() => {
  noise = startNoise(() => started.map((s) => s.url));
});
afterAll(async () => {
  const seen = await noise.stop();
  expect(seen.sent).toBeGreaterThan(50);
  expect(seen.serverErrors, seen.serverErrors.join('\n')).toEqual([]);
  expect(seen.problems, `garbage answered with anything but a JSON error:\n${seen.problems.join('\n')}`).toEqual([]);
});

afterEach(async () => {
  for (const p of proxies.splice(0)) await new Promise((r) => p.close(r));
  for (const s of started.splice(0).reverse()) await s.close();
});

async function server(options: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const s = await startTestServer({ background: true, ...options });
  started.push(s);
  return s;
}

async function register(s: TestServer, handle: string): Promise<void> {
  await s.ctx.changes.submit(
    signChangeRequest({ action: 'register', handle, endpoint: `https://home.example/${handle}`, keys: [owner.public] }, owner.private),
  );
}

/** A primary holding a@example, a secondary copying it, and a third server copying the secondary. */
async function chainWithOneHandle(): Promise<{ primary: TestServer; secondary: TestServer; third: TestServer }> {
  const { primary, secondary, kid } = await primaryAndSecondary();
  await register(primary, 'a@example');
  secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
  await secondary.ctx.replicator.checkNow('example');
  const third = await server();
  third.ctx.zones.createSecondary('example', { primaries: [secondary.url], ds: [kid] });
  await third.ctx.replicator.checkNow('example');
  return { primary, secondary, third };
}

async function zoneState(s: TestServer, zone = 'example') {
  const res = await fetch(`${s.url}/v1/zones/${zone}`);
  return (await res.json()) as { serial: number; digest: string; role: string; record: string };
}

/** Waits (bounded: a hang fails, a busy machine does not) until `check` holds. */
async function until(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function primaryAndSecondary(options: { expire?: number } = {}) {
  const primary = await server({ zones: { example: options.expire ? { timers: { expire: options.expire, refresh: 1, retry: 1 } } : {} } });
  const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
  const secondary = await server();
  // The primary lists the secondary as a server of the zone, so it notifies it.
  return { primary, secondary, kid };
}

describe('secondary replicas', () => {
  it('copies a zone with a full transfer, answers like the primary, and converges after notify', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    primary.ctx.credentials.allow('example', 'sec1', secondary.url);
    const cred = primary.ctx.credentials.allowed('example').sec1!;
    for (let i = 0; i < 20; i++) await register(primary, `user${i}@example`);

    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    secondary.ctx.credentials.setOwn('example', { name: 'sec1', secret: cred.secret });
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.transfers.full).toBe(1);
    const [p, s] = [await zoneState(primary), await zoneState(secondary)];
    expect(s).toMatchObject({ serial: p.serial, digest: p.digest, role: 'secondary', record: p.record });

    // The secondary serves the same signed answers and denials.
    for (const path of ['/v1/resolve/user3@example', '/v1/resolve/nobody@example']) {
      const a = await (await fetch(`${primary.url}${path}`)).json();
      const b = await (await fetch(`${secondary.url}${path}`)).json();
      expect(b).toEqual(a);
    }

    // New registrations reach the secondary through notify, incrementally.
    for (let i = 20; i < 30; i++) await register(primary, `user${i}@example`);
    const target = (await zoneState(primary)).serial;
    await until(async () => (await zoneState(secondary)).serial === target, 'the secondary to reach the primary serial');
    expect((await zoneState(secondary)).digest).toBe((await zoneState(primary)).digest);
    expect(secondary.ctx.replicator.statuses()[0]!.transfers.incremental).toBeGreaterThan(0);
    expect((await fetch(`${secondary.url}/v1/resolve/user29@example`)).status).toBe(200);
  });

  it('refuses transfers and notifies without valid credentials, revealing nothing', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    primary.ctx.credentials.allow('example', 'sec1', null);
    const noAuth = await fetch(`${primary.url}/v1/zones/example/transfer`);
    expect(noAuth.status).toBe(401);
    const body = await noAuth.text();
    expect(body).not.toContain('serial');
    const bad = await fetch(`${primary.url}/v1/zones/example/transfer`, {
      headers: { authorization: `IDNS-HMAC name="sec1", ts="${Math.floor(Date.now() / 1000)}", mac="${'A'.repeat(43)}"` },
    });
    expect(bad.status).toBe(403);

    // A secondary with a wrong secret fails to copy and keeps serving nothing.
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    secondary.ctx.credentials.setOwn('example', { name: 'sec1', secret: 'B'.repeat(43) });
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.lastError).toContain('auth_failed');
    expect((await fetch(`${secondary.url}/v1/resolve/a@example`)).status).toBe(503);

    // A notify to a secondary that holds a credential must carry it.
    const notify = await fetch(`${secondary.url}/v1/zones/example/notify`, { method: 'POST', body: '{}' });
    expect(notify.status).toBe(401);
  });

  it('takes a full transfer when the journal no longer reaches back', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    await register(primary, 'a@example');
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    for (let i = 0; i < 5; i++) await register(primary, `more${i}@example`);
    // Trim the primary's journal to its last entry only.
    new Housekeeper(primary.ctx.store, primary.ctx.clock, primary.ctx.log, { maxEntries: 1, maxAgeSeconds: 3600 }).trim('example');
    const since = (await zoneState(secondary)).serial;
    const tooOld = await fetch(`${primary.url}/v1/zones/example/transfer?since=${since}`);
    expect(tooOld.status).toBe(410);
    expect(((await tooOld.json()) as { error: { code: string } }).error.code).toBe('journal_too_old');
    const before = secondary.ctx.replicator.statuses()[0]!.transfers.full;
    await secondary.ctx.replicator.checkNow('example');
    expect(secondary.ctx.replicator.statuses()[0]!.transfers.full).toBe(before + 1);
    expect((await zoneState(secondary)).digest).toBe((await zoneState(primary)).digest);
  });

  // Both full-transfer formats (section 11.1): the compact one a secondary asks for, and NDJSON, which a
  // source that does not know `format=compact` sends instead (the proxy then drops the parameter).
  // The records follow the start line and the log section: `r` is the first record line.
  const tampers: [string, (lines: string[], f: LineFormat, r: number) => string[]][] = [
    ['alters', (lines, f) => lines.map((l) => (f.isRecord(l) && f.type(l) === 'handle' ? f.alter(l) : l))],
    ['drops', (lines, f, r) => lines.filter((l, i) => !(f.isRecord(l) && i === r + 1))],
    ['adds', (lines, f, r) => [...lines.slice(0, r + 1), f.rekey(lines[r]!, 'x'), ...lines.slice(r + 1)]],
    ['repeats', (lines, _f, r) => [...lines.slice(0, r + 1), lines[r]!, ...lines.slice(r + 1)]],
    ['cuts short', (lines, _f, r) => lines.slice(0, r + 2)],
    ['appends a record after the end line to', (lines, _f, r) => [...lines, lines[r]!]],
  ];
  it.each(tampers.flatMap(([what, tamper]) => (['compact', 'ndjson'] as const).map((format) => [what, format, tamper] as const)))(
    'rejects a full transfer whose stream a man in the middle %s (%s), keeping its copy',
    async (_what, format, tamper) => {
      const { primary, secondary, kid } = await primaryAndSecondary();
      for (let i = 0; i < 5; i++) await register(primary, `user${i}@example`);
      let seen = '';
      const mitm = await tamperingProxy(
        primary.url,
        (path, text) => {
          if (!path.includes('/transfer')) return text;
          seen = path;
          const lines = text.trimEnd().split('\n');
          return tamper(lines, LINE_FORMATS[format], lines.findIndex(LINE_FORMATS[format].isRecord)).join('\n') + '\n';
        },
        () => false,
        format === 'ndjson' ? (path) => path.replace(/[?&]format=compact/, '') : (path) => path,
      );
      secondary.ctx.zones.createSecondary('example', { primaries: [mitm], ds: [kid] });
      const status = await secondary.ctx.replicator.checkNow('example');
      expect(seen).toContain('/transfer');
      expect(status.lastError).toMatch(
        /digest|stopped before|announced|another zone record|line|repeats|after its end line|would be refused by a resolver|carries more than the \d+ records/,
      );
      expect(status.serial).toBeNull();
      expect((await fetch(`${secondary.url}/v1/resolve/user1@example`)).status).toBe(503);
    },
  );

  it.each(['compact', 'ndjson'] as const)('copies a zone through either transfer format (%s) with the same result', async (format) => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    for (let i = 0; i < 5; i++) await register(primary, `user${i}@example`);
    let type = '';
    const proxy = await tamperingProxy(
      primary.url,
      (path, text, contentType) => {
        if (path.includes('/transfer')) type = contentType;
        return text;
      },
      () => false,
      format === 'ndjson' ? (path) => path.replace(/[?&]format=compact/, '') : (path) => path,
    );
    secondary.ctx.zones.createSecondary('example', { primaries: [proxy], ds: [kid] });
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.lastError).toBeNull();
    expect(type).toBe(format === 'compact' ? 'application/x-idns-compact' : 'application/x-ndjson');
    const [p, s] = [await zoneState(primary), await zoneState(secondary)];
    expect(s).toMatchObject({ serial: p.serial, digest: p.digest, record: p.record });
  });

  it('serves a full transfer as NDJSON by default, compact on request (the same records), and refuses an unknown format', async () => {
    const { primary } = await primaryAndSecondary();
    for (let i = 0; i < 3; i++) await register(primary, `user${i}@example`);
    const ndjson = await fetch(`${primary.url}/v1/zones/example/transfer`);
    expect(ndjson.headers.get('content-type')).toBe('application/x-ndjson');
    const lines = (await ndjson.text())
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { kind: string; type?: string; key?: string; record: string });
    const compact = await fetch(`${primary.url}/v1/zones/example/transfer?format=compact`);
    expect(compact.headers.get('content-type')).toBe('application/x-idns-compact');
    const text = await compact.text();
    expect(Buffer.from(text).every((b) => b < 0x80)).toBe(true);
    const compactLines = text.trimEnd().split('\n');
    // The same JSON lines (start, the log section, end), and the same records in the same order.
    expect(compactLines.length).toBe(lines.length);
    compactLines.forEach((line, i) => {
      const l = lines[i]!;
      expect(line.startsWith('{') ? JSON.parse(line) : line).toEqual(l.kind === 'record' ? `${l.type}\t${l.key}\t${l.record}` : l);
    });
    expect(lines.map((l) => l.kind)).toEqual(['start', 'log', 'leaves', ...Array(lines.length - 4).fill('record'), 'end']);
    expect(lines.at(-1)).toMatchObject({ kind: 'end', count: lines.length - 4 });
    expect(lines.filter((l) => l.type === 'handle').map((l) => l.key)).toEqual(['user0@example', 'user1@example', 'user2@example']);
    // An incremental transfer is NDJSON whatever the format asked.
    const serial = (await zoneState(primary)).serial;
    expect((await fetch(`${primary.url}/v1/zones/example/transfer?since=${serial - 1}&format=compact`)).headers.get('content-type')).toBe(
      'application/x-ndjson',
    );
    const bad = await fetch(`${primary.url}/v1/zones/example/transfer?format=xml`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('invalid_request');
  });

  it('applies an incremental transfer whose changes put, replace and delete the same records again', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    const doomed = await primary.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: 'doomed@example', endpoint: 'https://home.example/d', keys: [owner.public] }, owner.private),
    );
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    // Between two checks: a handle registered and updated twice, another registered and deleted, an old one deleted.
    let op = (
      await primary.ctx.changes.submit(
        signChangeRequest({ action: 'register', handle: 'busy@example', endpoint: 'https://home.example/1', keys: [owner.public] }, owner.private),
      )
    ).op;
    for (const n of [2, 3]) {
      op = (
        await primary.ctx.changes.submit(
          signChangeRequest({ action: 'update', handle: 'busy@example', endpoint: `https://home.example/${n}`, keys: [owner.public], prev: op }, owner.private),
        )
      ).op;
    }
    const brief = await primary.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: 'brief@example', endpoint: 'https://home.example/b', keys: [owner.public] }, owner.private),
    );
    await primary.ctx.changes.submit(signChangeRequest({ action: 'delete', handle: 'brief@example', prev: brief.op }, owner.private));
    await primary.ctx.changes.submit(signChangeRequest({ action: 'delete', handle: 'doomed@example', prev: doomed.op }, owner.private));
    const { full, incremental, failed } = secondary.ctx.replicator.statuses()[0]!.transfers;
    const status = await secondary.ctx.replicator.checkNow('example');
    // One incremental transfer carried all of it (nothing notifies this secondary: the zone lists only the primary).
    expect(status.lastError).toBeNull();
    expect(status.transfers).toEqual({ full, incremental: incremental + 1, failed });
    const [p, s] = [await zoneState(primary), await zoneState(secondary)];
    expect(s).toMatchObject({ serial: p.serial, digest: p.digest, record: p.record });
    for (const h of ['busy@example', 'brief@example', 'doomed@example']) {
      expect(await (await fetch(`${secondary.url}/v1/resolve/${h}`)).json()).toEqual(await (await fetch(`${primary.url}/v1/resolve/${h}`)).json());
    }
  });

  it('follows a serial moved forward by zone bump-serial with an incremental transfer, and changes after it', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    await register(primary, 'before@example');
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    const from = (await zoneState(primary)).serial;
    expect(primary.ctx.zones.bumpSerial('example', from + 1000)).toBe(from + 1000);
    await register(primary, 'after@example');
    const { incremental } = secondary.ctx.replicator.statuses()[0]!.transfers;
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.lastError).toBeNull();
    expect(status.transfers.incremental).toBe(incremental + 1);
    const [p, s] = [await zoneState(primary), await zoneState(secondary)];
    expect(p.serial).toBe(from + 1001);
    expect(s).toMatchObject({ serial: p.serial, digest: p.digest, record: p.record });
  });

  it('answers WebFinger by actor URL on a secondary like the primary, through full and incremental transfers', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    // More than one multi-row insert's worth of records (64), so a full transfer loads them in bulk.
    await Promise.all(Array.from({ length: 70 }, (_, i) => register(primary, `actor${i}@example`)));
    const moving = await primary.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: 'moving@example', endpoint: 'https://home.example/old', keys: [owner.public] }, owner.private),
    );
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    expect((await secondary.ctx.replicator.checkNow('example')).transfers.full).toBe(1);
    const byUrl = async (server: TestServer, url: string) => {
      const res = await fetch(`${server.url}/.well-known/webfinger?resource=${encodeURIComponent(url)}`);
      return { status: res.status, subject: ((await res.json()) as { subject?: string }).subject };
    };
    for (const i of [0, 41, 69]) {
      expect(await byUrl(secondary, `https://home.example/actor${i}@example`)).toEqual({ status: 200, subject: `acct:actor${i}@example` });
    }
    expect(await byUrl(secondary, 'https://home.example/old')).toEqual({ status: 200, subject: 'acct:moving@example' });

    await primary.ctx.changes.submit(
      signChangeRequest(
        { action: 'update', handle: 'moving@example', endpoint: 'https://home.example/new', keys: [owner.public], prev: moving.op },
        owner.private,
      ),
    );
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.lastError).toBeNull();
    for (const server of [primary, secondary]) {
      expect((await byUrl(server, 'https://home.example/old')).status).toBe(404);
      expect(await byUrl(server, 'https://home.example/new')).toEqual({ status: 200, subject: 'acct:moving@example' });
    }
  });

  it('rejects a tampered incremental transfer and keeps its previous copy', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    await register(primary, 'a@example');
    let tampering = false;
    const mitm = await tamperingProxy(primary.url, (path, text) =>
      tampering && path.includes('since=')
        ? text
            .trimEnd()
            .split('\n')
            .map((l) => (l.includes('"kind":"put"') && l.includes('"type":"handle"') ? alterRecord(l) : l))
            .join('\n') + '\n'
        : text,
    );
    secondary.ctx.zones.createSecondary('example', { primaries: [mitm], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    const copy = await zoneState(secondary);
    tampering = true;
    await register(primary, 'b@example');
    // The tampered incremental transfer is refused; the secondary falls back to a full transfer (which
    // this proxy leaves alone), so it ends with the primary's genuine copy, not the tampered one.
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.transfers).toMatchObject({ full: 2, incremental: 0, failed: 1 });
    expect(status.lastError).toBeNull();
    expect((await zoneState(secondary)).serial).toBe(copy.serial + 1);
    expect((await zoneState(secondary)).digest).toBe((await zoneState(primary)).digest);
    expect((await fetch(`${secondary.url}/v1/resolve/b@example`)).status).toBe(200);
  });

  it('rejects an incremental transfer with a change after its end line, keeping its previous copy', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    await register(primary, 'a@example');
    let appending = false;
    const mitm = await tamperingProxy(primary.url, (path, text) => {
      if (!appending || !path.includes('since=')) return text;
      const lines = text.trimEnd().split('\n');
      return [...lines, lines.find((l) => l.includes('"kind":"put"'))!].join('\n') + '\n';
    });
    secondary.ctx.zones.createSecondary('example', { primaries: [mitm], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    const copy = await zoneState(secondary);
    appending = true;
    await register(primary, 'b@example');
    const status = await secondary.ctx.replicator.checkNow('example');
    // Refused (and so counted as failed), then healed by a full transfer.
    expect(status.transfers).toMatchObject({ full: 2, incremental: 0, failed: 1 });
    expect(status.lastError).toBeNull();
    expect((await zoneState(secondary)).serial).toBe(copy.serial + 1);
    expect((await zoneState(secondary)).digest).toBe((await zoneState(primary)).digest);
  });

  it('redirects writes sent to a secondary to the primary (307, same path)', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    const request = signChangeRequest({ action: 'register', handle: 'r@example', endpoint: 'https://h.example/', keys: [owner.public] }, owner.private);
    const res = await fetch(`${secondary.url}/v1/handles`, { method: 'POST', body: JSON.stringify({ request }), redirect: 'manual' });
    expect(res.status).toBe(307);
    expect(res.headers.get('location')).toBe(`${primary.url}/v1/handles`);
    // Clients that follow the redirect end up registered at the primary.
    const followed = await fetch(`${secondary.url}/v1/handles`, {
      method: 'POST',
      body: JSON.stringify({ request }),
      headers: { 'content-type': 'application/json' },
    });
    expect(followed.status).toBe(201);
    expect((await fetch(`${primary.url}/v1/resolve/r@example`)).status).toBe(200);
  });

  it('redirects writes to the server it copies from before its first copy (no 307 without a Location)', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    // No check has run: the secondary holds no zone record naming its primary yet.
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    const request = signChangeRequest({ action: 'register', handle: 'early@example', endpoint: 'https://h.example/', keys: [owner.public] }, owner.private);
    const res = await fetch(`${secondary.url}/v1/handles`, { method: 'POST', body: JSON.stringify({ request }), redirect: 'manual' });
    expect(res.status).toBe(307);
    expect(res.headers.get('location')).toBe(`${primary.url}/v1/handles`);
    expect(((await res.json()) as { error: unknown }).error).toMatchObject({ code: 'not_primary', details: { zone: 'example', primary: primary.url } });
  });

  it('stops answering after expire without a successful check, says why, and recovers', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary({ expire: 2 });
    await register(primary, 'a@example');
    let cutOff = false;
    const link = await tamperingProxy(
      primary.url,
      (_path, text) => text,
      () => cutOff,
    );
    secondary.ctx.zones.createSecondary('example', { primaries: [link], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    expect((await fetch(`${secondary.url}/v1/resolve/a@example`)).status).toBe(200);
    // Cut the secondary off from its primary.
    cutOff = true;
    await until(async () => (await fetch(`${secondary.url}/v1/resolve/a@example`)).status === 503, 'the copy to expire');
    const answer = (await (await fetch(`${secondary.url}/v1/resolve/a@example`)).json()) as { error: { code: string; message: string } };
    expect(answer.error).toMatchObject({ code: 'zone_unavailable' });
    expect(answer.error.message).toContain('expired');
    const ready = await fetch(`${secondary.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toContain('expired');
    // Reconnected, it recovers at its next check (retry is 1 s), with the changes made meanwhile.
    await register(primary, 'b@example');
    cutOff = false;
    await until(async () => (await fetch(`${secondary.url}/v1/resolve/b@example`)).status === 200, 'the secondary to recover');
    expect((await fetch(`${secondary.url}/readyz`)).status).toBe(200);
    expect((await zoneState(secondary)).digest).toBe((await zoneState(primary)).digest);
  });

  it('refreshes, retries and expires on a virtual clock, without sleeping', async () => {
    const primary = await server({ zones: { example: { timers: { refresh: 60, retry: 10, expire: 300 } } } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    await register(primary, 'a@example');
    let cutOff = false;
    const link = await tamperingProxy(
      primary.url,
      (_p, text) => text,
      () => cutOff,
    );
    const clock = new ManualClock(Date.now());
    const secondary = await server({ clock });
    secondary.ctx.zones.createSecondary('example', { primaries: [link], ds: [kid] });
    const status = await secondary.ctx.replicator.checkNow('example');
    const t0 = clock.now();
    expect(status.lastAttempt).toBe(t0);
    /** Advances the virtual clock and waits (briefly, for real I/O) for the check it may trigger to finish. */
    const step = async (ms: number) => {
      clock.advance(ms);
      await until(() => !secondary.ctx.replicator.busy('example'), 'the check to finish');
    };

    // Refresh: nothing before 60 s, a check at 60 s.
    await step(59_000);
    expect(status.lastAttempt).toBe(t0);
    await step(1_000);
    expect(status.lastAttempt).toBe(t0 + 60_000);
    expect(status.lastError).toBeNull();

    // Retry: cut off, the check at 120 s fails; the next comes 10 s later, not 60.
    cutOff = true;
    await step(60_000);
    expect(status.lastAttempt).toBe(t0 + 120_000);
    expect(status.lastError).not.toBeNull();
    await step(9_000);
    expect(status.lastAttempt).toBe(t0 + 120_000);
    await step(1_000);
    expect(status.lastAttempt).toBe(t0 + 130_000);

    // Expire: still answering until 300 s after the last success (at 60 s), then 503.
    while (clock.now() < t0 + 360_000) await step(10_000);
    expect((await fetch(`${secondary.url}/v1/resolve/a@example`)).status).toBe(200);
    await step(10_000);
    expect((await fetch(`${secondary.url}/v1/resolve/a@example`)).status).toBe(503);

    // Reconnected: the next retry succeeds and the zone is served again.
    cutOff = false;
    await step(10_000);
    expect(status.lastError).toBeNull();
    expect((await fetch(`${secondary.url}/v1/resolve/a@example`)).status).toBe(200);
  });

  it('chains converge on notifies alone: a secondary that took a new serial notifies the servers after it', async () => {
    const b = await server();
    const c = await server();
    const a = await server();
    a.ctx.zones.create('example', { servers: [a.url, b.url, c.url] });
    const kid = a.ctx.zones.info('example').keyThumbprints[0]!;
    await register(a, 'first@example');
    b.ctx.zones.createSecondary('example', { primaries: [a.url], ds: [kid] });
    c.ctx.zones.createSecondary('example', { primaries: [b.url], ds: [kid] });
    await b.ctx.replicator.checkNow('example');
    await c.ctx.replicator.checkNow('example');
    // From here on nothing but notifies: the refresh timer (an hour) never fires within the test.
    await register(a, 'second@example');
    const want = await zoneState(a);
    await until(async () => (await zoneState(c)).serial === want.serial, 'the end of the chain to take the new serial', 10_000);
    expect(await zoneState(c)).toMatchObject({ serial: want.serial, digest: want.digest });
    expect(b.ctx.notifier.sent).toBeGreaterThan(0);
  });

  it("shows a primary's secondaries on its operator page: the last notify to each and the last transfer each took", async () => {
    const b = await server();
    const a = await server();
    a.ctx.zones.create('example', { servers: [a.url, b.url] });
    const kid = a.ctx.zones.info('example').keyThumbprints[0]!;
    await register(a, 'first@example');
    b.ctx.zones.createSecondary('example', { primaries: [a.url], ds: [kid] });
    await b.ctx.replicator.checkNow('example');
    await register(a, 'second@example');
    const serial = (await zoneState(a)).serial;
    await until(async () => (await zoneState(b)).serial === serial, 'the notified secondary to copy', 10_000);
    const row = /<tr data-zone="example">([\s\S]*?)<\/tr>/.exec(await (await fetch(`${a.url}/`)).text())?.[1] ?? '';
    expect(row).toContain(`notified <code>${b.url}</code>`);
    expect(row).toMatch(/ago: <span class="ok">taken<\/span>/);
    expect(row).toMatch(new RegExp(`copied by <code>127\\.0\\.0\\.1</code></dt><dd>[^<]* ago: incremental transfer at serial ${serial}`));
  });

  it('chains: a secondary copies from another secondary and converges', async () => {
    const { primary, secondary, third } = await chainWithOneHandle();
    await register(primary, 'b@example');
    await secondary.ctx.replicator.checkNow('example');
    await third.ctx.replicator.checkNow('example');
    const [p, t] = [await zoneState(primary), await zoneState(third)];
    expect(t.serial).toBe(p.serial);
    expect(t.digest).toBe(p.digest);
    expect(third.ctx.replicator.statuses()[0]!.transfers.incremental).toBe(1);
  });

  it('serves the same handle history as the primary, entry for entry, through full and incremental transfers, chained and after promotion', async () => {
    const { primary, secondary, third } = await chainWithOneHandle();
    // An update after the copies: it reaches both by incremental transfer.
    const current = (await (await fetch(`${primary.url}/v1/resolve/a@example`)).json()) as { record: string };
    const prev = JSON.parse(Buffer.from(current.record.split('.')[1]!, 'base64url').toString()).op as string;
    await primary.ctx.changes.submit(
      signChangeRequest({ action: 'update', handle: 'a@example', endpoint: 'https://moved.example/a', keys: [owner.public], prev }, owner.private),
    );
    await secondary.ctx.replicator.checkNow('example');
    await third.ctx.replicator.checkNow('example');
    const logOf = async (s: TestServer) => {
      const res = await fetch(`${s.url}/v1/handles/a@example/log`);
      expect(res.status).toBe(200);
      return ((await res.json()) as { operations: unknown[] }).operations;
    };
    const want = await logOf(primary);
    expect(want).toHaveLength(2);
    expect(want).toMatchObject([
      { seq: 1, action: 'register' },
      { seq: 2, action: 'update' },
    ]);
    expect(await logOf(secondary)).toEqual(want);
    expect(await logOf(third)).toEqual(want);
    expect(third.ctx.replicator.statuses()[0]!.transfers.incremental).toBe(1);
    await primary.server.close();
    secondary.ctx.zones.promote('example', `${primary.dataDir}/keys/example`, { primary: secondary.url });
    expect(await logOf(secondary)).toEqual(want);
  });

  it('fences an old primary that comes back after a promotion: no writes (307 to the new primary), no signing, until unfenced', async () => {
    const dirA = tempDir();
    const b = await server();
    // C claims the zone too, with a key of its own and a newer serial: it must not fence anyone.
    const c = await server({ zones: { example: {} } });
    for (let i = 0; i < 5; i++) await register(c, `c${i}@example`);
    let a: TestServer = await startTestServer({ dataDir: dirA.dir });
    a.ctx.zones.create('example', { servers: [a.url, b.url, c.url] });
    const kid = a.ctx.zones.info('example').keyThumbprints[0]!;
    await register(a, 'a@example');
    expect(await a.ctx.fencer.check('example')).toBe(false);
    b.ctx.zones.createSecondary('example', { primaries: [a.url], ds: [kid] });
    await b.ctx.replicator.checkNow('example');

    // A goes away; B is promoted with A's key (from a backup) and takes a change.
    await a.close();
    b.ctx.zones.promote('example', `${dirA.dir}/keys/example`, { primary: b.url, policy: 'open' });
    await register(b, 'b@example');
    const promoted = await zoneState(b);

    // A comes back (on another port): at start-up it asks the zone's other servers and learns of B.
    a = await startTestServer({ dataDir: dirA.dir, background: true });
    started.push(a);
    await until(() => a.ctx.zones.info('example').settings?.fencedBy !== undefined, 'the fence');
    expect(a.ctx.zones.info('example').settings!.fencedBy).toEqual({ primary: b.url, serial: promoted.serial });
    const before = a.ctx.zones.info('example');
    // It answers nothing from its stale copy: resolvers go on to the zone's other servers.
    for (const path of ['/v1/resolve/a@example', '/v1/zones/example']) {
      const res = await fetch(`${a.url}${path}`);
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({
        code: 'zone_unavailable',
        message: expect.stringContaining('fenced here'),
      });
    }
    const write = await fetch(`${a.url}/v1/handles`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        request: signChangeRequest({ action: 'register', handle: 'late@example', endpoint: 'https://home.example/late', keys: [owner.public] }, owner.private),
      }),
      redirect: 'manual',
    });
    expect(write.status).toBe(307);
    expect(write.headers.get('location')).toBe(`${b.url}/v1/handles`);
    expect(a.ctx.resigner.runOnce()).toBe(0);
    expect(() => a.ctx.zones.bumpSerial('example', before.serial + 10)).toThrow(expect.objectContaining({ code: 'not_primary' }));
    expect(a.ctx.zones.info('example')).toMatchObject({ serial: before.serial, digest: before.digest });

    // The operator retires B and lets A go on: its serial moves past B's, so none is signed twice.
    expect(a.ctx.zones.unfence('example')).toBe(promoted.serial + 1);
    await register(a, 'after@example');
    expect((await zoneState(a)).serial).toBe(promoted.serial + 2);
    dirA.remove();
  });

  it("fencing reads other servers' answers within bounds: a fencing answer past 64 KiB and a silent server fence nothing", async () => {
    const listen = async (handler: Parameters<typeof createServer>[1]) => {
      const srv = createServer(handler);
      proxies.push(srv);
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    };
    const b = await server();
    // Stands for B, passing B's zone record answer on, padded past what a zone record answer may be when asked.
    let pad = 0;
    const padded = await listen((req, res) => {
      void fetch(`${b.url}${req.url}`)
        .then((r) => r.json())
        .then((body) => res.end(JSON.stringify({ ...(body as object), pad: 'x'.repeat(pad) })));
    });
    let asked = 0;
    const silent = await listen(() => void asked++);
    const a = await server();
    a.ctx.zones.create('example', { servers: [a.url, padded, silent] });
    const kid = a.ctx.zones.info('example').keyThumbprints[0]!;
    await register(a, 'a@example');
    b.ctx.zones.createSecondary('example', { primaries: [a.url], ds: [kid] });
    await b.ctx.replicator.checkNow('example');
    b.ctx.zones.promote('example', `${a.dataDir}/keys/example`, { primary: b.url, policy: 'open' });

    pad = 100 * 1024;
    const started = Date.now();
    expect(await a.ctx.fencer.check('example')).toBe(false);
    // The silent server was asked and given up on after the fencer's 3 s, not the transport's minutes.
    expect(asked).toBeGreaterThanOrEqual(1);
    expect(Date.now() - started).toBeLessThan(10_000);
    // The same answer within the bound fences: it was the size that stopped it.
    pad = 0;
    expect(await a.ctx.fencer.check('example')).toBe(true);
    expect(a.ctx.zones.info('example').settings!.fencedBy).toEqual({ primary: b.url, serial: (await zoneState(b)).serial });
  });

  it('makes a fenced primary a secondary of the new primary in place: it copies the new zone', async () => {
    const dirA = tempDir();
    const b = await server();
    let a: TestServer = await startTestServer({ dataDir: dirA.dir });
    a.ctx.zones.create('example', { servers: [a.url, b.url] });
    const kid = a.ctx.zones.info('example').keyThumbprints[0]!;
    await register(a, 'a@example');
    b.ctx.zones.createSecondary('example', { primaries: [a.url], ds: [kid] });
    await b.ctx.replicator.checkNow('example');
    await a.close();
    b.ctx.zones.promote('example', `${dirA.dir}/keys/example`, { primary: b.url, policy: 'open' });
    await register(b, 'b@example');
    a = await startTestServer({ dataDir: dirA.dir, background: true });
    started.push(a);
    expect(await a.ctx.fencer.check('example')).toBe(true);
    // Re-pointed: a secondary of B, trusting the keys of its own zone record.
    expect(a.ctx.zones.repoint('example', { primaries: [b.url] })).toMatchObject({ role: 'secondary', secondary: { primaries: [b.url], ds: [kid] } });
    const status = await a.ctx.replicator.checkNow('example');
    expect(status.lastError).toBeNull();
    expect(await zoneState(a)).toMatchObject({ role: 'secondary', serial: (await zoneState(b)).serial, digest: (await zoneState(b)).digest });
    expect(await (await fetch(`${a.url}/v1/resolve/b@example`)).json()).toMatchObject({ status: 'answer' });
    dirA.remove();
  });

  it('promotion keeps how the zone was run: TTLs, timers, recovery window and signature validity, from its signed records', async () => {
    const primary = await server({
      zones: { example: { timers: { ttl: 120, minimum: 60, refresh: 900, retry: 90, expire: 86_400, handleTtl: 600, recoveryWindow: 3600 } } },
    });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    await register(primary, 'a@example');
    const secondary = await server();
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    const was = primary.ctx.zones.info('example').settings!;
    await primary.server.close();
    secondary.ctx.zones.promote('example', `${primary.dataDir}/keys/example`, { primary: secondary.url, policy: 'open' });
    const now = secondary.ctx.zones.info('example').settings!;
    for (const key of ['ttl', 'minimum', 'refresh', 'retry', 'expire', 'handleTtl', 'recoveryWindow', 'signatureValidity'] as const) {
      expect(now[key], key).toBe(was[key]);
    }
    await register(secondary, 'b@example');
    const answer = (await (await fetch(`${secondary.url}/v1/resolve/b@example`)).json()) as { record: string };
    expect(JSON.parse(Buffer.from(answer.record.split('.')[1]!, 'base64url').toString()).ttl).toBe(600);
  });

  it('re-points a secondary in place to another source, going on with incremental transfers; deletes a zone', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    await register(primary, 'a@example');
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    const third = await server();
    third.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await third.ctx.replicator.checkNow('example');
    // The secondary now copies from the third server instead of the primary, keeping the keys it trusted.
    expect(secondary.ctx.zones.repoint('example', { primaries: [third.url] }).secondary).toEqual({ primaries: [third.url], ds: [kid] });
    await register(primary, 'b@example');
    await third.ctx.replicator.checkNow('example');
    const { full, incremental } = secondary.ctx.replicator.statuses()[0]!.transfers;
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.lastError).toBeNull();
    expect(status.transfers).toMatchObject({ full, incremental: incremental + 1 });
    expect(await zoneState(secondary)).toMatchObject({ serial: (await zoneState(primary)).serial, digest: (await zoneState(primary)).digest });
    // A primary that is not fenced is not made a secondary.
    expect(() => primary.ctx.zones.repoint('example', { primaries: [third.url] })).toThrow(/only a fenced one/);
    // Deleted: gone from the server (404 on its zone, not authoritative for its handles), and can be made again.
    secondary.ctx.zones.deleteZone('example');
    expect((await fetch(`${secondary.url}/v1/zones/example`)).status).toBe(404);
    expect((await fetch(`${secondary.url}/v1/resolve/a@example`)).status).toBe(421);
    primary.ctx.zones.deleteZone('example');
    expect(primary.ctx.store.records.count('example', 'handle')).toBe(0);
    primary.ctx.zones.create('example', { servers: [primary.url] });
    expect(primary.ctx.zones.info('example').handles).toBe(0);
  });

  it('promotes a secondary to primary with the zone key from a backup', async () => {
    const { primary, secondary, kid } = await primaryAndSecondary();
    await register(primary, 'a@example');
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    const before = await zoneState(secondary);
    const keyDir = `${primary.dataDir}/keys/example`;
    await primary.server.close();
    expect(() => secondary.ctx.zones.promote('example', '/nonexistent', { primary: secondary.url })).toThrow(
      expect.objectContaining({ code: 'key_unavailable' }),
    );
    const info = secondary.ctx.zones.promote('example', keyDir, { primary: secondary.url, policy: 'open' });
    expect(info).toMatchObject({ role: 'primary', keyThumbprints: [kid] });
    expect(info.serial).toBe(before.serial + 1);
    // The copy's signatures are fresh: promotion restores their expiries, so nothing is due for re-signing.
    expect(secondary.ctx.resigner.runOnce()).toBe(0);
    // It accepts writes now, signed with the same key, continuing the serial.
    await register(secondary, 'b@example');
    const after = await zoneState(secondary);
    expect(after.serial).toBe(before.serial + 2);
    const answer = await (await fetch(`${secondary.url}/v1/resolve/a@example`)).json();
    expect(answer).toMatchObject({ status: 'answer' });
  });
});

/** Rewrites the endpoint inside a transfer line's record (keeping its signature, which then no longer matches). */
function alterRecord(line: string): string {
  const parsed = JSON.parse(line) as { record: string };
  parsed.record = alterJws(parsed.record);
  return JSON.stringify(parsed);
}

function alterJws(jws: string): string {
  const [h, p, sig] = jws.split('.') as [string, string, string];
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  payload.endpoint = 'https://evil.example/';
  return `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${sig}`;
}

/** How a man in the middle reads and rewrites the record lines of each full-transfer format. */
interface LineFormat {
  isRecord(line: string): boolean;
  type(line: string): string;
  alter(line: string): string;
  rekey(line: string, prefix: string): string;
}

const LINE_FORMATS: Record<'compact' | 'ndjson', LineFormat> = {
  compact: {
    isRecord: (l) => !l.startsWith('{'),
    type: (l) => l.split('\t')[0]!,
    alter: (l) => {
      const [type, key, jws] = l.split('\t') as [string, string, string];
      return `${type}\t${key}\t${alterJws(jws)}`;
    },
    rekey: (l, prefix) => {
      const [type, key, jws] = l.split('\t') as [string, string, string];
      return `${type}\t${prefix}${key}\t${jws}`;
    },
  },
  ndjson: {
    isRecord: (l) => l.includes('"kind":"record"'),
    type: (l) => (JSON.parse(l) as { type: string }).type,
    alter: alterRecord,
    rekey: (l, prefix) => l.replace('"key":"', `"key":"${prefix}`),
  },
};

/** An HTTP proxy in front of `target` that rewrites response bodies: a man in the middle. */
async function tamperingProxy(
  target: string,
  rewrite: (path: string, body: string, contentType: string) => string,
  down: () => boolean = () => false,
  forward: (path: string) => string = (path) => path,
): Promise<string> {
  const proxy = createServer(async (req, res) => {
    if (down()) {
      req.socket.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const upstream = await fetch(`${target}${forward(req.url ?? '')}`, {
      method: req.method,
      headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host' && k !== 'connection') as [string, string][]),
      ...(chunks.length ? { body: Buffer.concat(chunks) } : {}),
    });
    const text = rewrite(req.url ?? '', await upstream.text(), upstream.headers.get('content-type') ?? '');
    res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
    res.end(text);
  });
  proxies.push(proxy);
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
}
