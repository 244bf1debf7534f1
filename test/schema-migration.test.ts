import Database from 'better-sqlite3';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { SCHEMA_VERSION } from '../src/store/database.js';
import { cleanupEachTest } from './support/cleanup.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, tempDir } from './support/server.js';

const cleanups = cleanupEachTest();

describe('schema version 2: the endpoint index of handle records', () => {
  it('migrates a version 1 database: every handle record gets its endpoint, the index is made, WebFinger by actor URL works', async () => {
    const tmp = tempDir('idns-migrate-');
    cleanups.push(tmp.remove);
    const owner = newUserKey();
    const first = await startTestServer({ dataDir: tmp.dir, zones: { 'example.com': {} } });
    for (const name of ['ann', 'ben', 'cai']) {
      await first.ctx.changes.submit(
        signChangeRequest(
          { action: 'register', handle: `${name}@example.com`, endpoint: `https://social.example/users/${name}`, keys: [owner.public] },
          owner.private,
        ),
      );
    }
    await first.close();

    // Turn it back into what idns with schema version 1 wrote: no endpoint column, no index.
    const file = join(tmp.dir, 'idns.sqlite');
    const v1 = new Database(file);
    v1.exec('DROP INDEX records_by_endpoint; ALTER TABLE records DROP COLUMN endpoint');
    v1.pragma('user_version = 1');
    v1.close();

    const second = await startTestServer({ dataDir: tmp.dir });
    cleanups.push(() => second.close());
    const db = new Database(file, { readonly: true });
    cleanups.push(() => db.close());
    expect(SCHEMA_VERSION).toBe(2);
    expect(db.pragma('user_version', { simple: true })).toBe(2);
    expect(db.prepare(`SELECT key, endpoint FROM records WHERE type = 'handle' ORDER BY key`).all()).toEqual([
      { key: 'ann@example.com', endpoint: 'https://social.example/users/ann' },
      { key: 'ben@example.com', endpoint: 'https://social.example/users/ben' },
      { key: 'cai@example.com', endpoint: 'https://social.example/users/cai' },
    ]);
    expect(db.prepare(`SELECT count(*) AS n FROM records WHERE type != 'handle' AND endpoint IS NOT NULL`).get()).toEqual({ n: 0 });
    const plan = db.prepare(`EXPLAIN QUERY PLAN SELECT key FROM records WHERE endpoint = ?`).all('x') as { detail: string }[];
    expect(plan.map((p) => p.detail).join(' ')).toContain('records_by_endpoint');

    const res = await fetch(`${second.url}/.well-known/webfinger?resource=${encodeURIComponent('https://social.example/users/ben')}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { subject: string }).subject).toBe('acct:ben@example.com');
  });
});
