import { request } from 'undici';

/**
 * Malformed background traffic (as Knot DNS runs during its tests): while a test runs, a client sends a
 * steady stream of malformed and oversized requests to every server it knows of. The servers must keep
 * passing the test unchanged, and must answer every such request with a 4xx, never a 5xx.
 */
export interface Noise {
  /** Stops sending and waits for requests in flight; returns what was seen. */
  stop(): Promise<{ sent: number; byStatus: Record<string, number>; serverErrors: string[] }>;
}

const big = 'x'.repeat(70 * 1024);
const BAD: { method: string; path: string; body?: string; headers?: Record<string, string> }[] = [
  { method: 'GET', path: '/v1/resolve/%%%' },
  { method: 'GET', path: `/v1/resolve/${'a'.repeat(5000)}@example` },
  { method: 'GET', path: '/v1/resolve/a@b@c' },
  { method: 'GET', path: '/v1/resolve/alice@example?zone=..' },
  { method: 'GET', path: '/v1/lookup/%00@example' },
  { method: 'POST', path: '/v1/lookup', body: '{"handles": "nope"}', headers: { 'content-type': 'application/json' } },
  { method: 'POST', path: '/v1/handles', body: '{not json', headers: { 'content-type': 'application/json' } },
  { method: 'POST', path: '/v1/handles', body: JSON.stringify({ request: 'a.b.c' }), headers: { 'content-type': 'application/json' } },
  { method: 'POST', path: '/v1/handles', body: JSON.stringify({ request: big }), headers: { 'content-type': 'application/json' } },
  { method: 'PUT', path: '/v1/handles/x@example', body: '[]', headers: { 'content-type': 'application/json' } },
  { method: 'DELETE', path: '/v1/handles/x@example' },
  { method: 'GET', path: '/v1/zones/..%2f..' },
  { method: 'GET', path: '/v1/zones/example/transfer?since=abc' },
  { method: 'GET', path: '/v1/zones/no-such-zone.test/transfer' },
  { method: 'POST', path: '/v1/zones/example/notify', body: big },
  { method: 'GET', path: '/.well-known/webfinger?resource=mailto:x@y' },
  { method: 'GET', path: '/.well-known/webfinger' },
  { method: 'GET', path: '/v1/handles/not-a-handle/log?after=-1' },
];

/** Starts sending malformed requests to the servers `targets()` returns, `concurrency` at a time. */
export function startNoise(targets: () => string[], options: { concurrency?: number; pauseMs?: number } = {}): Noise {
  let running = true;
  let sent = 0;
  const byStatus: Record<string, number> = {};
  const serverErrors: string[] = [];
  const worker = async (n: number) => {
    let i = n;
    while (running) {
      const urls = targets();
      const target = urls[i % Math.max(1, urls.length)];
      const bad = BAD[i % BAD.length]!;
      i += 7;
      if (target) {
        sent += 1;
        try {
          const res = await request(`${target}${bad.path}`, {
            method: bad.method as 'GET',
            headers: bad.headers,
            body: bad.body,
            headersTimeout: 5000,
            bodyTimeout: 5000,
          });
          await res.body.dump();
          byStatus[res.statusCode] = (byStatus[res.statusCode] ?? 0) + 1;
          if (res.statusCode >= 500 && res.statusCode !== 503) serverErrors.push(`${res.statusCode} ${bad.method} ${bad.path}`);
        } catch {
          // Servers that a test stops or kills refuse connections: expected, and not the server's fault.
          byStatus.refused = (byStatus.refused ?? 0) + 1;
        }
      }
      await new Promise((r) => setTimeout(r, options.pauseMs ?? 5));
    }
  };
  const workers = Array.from({ length: options.concurrency ?? 3 }, (_, n) => worker(n));
  return {
    async stop() {
      running = false;
      await Promise.all(workers);
      return { sent, byStatus, serverErrors };
    },
  };
}
