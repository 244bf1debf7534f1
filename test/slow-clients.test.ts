import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../src/clock.js';
import { DEFAULT_CONFIG, type ServerConfig } from '../src/config.js';
import { AppContext } from '../src/context.js';
import { startServer } from '../src/http/server.js';
import { createLogger } from '../src/log.js';
import { clientKeyOf } from '../src/http/rate-limits.js';
import { makeServerCertificate } from './support/certs.js';
import { drip, openRaw, parseResponse, type RawConnection } from './support/raw-http.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

// Small limits keep the test short; the server must hold them within a second whatever their size.
const LIMITS: ServerConfig['limits'] = { ...DEFAULT_CONFIG.limits, headersTimeoutMs: 1000, requestTimeoutMs: 2000, keepAliveTimeoutMs: 2000 };
/** How late past its limit a connection may be cut. */
const SLACK_MS = 1000;
const HEAD = 'GET /v1/zones/example HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n';

/** The connection was cut between `limitMs` and `limitMs` + SLACK_MS after it opened, with a 408 JSON answer (when `answered`). */
async function expectCutAt(c: RawConnection, limitMs: number, answered = true): Promise<void> {
  const { afterMs, received } = await c.closed;
  expect(afterMs).toBeGreaterThanOrEqual(limitMs - 100);
  expect(afterMs).toBeLessThan(limitMs + SLACK_MS);
  if (!answered) return;
  const res = parseResponse(received);
  expect(res.status).toBe(408);
  expect(res.headers['content-type']).toBe('application/json');
  expect(res.headers.connection).toBe('close');
  expect(res.json).toMatchObject({ error: { code: 'request_timeout', message: expect.any(String) } });
}

describe.each([
  ['HTTP', false],
  ['HTTPS', true],
] as const)('slow clients over %s', (_name, tls) => {
  const tmp = tempDir('idns-slow-');
  let s: TestServer;
  beforeAll(async () => {
    const files = tls ? makeServerCertificate(tmp.dir) : null;
    s = await startTestServer({
      zones: { example: {} },
      config: { limits: LIMITS, ...(files ? { tls: { cert: files.cert, key: files.key, ca: [] } } : {}) },
    });
  });
  afterAll(async () => {
    await s.close();
    tmp.remove();
  });

  it('cuts a client sending its headers a byte at a time within headersTimeout + 1 s', async () => {
    const c = await openRaw(s.url, { tls });
    drip(c.socket, HEAD, 150);
    await expectCutAt(c, LIMITS.headersTimeoutMs);
  });

  it('cuts a client sending its body a byte at a time within requestTimeout + 1 s, on the application and the registration fast path', async () => {
    const paths = ['POST /v1/handles', 'PUT /v1/handles/alice@example'];
    const conns = await Promise.all(paths.map(() => openRaw(s.url, { tls })));
    conns.forEach((c, i) => {
      c.socket.write(`${paths[i]} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`);
      drip(c.socket, '{"request":"' + 'a'.repeat(900), 150);
    });
    for (const c of conns) await expectCutAt(c, LIMITS.requestTimeoutMs);
  });

  it('cuts a connection that never sends a byte within headersTimeout + 1 s', async () => {
    const c = await openRaw(s.url, { tls });
    await expectCutAt(c, LIMITS.headersTimeoutMs);
  });

  it('closes an idle keep-alive connection within keepAliveTimeout + 1 s of its last response', async () => {
    const c = await openRaw(s.url, { tls });
    c.socket.write('GET /v1/zones/example HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const text = await c.receivedUntil('"record"');
    const answeredAt = performance.now();
    const res = parseResponse(text);
    expect(res.status).toBe(200);
    expect(res.headers.connection).toBe('keep-alive');
    const { afterMs } = await c.closed;
    const idle = c.connectedAt + afterMs - answeredAt;
    expect(idle).toBeGreaterThanOrEqual(LIMITS.keepAliveTimeoutMs - 1100);
    expect(idle).toBeLessThan(LIMITS.keepAliveTimeoutMs + SLACK_MS);
  });

  it('holds a keep-alive connection to the header limit for its next request too', async () => {
    const c = await openRaw(s.url, { tls });
    c.socket.write('GET /v1/zones/example HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await c.receivedUntil('"record"');
    const before = c.received().length;
    const started = performance.now();
    drip(c.socket, HEAD, 150);
    const { afterMs, received } = await c.closed;
    const took = c.connectedAt + afterMs - started;
    expect(took).toBeLessThan(LIMITS.headersTimeoutMs + SLACK_MS);
    expect(parseResponse(received.slice(before)).status).toBe(408);
  });

  if (tls) {
    it('cuts a TCP connection that never starts the TLS handshake within headersTimeout + 1 s', async () => {
      const c = await openRaw(s.url, { tls, handshake: false });
      await expectCutAt(c, LIMITS.headersTimeoutMs, false);
    });

    it('counts the TLS handshake in the time to send the first headers', async () => {
      // A raw connection drips a real handshake's first bytes, then nothing: the cut comes from the accept.
      const c = await openRaw(s.url, { tls, handshake: false });
      drip(c.socket, '\x16\x03\x01\x00', 300);
      await expectCutAt(c, LIMITS.headersTimeoutMs, false);
    });
  }
});

describe('a body cut off by the request timeout', () => {
  it("is the client's doing: logged and counted as a 400, never as an internal error", async () => {
    const tmp = tempDir();
    const lines: string[] = [];
    const ctx = new AppContext(
      { ...structuredClone(DEFAULT_CONFIG), dataDir: tmp.dir, bootstrap: false, limits: LIMITS },
      systemClock,
      createLogger('info', (l) => lines.push(l)),
    );
    const server = await startServer(ctx, '127.0.0.1', 0);
    try {
      ctx.zones.create('example', { servers: [server.url] });
      for (const path of ['POST /v1/handles', 'PUT /v1/handles/alice@example']) {
        const c = await openRaw(server.url);
        c.socket.write(`${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n`);
        drip(c.socket, 'a'.repeat(100), 150);
        await c.closed;
      }
      // The handlers see the cut after the connection closed: wait for both request lines.
      const logged = () => lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'request');
      await expect.poll(logged, { timeout: 10_000, interval: 20 }).toHaveLength(2);
      for (const line of logged()) expect(line).toMatchObject({ level: 'info', status: 400, outcome: 'invalid_request' });
      expect(lines.map((l) => JSON.parse(l).level)).not.toContain('error');
    } finally {
      await server.close();
      await ctx.close();
      tmp.remove();
    }
  });
});

describe('connections per client address', () => {
  const PER_ADDRESS = 4;
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({
      zones: { example: {} },
      config: { limits: { ...DEFAULT_CONFIG.limits, connectionsPerAddress: PER_ADDRESS }, rateLimits: { ...DEFAULT_CONFIG.rateLimits, enabled: true } },
    });
  });
  afterAll(() => s.close());

  /** A connection the server has accepted: it answered a request on it. */
  async function served(): Promise<RawConnection> {
    const c = await openRaw(s.url);
    c.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await c.receivedUntil('\r\n\r\n');
    expect(parseResponse(c.received()).status).toBe(200);
    return c;
  }

  /** Resolves when the server's side of the client connection `c` has closed (call it before closing `c`). */
  function serverSideClosed(c: RawConnection, accepted: Map<number, Socket>): Promise<void> {
    const mine = accepted.get(c.socket.localPort!)!;
    return mine.closed ? Promise.resolve() : new Promise((r) => mine.once('close', () => r()));
  }

  it('refuses the connection past the cap at once, and accepts again after one closes', async () => {
    const accepted = new Map<number, Socket>();
    s.server.server.on('connection', (sock: Socket) => accepted.set(sock.remotePort!, sock));
    const open = [];
    for (let i = 0; i < PER_ADDRESS; i++) open.push(await served());
    expect(s.server.connections.openFrom('127.0.0.1')).toBe(PER_ADDRESS);

    const extra = await openRaw(s.url);
    extra.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const refused = await extra.closed;
    expect(refused.received).toBe('');
    // The refused one took no place.
    expect(s.server.connections.openFrom('127.0.0.1')).toBe(PER_ADDRESS);

    const first = open.shift()!;
    const gone = serverSideClosed(first, accepted);
    first.socket.destroy();
    await gone;
    open.push(await served());

    for (const c of open) {
      const closed = serverSideClosed(c, accepted);
      c.socket.destroy();
      await closed;
    }
    // Every close path released its place: the table is empty again.
    expect(s.server.connections.addresses).toBe(0);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(metrics).toMatch(/idns_http_refused_total\{reason="address_limit"\} 1/);
  });

  it('does not apply the cap when rate limits are off (loopback, benchmarks)', async () => {
    const t = await startTestServer({ config: { limits: { ...DEFAULT_CONFIG.limits, connectionsPerAddress: 1 } } });
    try {
      const conns = await Promise.all([0, 1, 2].map(() => openRaw(t.url)));
      for (const c of conns) c.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      for (const c of conns) expect(parseResponse(await c.receivedUntil('"ok"')).status).toBe(200);
      for (const c of conns) c.socket.destroy();
    } finally {
      await t.close();
    }
  });

  it('caps all connections at limits.maxConnections', async () => {
    const t = await startTestServer({ config: { limits: { ...DEFAULT_CONFIG.limits, maxConnections: 2 } } });
    try {
      const conns = [];
      for (let i = 0; i < 2; i++) {
        const c = await openRaw(t.url);
        c.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
        await c.receivedUntil('"ok"');
        conns.push(c);
      }
      const extra = await openRaw(t.url);
      expect((await extra.closed).received).toBe('');
      for (const c of conns) c.socket.destroy();
    } finally {
      await t.close();
    }
  });

  it('groups IPv6 clients by /64 whatever the text form of the address', () => {
    const key = clientKeyOf('2001:db8::1');
    for (const same of [
      '2001:db8::2',
      '2001:db8:0:0:1::1',
      '2001:0db8:0000:0000:ffff:ffff:ffff:ffff',
      '2001:DB8::9',
      '2001:db8::1.2.3.4',
      'fe80::1%eth0'.replace('fe80', '2001:db8'),
    ]) {
      expect(clientKeyOf(same), same).toBe(key);
    }
    expect(clientKeyOf('2001:db8:0:1::1')).not.toBe(key);
    expect(clientKeyOf('2001:db8::')).toBe(key);
    expect(clientKeyOf('::1')).toBe('0:0:0:0::/64');
    expect(clientKeyOf('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(clientKeyOf('10.0.0.1')).toBe('10.0.0.1');
  });
});
