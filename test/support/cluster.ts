import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signChangeRequest } from '../../src/client/requests.js';
import { send, type HttpResult } from './http.js';
import type { UserKey } from './keys.js';
import { runIdns, spawnServer, type ServerProcess } from './process.js';
import { freePort as freePortIn, PORT_SLICES } from '../../src/cli/free-port.js';

/**
 * A free port for a server of a test, from this test worker's own slice of the ports below the ephemeral
 * range (vitest numbers its workers from 1; the CLI, the demo a test starts included, keeps slice 0).
 */
export function freePort(): Promise<number> {
  const worker = Number(process.env.VITEST_POOL_ID ?? 1);
  return freePortIn(1 + ((Number.isInteger(worker) && worker > 0 ? worker - 1 : 0) % (PORT_SLICES - 1)));
}

/**
 * Helpers for tests that run a zone's servers as real `idns serve` child processes: free ports, temp
 * data directories, bounded waits, bulk registration over HTTP, and an in-process HTTP proxy that can
 * log, throttle, hold or cut the traffic between a secondary and its source.
 */

/**
 * Waits (bounded, polling every `stepMs`) until `check` holds; the error names what was awaited and the
 * last value seen. The default bound catches a hang; it is not a claim about speed (a loaded machine).
 */
export async function until<T>(check: () => Promise<T> | T, what: string | (() => string), timeoutMs = 30_000, stepMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`,
      );
    await sleep(stepMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** One zone server process (or resolver) of a test, restartable on the same data dir and port. */
export interface Node {
  name: string;
  dir: string;
  port: number;
  url: string;
  proc: ServerProcess | null;
  /** Extra `idns serve` flags (resolver role). */
  args: string[];
}

/**
 * Everything a test started: processes, proxies, temp dirs. `cleanup()` (from afterEach) kills every
 * process with SIGKILL, closes proxies and removes the dirs, whatever state the test left.
 */
export class Cluster {
  readonly nodes: Node[] = [];
  private readonly dirs: string[] = [];
  private readonly proxies: Proxy[] = [];

  /** A new temp dir, removed at cleanup. */
  tempDir(label: string): string {
    const dir = mkdtempSync(join(tmpdir(), `idns-${label}-`));
    this.dirs.push(dir);
    return dir;
  }

  /** Reserves a data dir and a port for a server (not started yet). */
  async node(name: string, args: string[] = []): Promise<Node> {
    const port = await freePort();
    const n: Node = { name, dir: this.tempDir(name), port, url: `http://127.0.0.1:${port}`, proc: null, args };
    this.nodes.push(n);
    return n;
  }

  /** Starts `idns serve` for a node on its port; retries (bounded) while the port is taken by someone else. */
  async start(n: Node): Promise<Node> {
    if (n.proc && n.proc.child.exitCode === null && n.proc.child.signalCode === null) throw new Error(`${n.name} is already running`);
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        n.proc = await spawnServer(['--listen', `127.0.0.1:${n.port}`, '--data', n.dir, '--no-bootstrap', ...n.args]);
        if (n.proc.url !== n.url) throw new Error(`${n.name} serves on ${n.proc.url}, expected ${n.url}`);
        return n;
      } catch (err) {
        if (!/address is in use|EADDRINUSE/.test((err as Error).message) || Date.now() > deadline) throw err;
        await sleep(100);
      }
    }
  }

  /** kill -9, and waits (bounded) until the process is gone. */
  async kill(n: Node): Promise<void> {
    if (!n.proc) return;
    await n.proc.stop('SIGKILL');
    n.proc = null;
  }

  /** An HTTP proxy in front of `target`, closed at cleanup. */
  async proxy(target: string): Promise<Proxy> {
    const p = await startProxy(target);
    this.proxies.push(p);
    return p;
  }

  async cleanup(): Promise<void> {
    await Promise.allSettled(this.nodes.map((n) => n.proc?.stop('SIGKILL')));
    for (const n of this.nodes) n.proc = null;
    await Promise.allSettled(this.proxies.splice(0).map((p) => p.close()));
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    this.nodes.length = 0;
  }
}

/**
 * SQLite's `PRAGMA integrity_check` on a server's database file: 'ok', or what is broken. Safe while the
 * server runs (under WAL a reader does not block it) and after a kill -9 (the WAL is then read as on restart).
 */
export function integrityCheck(dataDir: string): string {
  const db = new Database(join(dataDir, 'idns.sqlite'), { fileMustExist: true });
  try {
    return (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; ');
  } finally {
    db.close();
  }
}

/** Runs the `idns` CLI and fails with its stderr unless it exits 0; returns stdout parsed as JSON when `--json` is given. */
export async function idns(args: string[]): Promise<any> {
  const r = await runIdns(args);
  if (r.code !== 0) throw new Error(`idns ${args.join(' ')} exited with ${r.code}: ${r.stderr}`);
  return args.includes('--json') ? JSON.parse(r.stdout) : r.stdout;
}

/** What GET /v1/zones/{zone} says on a server. */
export interface ZoneState {
  zone: string;
  serial: number;
  digest: string;
  role: string;
  record: string;
}

export async function zoneState(url: string, zone = 'example'): Promise<ZoneState> {
  const r = await send(url, 'GET', `/v1/zones/${zone}`);
  if (r.status !== 200) throw new Error(`GET ${url}/v1/zones/${zone}: ${r.status} ${r.text}`);
  return r.json as ZoneState;
}

/** A signed register request for `handle`. */
export function registerRequest(owner: UserKey, handle: string): string {
  return signChangeRequest({ action: 'register', handle, endpoint: `https://home.example/${handle}`, keys: [owner.public] }, owner.private);
}

/** Registers one handle on `url` over HTTP. */
export async function register(url: string, owner: UserKey, handle: string): Promise<HttpResult> {
  return send(url, 'POST', '/v1/handles', { json: { request: registerRequest(owner, handle) } });
}

/** Registers `handles` on `url` over HTTP with `concurrency` requests in flight; fails on the first refusal. */
export async function registerMany(url: string, owner: UserKey, handles: string[], concurrency = 32): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < handles.length) {
      const h = handles[i++]!;
      const r = await register(url, owner, h);
      if (r.status !== 201) throw new Error(`register ${h} on ${url}: ${r.status} ${r.text}`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, handles.length) }, worker));
}

export function handles(prefix: string, from: number, to: number, zone = 'example'): string[] {
  return Array.from({ length: to - from }, (_, k) => `${prefix}${from + k}@${zone}`);
}

/** True for the path of a full transfer (no `since`; with or without a `format`, docs/protocol.md §11.1). */
export function isFullTransferPath(path: string): boolean {
  return /\/transfer(\?format=[a-z]+)?$/.test(path);
}

/** One request that went through a proxy. */
export interface ProxiedRequest {
  method: string;
  path: string;
  status: number | null;
  /** Response body bytes forwarded so far. */
  bytes: number;
  startedAt: number;
  endedAt: number | null;
  /** How it ended: complete, or cut because the client or upstream went away. */
  outcome: 'open' | 'complete' | 'aborted';
}

/**
 * An HTTP proxy between a secondary and its source. It logs every request; it can hold a response body
 * after `holdFullTransferAfter` bytes of a full transfer (the transfer is then provably in progress,
 * with some of it delivered), throttle response bodies, or refuse connections (`down`).
 */
export interface Proxy {
  url: string;
  log: ProxiedRequest[];
  /** When set, a full transfer's body stops being forwarded once this many bytes went through, until `release()`. */
  holdFullTransferAfter: number | null;
  /** Forward response bodies at most this fast (bytes/s); null: as fast as possible. */
  bytesPerSecond: number | null;
  /** Refuse every request (the connection is destroyed) while true. */
  down: boolean;
  /** Lets held transfers go on (and clears holdFullTransferAfter). */
  release(): void;
  /** Full transfers (GET .../transfer without since) seen so far. */
  fullTransfers(): ProxiedRequest[];
  incrementalTransfers(): ProxiedRequest[];
  close(): Promise<void>;
}

async function startProxy(target: string): Promise<Proxy> {
  const upstream = new URL(target);
  let releaseWaiters: (() => void)[] = [];
  const proxy: Proxy = {
    url: '',
    log: [],
    holdFullTransferAfter: null,
    bytesPerSecond: null,
    down: false,
    release() {
      proxy.holdFullTransferAfter = null;
      const w = releaseWaiters;
      releaseWaiters = [];
      for (const f of w) f();
    },
    fullTransfers: () => proxy.log.filter((r) => isFullTransferPath(r.path)),
    incrementalTransfers: () => proxy.log.filter((r) => /\/transfer\?since=/.test(r.path)),
    close: async () => {
      proxy.release();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server: Server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    if (proxy.down) {
      req.socket.destroy();
      return;
    }
    const entry: ProxiedRequest = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      status: null,
      bytes: 0,
      startedAt: Date.now(),
      endedAt: null,
      outcome: 'open',
    };
    proxy.log.push(entry);
    const isFull = entry.method === 'GET' && isFullTransferPath(entry.path);
    const headers = { ...req.headers, host: upstream.host };
    delete headers.connection;
    const up = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers }, (ur) => {
      entry.status = ur.statusCode ?? null;
      const h = { ...ur.headers };
      delete h.connection;
      delete h['keep-alive'];
      res.writeHead(ur.statusCode ?? 502, h);
      const t0 = Date.now();
      void (async () => {
        try {
          // One listener for the hang-up, shared by every wait for drain (a listener per wait would pile up).
          const hungUp = new Promise<void>((r) => res.once('close', () => r()));
          for await (const chunk of ur as AsyncIterable<Buffer>) {
            if (isFull && proxy.holdFullTransferAfter !== null && entry.bytes + chunk.length > proxy.holdFullTransferAfter) {
              // Forward up to the threshold, then hold the rest until released.
              const cut = Math.max(0, proxy.holdFullTransferAfter - entry.bytes);
              if (cut > 0) {
                res.write(chunk.subarray(0, cut));
                entry.bytes += cut;
              }
              await new Promise<void>((r) => releaseWaiters.push(r));
              if (res.destroyed) throw new Error('client gone');
              res.write(chunk.subarray(cut));
              entry.bytes += chunk.length - cut;
            } else {
              if (!res.write(chunk)) await Promise.race([new Promise<void>((r) => (res.destroyed ? r() : res.once('drain', () => r()))), hungUp]);
              entry.bytes += chunk.length;
            }
            if (res.destroyed) throw new Error('client gone');
            if (proxy.bytesPerSecond !== null) {
              const due = t0 + (entry.bytes / proxy.bytesPerSecond) * 1000;
              if (due > Date.now()) await sleep(due - Date.now());
            }
          }
          entry.outcome = 'complete';
          res.end();
        } catch {
          if (entry.outcome === 'open') entry.outcome = 'aborted';
          res.destroy();
          ur.destroy();
        } finally {
          entry.endedAt ??= Date.now();
        }
      })();
    });
    up.on('error', () => {
      entry.outcome = 'aborted';
      entry.endedAt = Date.now();
      res.destroy();
    });
    res.on('close', () => {
      if (entry.outcome !== 'open') return;
      entry.outcome = 'aborted';
      entry.endedAt = Date.now();
      up.destroy();
    });
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  proxy.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}

const DIST = new URL('../../dist/', import.meta.url).href;

/**
 * Registers `count` handles `${prefix}${i}@example` directly in a data directory, as the operator does
 * (`idns handle register --data`), in a separate Node process with group commit (a LocalContext, as that command opens): several times faster
 * than HTTP for building a large zone. The server may be running on that directory meanwhile (it sees the
 * changes and notifies its secondaries, as for any CLI change).
 */
export async function bulkRegister(dataDir: string, prefix: string, from: number, to: number, zone = 'example'): Promise<void> {
  const script = `
    const { LocalContext } = await import(${JSON.stringify(`${DIST}local-context.js`)});
    const { loadConfig } = await import(${JSON.stringify(`${DIST}config.js`)});
    const { signChangeRequest } = await import(${JSON.stringify(`${DIST}client/requests.js`)});
    const { generatePrivateJwk } = await import(${JSON.stringify(`${DIST}records/keys.js`)});
    const [dir, prefix, from, to, zone] = process.argv.slice(1);
    const ctx = new LocalContext(loadConfig({ data: dir, logLevel: 'silent' }));
    const priv = generatePrivateJwk();
    const pub = { kty: 'OKP', crv: 'Ed25519', x: priv.x };
    let pending = [];
    for (let i = Number(from); i < Number(to); i++) {
      const handle = prefix + i + '@' + zone;
      pending.push(ctx.changes.submit(signChangeRequest({ action: 'register', handle, endpoint: 'https://home.example/' + handle, keys: [pub] }, priv), { operator: true }));
      if (pending.length >= 500) { await Promise.all(pending); pending = []; }
    }
    await Promise.all(pending);
    await ctx.close();
  `;
  const { spawn } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, dataDir, prefix, String(from), String(to), zone], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`bulk registration in ${dataDir} failed (${code ?? signal}): ${err}`));
    });
  });
}
