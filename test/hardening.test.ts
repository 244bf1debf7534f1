import Database from 'better-sqlite3';
import { chmodSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { DEFAULT_CONFIG } from '../src/config.js';
import { AppContext } from '../src/context.js';
import { startServer } from '../src/http/server.js';
import { createLogger } from '../src/log.js';
import { ZoneDigest } from '../src/records/digest.js';
import { newUserKey } from './support/keys.js';
import { runIdns } from './support/process.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

const owner = newUserKey();
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const register = (url: string, handle: string, invite?: string) =>
  fetch(`${url}/v1/handles`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      request: signChangeRequest(
        { action: 'register', handle, endpoint: 'https://h.example/', keys: [owner.public], ...(invite ? { invite } : {}) },
        owner.private,
      ),
    }),
  });

describe('a full disk', () => {
  it('gives a clear error, changes nothing, keeps serving reads, and corrupts nothing', async () => {
    // 512 KiB: an empty database takes over 200 KiB (a 16 KiB page per table and index); room is left for some registrations.
    const s: TestServer = await startTestServer({ zones: { example: {} }, config: { limits: { ...DEFAULT_CONFIG.limits, maxDatabaseBytes: 512 * 1024 } } });
    cleanups.push(() => s.close());
    const accepted: string[] = [];
    let full: Response | null = null;
    for (let i = 0; i < 2000 && !full; i++) {
      const res = await register(s.url, `user${i}@example`);
      if (res.status === 201) accepted.push(`user${i}@example`);
      else full = res;
    }
    expect(full, 'the database never filled up').not.toBeNull();
    expect(full!.status).toBe(507);
    expect(await full!.json()).toMatchObject({ error: { code: 'storage_full' } });
    expect(accepted.length).toBeGreaterThan(10);

    // Near the cap a smaller write may still fit; a refused one must leave the zone exactly as it was.
    let before: unknown = null;
    let refused = 0;
    for (let i = 0; i < 50 && refused < 3; i++) {
      before = await (await fetch(`${s.url}/v1/zones/example`)).json();
      const res = await register(s.url, `more${i}@example`);
      if (res.status === 201) {
        accepted.push(`more${i}@example`);
        continue;
      }
      expect(res.status).toBe(507);
      refused += 1;
      expect(await (await fetch(`${s.url}/v1/zones/example`)).json()).toEqual(before);
      expect((await fetch(`${s.url}/v1/resolve/more${i}@example`)).status).toBe(404);
    }
    expect(refused).toBe(3);
    for (const h of accepted) expect((await fetch(`${s.url}/v1/resolve/${h}`)).status).toBe(200);

    const db = new Database(join(s.dataDir, 'idns.sqlite'), { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      const d = ZoneDigest.empty();
      for (const r of db.prepare<[], { type: string; key: string; jws: string }>("SELECT type, key, jws FROM records WHERE content = 'example'").all())
        d.add(r.type, r.key, r.jws);
      expect(d.value()).toBe((before as { digest: string }).digest);
    } finally {
      db.close();
    }
  });
});

describe('a database locked by another writer (a bulk import)', () => {
  it('refuses writes with 503 storage_busy and Retry-After once the busy timeout passes, keeps serving reads, and accepts writes again after', async () => {
    const s: TestServer = await startTestServer({ zones: { example: {} } });
    cleanups.push(() => s.close());
    expect((await register(s.url, 'before@example')).status).toBe(201);
    // Another process's long transaction, as `idns zone import` holds while it runs.
    const other = new Database(join(s.dataDir, 'idns.sqlite'));
    other.exec('BEGIN IMMEDIATE');
    try {
      const before = await (await fetch(`${s.url}/v1/zones/example`)).json();
      const res = await register(s.url, 'during@example');
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(await res.json()).toMatchObject({ error: { code: 'storage_busy' } });
      expect(await (await fetch(`${s.url}/v1/zones/example`)).json()).toEqual(before);
      expect((await fetch(`${s.url}/v1/resolve/before@example`)).status).toBe(200);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect((await register(s.url, 'during@example')).status).toBe(201);
  });
});

describe('secrets', () => {
  it('refuses to serve with a zone key file that others can read, saying how to fix it', async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const created = await runIdns(['zone', 'create', 'example', '--server-url', 'http://127.0.0.1:1', '--data', dir]);
    expect(created.code).toBe(0);
    const keyDir = join(dir, 'keys', 'example');
    const keyFile = join(keyDir, readdirSync(keyDir)[0]!);
    chmodSync(keyFile, 0o644);
    const res = await runIdns(['serve', '--listen', '127.0.0.1:0', '--data', dir, '--no-bootstrap']);
    expect(res.code).toBe(1);
    expect(res.stderr).toContain(`chmod 600 ${keyFile}`);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('never logs or returns invite codes or private keys', async () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const lines: string[] = [];
    const ctx = new AppContext(
      { ...structuredClone(DEFAULT_CONFIG), dataDir: dir, bootstrap: false, logLevel: 'debug' },
      undefined,
      createLogger('debug', (l) => lines.push(l)),
    );
    const server = await startServer(ctx, '127.0.0.1', 0);
    cleanups.push(async () => {
      await server.close();
      await ctx.close();
    });
    ctx.zones.create('example', { servers: [server.url], policy: 'invite' });
    const { code } = ctx.zones.createInvite('example');
    const bodies: string[] = [];
    const wrong = await register(server.url, 'a@example', `${code}x`);
    bodies.push(await wrong.text());
    const ok = await register(server.url, 'a@example', code);
    expect(ok.status).toBe(201);
    bodies.push(await ok.text());
    const again = await register(server.url, 'b@example', code);
    bodies.push(await again.text());
    for (const path of ['/v1/zones/example', '/v1/resolve/a@example', '/v1/handles/a@example/log', '/metrics', '/readyz']) {
      bodies.push(await (await fetch(`${server.url}${path}`)).text());
    }
    const privateD = (await import('node:fs')).readFileSync(join(dir, 'keys', 'example', readdirSync(join(dir, 'keys', 'example'))[0]!), 'utf8');
    const d = (JSON.parse(privateD) as { d: string }).d;
    for (const text of [...lines, ...bodies]) {
      expect(text).not.toContain(code);
      expect(text).not.toContain(d);
      expect(text).not.toContain(owner.private.d);
    }
    // The zone CLI shows thumbprints and public keys only.
    const shown = await runIdns(['zone', 'show', 'example', '--data', dir, '--json']);
    expect(shown.stdout).not.toContain(d);
  });
});
