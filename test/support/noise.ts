import { connect } from 'node:net';
import { request } from 'undici';
import { ManualClock } from '../../src/clock.js';
import { signChangeRequest, type ChangeIntent } from '../../src/client/requests.js';
import { OPERATION_TYP, signCompactText } from '../../src/records/jws.js';
import { signingKeyFromJwk } from '../../src/records/keys.js';
import { newUserKey, type UserKey } from './keys.js';

/**
 * Malformed background traffic (as Knot DNS runs during its tests): while a test runs, a second client
 * sends a steady stream of garbage to every server it knows of: malformed JSON, bad and forged JWS,
 * oversized bodies, bad handles and, with `raw`, broken HTTP framing over raw sockets and slow-drip
 * requests. The servers must keep passing the test unchanged; every garbage request must get an error
 * (never a 2xx, never a 5xx other than 503), with the JSON error shape wherever the application answered;
 * and no garbage may change anything (the test checks `forgedHandles` and its own handles afterwards).
 */
export interface Noise {
  /** Stops sending and waits for requests in flight; returns what was seen. */
  stop(): Promise<NoiseReport>;
  /** Garbage exchanges finished so far (answered, refused or cut), in all or with one target: a measure of progress to wait on. */
  done(target?: string): number;
}

/** What the garbage got back. */
export interface NoiseReport {
  sent: number;
  byStatus: Record<string, number>;
  /** 5xx answers other than 503 (a crash or a bug on the server). */
  serverErrors: string[];
  /** Every breach of the error contract: a 2xx to garbage, a 5xx, an error without `{ error: { code, message } }`. */
  problems: string[];
  /** Handles that garbage tried to register (bad signatures, stale iat, forbidden endpoints): none may exist afterwards. */
  forgedHandles: string[];
  /** Exchanges per kind of garbage, with how they ended. */
  byKind: Record<string, number>;
}

/** Options of startNoise. */
export interface NoiseOptions {
  /** Undici clients sending malformed requests at once (default 3). */
  concurrency?: number;
  /** Pause between two requests of one client (default 5 ms). */
  pauseMs?: number;
  /** The zone that write garbage names (default `example`). */
  zone?: string;
  /** Existing handles that garbage tries to update and delete without their keys. */
  victims?: () => string[];
  /** Also send broken HTTP framing over raw sockets and slow-drip requests (one client each; default off). */
  raw?: boolean;
}

const big = 'x'.repeat(70 * 1024);
const JSON_TYPE = { 'content-type': 'application/json' };

/** Malformed requests that need no key: each must be refused with an error. */
const BAD: { method: string; path: string; body?: string; headers?: Record<string, string> }[] = [
  { method: 'GET', path: '/v1/resolve/%%%' },
  { method: 'GET', path: `/v1/resolve/${'a'.repeat(5000)}@example` },
  { method: 'GET', path: '/v1/resolve/a@b@c' },
  { method: 'GET', path: '/v1/resolve/-bad-@example' },
  { method: 'GET', path: '/v1/resolve/a..b@example' },
  { method: 'GET', path: '/v1/lookup/%00@example' },
  { method: 'POST', path: '/v1/lookup', body: '{"handles": "nope"}', headers: JSON_TYPE },
  { method: 'POST', path: '/v1/handles', body: '{not json', headers: JSON_TYPE },
  { method: 'POST', path: '/v1/handles', body: '{"request":', headers: JSON_TYPE },
  { method: 'POST', path: '/v1/handles', body: 'null', headers: JSON_TYPE },
  { method: 'POST', path: '/v1/handles', body: '{"request": 12}', headers: JSON_TYPE },
  { method: 'POST', path: '/v1/handles', body: `{"request": ${'['.repeat(20_000)}${']'.repeat(20_000)}}`, headers: JSON_TYPE },
  { method: 'POST', path: '/v1/handles', body: '\u0000\u00ff\u0001garbage', headers: JSON_TYPE },
  { method: 'POST', path: '/v1/handles', body: JSON.stringify({ request: 'a.b.c' }), headers: JSON_TYPE },
  { method: 'POST', path: '/v1/handles', body: JSON.stringify({ request: 'eyJhbGciOiJub25lIn0.e30.' }), headers: JSON_TYPE },
  { method: 'POST', path: '/v1/handles', body: JSON.stringify({ request: big }), headers: JSON_TYPE },
  { method: 'POST', path: '/v1/handles', body: big, headers: JSON_TYPE },
  { method: 'PUT', path: '/v1/handles/x@example', body: '[]', headers: JSON_TYPE },
  { method: 'DELETE', path: '/v1/handles/x@example' },
  { method: 'GET', path: '/v1/zones/..%2f..' },
  { method: 'GET', path: '/v1/zones/example/transfer?since=abc' },
  { method: 'GET', path: '/v1/zones/no-such-zone.test/transfer' },
  { method: 'POST', path: '/v1/zones/example/notify', body: big },
  { method: 'GET', path: '/.well-known/webfinger?resource=mailto:x@y' },
  { method: 'GET', path: '/.well-known/webfinger' },
  { method: 'GET', path: '/v1/handles/not-a-handle/log?after=-1' },
];

/** Broken HTTP/1.1 framing, sent over a raw socket (undici would refuse to send most of it). */
const RAW: { name: string; bytes: string }[] = [
  {
    name: 'conflicting framing',
    bytes:
      'POST /v1/handles HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n',
  },
  {
    name: 'two content-lengths',
    bytes: 'POST /v1/handles HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{}',
  },
  { name: 'negative content-length', bytes: 'POST /v1/handles HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\nConnection: close\r\n\r\n' },
  {
    name: 'bad chunk size',
    bytes:
      'POST /v1/handles HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
  },
  { name: 'header without colon', bytes: 'GET /v1/zones/example HTTP/1.1\r\nHost: h\r\nthis is not a header\r\nConnection: close\r\n\r\n' },
  { name: 'garbage request line', bytes: 'BLAH\u0000\u0001 /// HTTP/9.9\r\n\r\n' },
  { name: 'control byte in path', bytes: 'GET /v1/resolve/a\u0001b@example HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n' },
  { name: 'no Host', bytes: 'GET /v1/zones/example HTTP/1.1\r\nConnection: close\r\n\r\n' },
  { name: 'oversized headers', bytes: `GET /v1/zones/example HTTP/1.1\r\nHost: h\r\nX-Big: ${'a'.repeat(20_000)}\r\nConnection: close\r\n\r\n` },
  {
    name: 'declared body over the limit',
    bytes: 'POST /v1/handles HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n{"request":"',
  },
  {
    name: 'chunked body over the limit',
    bytes: `POST /v1/handles HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${'8000\r\n' + 'y'.repeat(0x8000) + '\r\n'}${'8000\r\n' + 'y'.repeat(0x8000) + '\r\n'}${'8000\r\n' + 'y'.repeat(0x8000) + '\r\n'}0\r\n\r\n`,
  },
];

/** A slow-drip request: valid framing, one byte at a time; the body is garbage the server must refuse. */
const DRIP_BODY = '{"request":"not.a.jws"}';
const DRIP: { name: string; head: string; body: string }[] = [
  {
    name: 'slow body',
    head: `POST /v1/handles HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: ${DRIP_BODY.length}\r\nConnection: close\r\n\r\n`,
    body: DRIP_BODY,
  },
  { name: 'slow headers', head: '', body: 'GET /v1/resolve/%%%@example HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n' },
];
const DRIP_STEP_MS = 60;
/** A raw exchange the server neither answers nor closes within this is held too long. */
const RAW_ANSWER_MS = 15_000;

/** True for `{ error: { code: string, message: string } }`. */
function isErrorShape(v: unknown): boolean {
  const e = (v as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  return typeof e === 'object' && e !== null && typeof e.code === 'string' && e.code !== '' && typeof e.message === 'string';
}

/** The body of a raw HTTP/1.1 response (after the head; chunked encoding undone). */
function rawBody(head: string, rest: Buffer): string {
  if (!/\r\ntransfer-encoding:\s*chunked/i.test(head)) return rest.toString('utf8');
  let out = '';
  let s = rest.toString('latin1');
  for (;;) {
    const nl = s.indexOf('\r\n');
    const size = nl < 0 ? 0 : parseInt(s.slice(0, nl), 16);
    if (!(size > 0)) return Buffer.from(out, 'latin1').toString('utf8');
    out += s.slice(nl + 2, nl + 2 + size);
    s = s.slice(nl + 4 + size);
  }
}

/** Starts sending malformed requests to the servers `targets()` returns, `concurrency` at a time. */
export function startNoise(targets: () => string[], options: NoiseOptions = {}): Noise {
  const zone = options.zone ?? 'example';
  let running = true;
  let sent = 0;
  const byStatus: Record<string, number> = {};
  const byKind: Record<string, number> = {};
  const doneBy = new Map<string, number>();
  const serverErrors: string[] = [];
  const problems: string[] = [];
  const forgedHandles: string[] = [];
  const stranger: UserKey = newUserKey();
  const count = (rec: Record<string, number>, k: string) => (rec[k] = (rec[k] ?? 0) + 1);
  const finished = (target: string) => doneBy.set(target, (doneBy.get(target) ?? 0) + 1);

  /** A signed change request that the authority must refuse; registers name a fresh handle, remembered in forgedHandles. */
  const forged = (n: number): { what: string; method: 'POST' | 'PUT' | 'DELETE'; path: string; body: string } => {
    const victims = options.victims?.() ?? [];
    const victim = victims.length > 0 ? victims[n % victims.length]! : `noise-victim@${zone}`;
    const fresh = `noise${n}@${zone}`;
    const kind = n % 10;
    if (kind === 5 || kind === 6) {
      // Someone else's handle, changed with a key that is not one of its keys.
      const intent: ChangeIntent =
        kind === 5
          ? { action: 'update', handle: victim, endpoint: 'https://evil.example/', keys: [stranger.public], prev: 'A'.repeat(43) }
          : { action: 'delete', handle: victim, prev: 'A'.repeat(43) };
      const method = kind === 5 ? 'PUT' : 'DELETE';
      return {
        what: `${intent.action} of ${victim} by a stranger`,
        method,
        path: `/v1/handles/${encodeURIComponent(victim)}`,
        body: JSON.stringify({ request: signChangeRequest(intent, stranger.private) }),
      };
    }
    // A register of an invalid or look-alike handle (kinds 4 and 9) names no handle that could come to exist.
    if (kind !== 4 && kind !== 9) forgedHandles.push(fresh);
    const key = newUserKey();
    const good: ChangeIntent & { action: 'register' } = { action: 'register', handle: fresh, endpoint: `https://home.example/${fresh}`, keys: [key.public] };
    let jws: string;
    let what: string;
    if (kind === 0) {
      const [h, p, s] = signChangeRequest(good, key.private).split('.') as [string, string, string];
      jws = `${h}.${p}.${s[0] === 'A' ? 'B' : 'A'}${s.slice(1)}`;
      what = 'register with a broken signature';
    } else if (kind === 1) {
      // Signed by one key, presenting another in the header.
      const [, p, s] = signChangeRequest(good, key.private).split('.') as [string, string, string];
      const [h] = signChangeRequest(good, stranger.private).split('.') as [string];
      jws = `${h}.${p}.${s}`;
      what = 'register signed by another key than the header names';
    } else if (kind === 2) {
      jws = signChangeRequest(good, key.private, new ManualClock(Date.now() - 3_600_000));
      what = 'register with a stale iat';
    } else if (kind === 3) {
      jws = signChangeRequest({ ...good, endpoint: 'javascript:alert(1)' }, key.private);
      what = 'register with a forbidden endpoint';
    } else if (kind === 4) {
      jws = signChangeRequest({ ...good, handle: `-Bad..${n}@${zone}` }, key.private);
      what = 'register of an invalid handle';
    } else if (kind === 7) {
      // A member twice (I-JSON): a parser keeping the first value reads another handle than one keeping the last.
      const signer = signingKeyFromJwk(key.private);
      const payload = JSON.stringify({
        v: 1,
        action: 'register',
        handle: fresh,
        endpoint: good.endpoint,
        keys: good.keys,
        prev: null,
        iat: Math.floor(Date.now() / 1000),
      });
      jws = signCompactText(`{"handle":"noise-twice${n}@${zone}",${payload.slice(1)}`, signer, OPERATION_TYP, { jwk: key.public });
      what = 'register whose payload names "handle" twice';
    } else if (kind === 8) {
      // Another person's key listed as one's own, without that key's signature (no "pop" proof).
      jws = signChangeRequest({ ...good, keys: [key.public, stranger.public] }, key.private);
      what = "register listing a stranger's key without its proof of possession";
    } else {
      jws = signChangeRequest({ ...good, handle: `noise${n}@p\u0430ypal.${zone}` }, key.private);
      what = 'register of a mixed-script look-alike host';
    }
    return { what, method: 'POST', path: '/v1/handles', body: JSON.stringify({ request: jws }) };
  };

  const judge = (status: number, bodyText: string, what: string) => {
    byStatus[status] = (byStatus[status] ?? 0) + 1;
    if (status >= 500 && status !== 503) serverErrors.push(`${status} ${what}`);
    if (status < 300 || (status >= 500 && status !== 503)) {
      problems.push(`${status} to garbage: ${what}: ${bodyText.slice(0, 200)}`);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(bodyText);
    } catch {
      body = undefined;
    }
    if (!isErrorShape(body)) problems.push(`${status} without the JSON error shape: ${what}: ${bodyText.slice(0, 200)}`);
  };

  let forgedCount = 0;
  const worker = async (n: number) => {
    let i = n;
    while (running) {
      const urls = targets();
      const target = urls[i % Math.max(1, urls.length)];
      // Every third request is a signed change the authority must refuse; the rest need no key.
      const bad = i % 3 === 2 ? forged(forgedCount++) : { ...BAD[i % BAD.length]!, what: '' };
      const what = `${bad.method} ${bad.path.slice(0, 80)}${bad.what ? ` (${bad.what})` : ''}`;
      i += 7;
      if (target) {
        sent += 1;
        try {
          const res = await request(`${target}${bad.path}`, {
            method: bad.method as 'GET',
            headers: 'headers' in bad ? bad.headers : JSON_TYPE,
            body: bad.body,
            headersTimeout: 10_000,
            bodyTimeout: 10_000,
          });
          judge(res.statusCode, await res.body.text(), what);
          count(byKind, 'http answered');
        } catch {
          // Servers that a test stops or kills refuse connections: expected, and not the server's fault.
          byStatus.refused = (byStatus.refused ?? 0) + 1;
          count(byKind, 'http cut');
        }
        finished(target);
      }
      await new Promise((r) => setTimeout(r, options.pauseMs ?? 5));
    }
  };

  /** One exchange over a raw socket: writes `head`, then `drip` a byte at a time, and reads until the server closes. */
  const rawExchange = (target: string, name: string, head: string, drip: string): Promise<void> =>
    new Promise<void>((resolve) => {
      const url = new URL(target);
      const socket = connect({ host: url.hostname, port: Number(url.port) });
      const chunks: Buffer[] = [];
      let timer: NodeJS.Timeout | undefined;
      let dripping: NodeJS.Timeout | undefined;
      const end = (how: 'closed' | 'error' | 'held') => {
        clearTimeout(timer);
        clearInterval(dripping);
        socket.destroy();
        const data = Buffer.concat(chunks);
        const what = `raw ${name}`;
        if (how === 'held') problems.push(`${what}: neither answered nor closed within ${RAW_ANSWER_MS} ms`);
        if (data.length === 0) {
          // Cut (the server was killed, or dropped the connection without a word): nothing to judge.
          count(byKind, `${what}: cut`);
        } else {
          const sep = data.indexOf('\r\n\r\n');
          const headText = data.subarray(0, sep < 0 ? data.length : sep).toString('latin1');
          const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(headText)?.[1] ?? 0);
          const body = sep < 0 ? '' : rawBody(headText, data.subarray(sep + 4));
          if (status === 0) problems.push(`${what}: not an HTTP response: ${headText.slice(0, 100)}`);
          else {
            // Refusals by Node's own parser carry the JSON error body too (issue 14, item 12).
            judge(status, body, what);
            count(byKind, `${what}: ${status}`);
          }
        }
        finished(target);
        resolve();
      };
      timer = setTimeout(() => end('held'), RAW_ANSWER_MS);
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.on('close', () => end('closed'));
      socket.on('error', () => end('error'));
      socket.on('connect', () => {
        if (head) socket.write(head, 'latin1');
        let k = 0;
        if (drip === '') return;
        dripping = setInterval(() => {
          if (socket.destroyed) return clearInterval(dripping);
          socket.write(drip[k++]!, 'latin1');
          if (k >= drip.length) clearInterval(dripping);
        }, DRIP_STEP_MS);
      });
    });

  const rawWorker = async (n: number, slow: boolean) => {
    let i = n;
    while (running) {
      const urls = targets();
      const target = urls[i % Math.max(1, urls.length)];
      i += 1;
      if (target) {
        sent += 1;
        if (slow) {
          const d = DRIP[i % DRIP.length]!;
          await rawExchange(target, d.name, d.head, d.body);
        } else {
          const r = RAW[i % RAW.length]!;
          await rawExchange(target, r.name, r.bytes, '');
        }
      }
      await new Promise((r) => setTimeout(r, options.pauseMs ?? 5));
    }
  };

  const workers = Array.from({ length: options.concurrency ?? 3 }, (_, n) => worker(n));
  if (options.raw) workers.push(rawWorker(0, false), rawWorker(0, true));
  return {
    done: (target) => (target === undefined ? [...doneBy.values()].reduce((a, b) => a + b, 0) : (doneBy.get(target) ?? 0)),
    async stop() {
      running = false;
      await Promise.all(workers);
      return { sent, byStatus, serverErrors, problems, forgedHandles: [...new Set(forgedHandles)], byKind };
    },
  };
}
