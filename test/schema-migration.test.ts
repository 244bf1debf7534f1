import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KeyRing } from '../src/authority/keyring.js';
import { decodePayload } from '../src/authority/editor.js';
import { checkAnswer } from '../src/client/answers.js';
import { signChangeRequest } from '../src/client/requests.js';
import { requestId } from '../src/records/change-request.js';
import { ZoneDigest } from '../src/records/digest.js';
import { RECORD_TYP, signCompact } from '../src/records/jws.js';
import { SCHEMA_VERSION } from '../src/store/database.js';
import { cleanupEachTest } from './support/cleanup.js';
import { newUserKey } from './support/keys.js';
import { runIdns } from './support/process.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

const cleanups = cleanupEachTest();
const V2_SCHEMA = readFileSync(new URL('./fixtures/schema-v2.sql', import.meta.url), 'utf8');
const ZONE = 'example.com';
const owner = newUserKey();

interface Row {
  content: string;
  type: string;
  key: string;
  version: number;
  exp: number;
  jws: string;
  endpoint: string | null;
}

/**
 * Writes the zone's database as idns with schema version 2 had it (the schema of test/fixtures, which is
 * that version's schema.sql): the history in the `operations` table, not in the zone's content; an
 * imported handle's first entry an unsigned import line, whose id the handle record names; the digest and
 * the signed zone record over the records alone. Signed with the zone's own key, as that idns signed.
 */
function rewriteAsVersion2(dataDir: string): void {
  const file = join(dataDir, 'idns.sqlite');
  const now = new Database(file, { readonly: true });
  const zone = now.prepare(`SELECT * FROM zones WHERE name = ?`).get(ZONE) as Record<string, unknown> & { record: string; content: string };
  const rows = now.prepare(`SELECT * FROM records WHERE content = ? ORDER BY type, key`).all(zone.content) as Row[];
  const journal = now.prepare(`SELECT * FROM journal WHERE zone = ? AND type NOT IN ('op', 'zone')`).all(ZONE) as Record<string, unknown>[];
  now.close();
  const zoneRecord = decodePayload(zone.record);
  const kid = (JSON.parse(Buffer.from(zone.record.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;
  const key = new KeyRing(join(dataDir, 'keys')).load(ZONE, kid);
  const resign = (jws: string, change: Record<string, unknown>) => signCompact({ ...decodePayload(jws), ...change }, key, RECORD_TYP);

  const operations: unknown[][] = [];
  const records = new Map(rows.filter((r) => r.type !== 'op').map((r) => [`${r.type}\n${r.key}`, r]));
  // Schema 2's handle records did not name their genesis and place in the history.
  for (const r of records.values()) if (r.type === 'handle') r.jws = withoutHistoryFields(r.jws, key);
  for (const op of rows.filter((r) => r.type === 'op')) {
    const handle = op.key.slice(0, op.key.lastIndexOf('#'));
    const header = JSON.parse(Buffer.from(op.jws.split('.')[0]!, 'base64url').toString()) as { typ: string };
    const payload = decodePayload(op.jws);
    if (header.typ === 'idns-operator') {
      const line = JSON.stringify({ handle, endpoint: payload.endpoint, keys: payload.keys });
      operations.push([requestId(line), ZONE, handle, 'import', op.version, line, 0]);
      const record = records.get(`handle\n${handle}`)!;
      if (decodePayload(record.jws).op === requestId(op.jws)) record.jws = resign(record.jws, { op: requestId(line) });
    } else {
      operations.push([requestId(op.jws), ZONE, handle, payload.action, op.version, op.jws, 0]);
    }
  }
  const digest = ZoneDigest.empty();
  let size = 0;
  for (const r of records.values()) {
    digest.add(r.type, r.key, r.jws);
    size += r.type.length + r.key.length + r.jws.length + 2;
  }
  const record = resign(zone.record, { digest: digest.value(), count: records.size, size });

  rmSync(file);
  rmSync(`${file}-wal`, { force: true });
  rmSync(`${file}-shm`, { force: true });
  const v2 = new Database(`${file}.v2`);
  v2.exec(V2_SCHEMA);
  v2.pragma('user_version = 2');
  const { history_pending: _pending, checkpoint: _checkpoint, ...zoneColumns } = zone;
  const names = Object.keys(zoneColumns);
  v2.prepare(`INSERT INTO zones (${names.join(', ')}) VALUES (${names.map((n) => `@${n}`).join(', ')})`).run({
    ...zoneColumns,
    record,
    digest_state: Buffer.from(digest.state()),
  });
  const putRecord = v2.prepare(`INSERT INTO records (content, type, key, version, exp, jws, endpoint) VALUES (?, ?, ?, ?, ?, ?, ?)`);
  for (const r of records.values()) putRecord.run(r.content, r.type, r.key, r.version, r.exp, r.jws, r.endpoint);
  const putOp = v2.prepare(`INSERT INTO operations (cid, zone, handle, action, version, jws, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)`);
  for (const o of operations) putOp.run(...o);
  for (const j of journal) {
    const cols = Object.keys(j);
    v2.prepare(`INSERT INTO journal (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`).run(j);
  }
  v2.close();
  renameSync(`${file}.v2`, file);
}

/** A handle record re-signed as idns before schema 4 signed it: without `genesis` and `seq`. */
function withoutHistoryFields(jws: string, key: Parameters<typeof signCompact>[1]): string {
  const { genesis: _genesis, seq: _seq, ...payload } = decodePayload(jws);
  return signCompact(payload, key, RECORD_TYP);
}

/**
 * Rewrites the zone's database as idns with schema version 3 had it: the history in the content, but
 * handle records without `genesis` and `seq`; the digest, count, size and signed zone record over those
 * records.
 */
function rewriteAsVersion3(dataDir: string): void {
  const db = new Database(join(dataDir, 'idns.sqlite'));
  const zone = db.prepare(`SELECT * FROM zones WHERE name = ?`).get(ZONE) as { record: string; content: string; digest_state: Buffer };
  const kid = (JSON.parse(Buffer.from(zone.record.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;
  const key = new KeyRing(join(dataDir, 'keys')).load(ZONE, kid);
  const digest = ZoneDigest.fromState(zone.digest_state);
  let grown = 0;
  const handles = db.prepare(`SELECT key, jws FROM records WHERE content = ? AND type = 'handle'`).all(zone.content) as { key: string; jws: string }[];
  for (const h of handles) {
    const old = withoutHistoryFields(h.jws, key);
    digest.remove('handle', h.key, h.jws);
    digest.add('handle', h.key, old);
    grown += old.length - h.jws.length;
    db.prepare(`UPDATE records SET jws = ? WHERE content = ? AND type = 'handle' AND key = ?`).run(old, zone.content, h.key);
  }
  const payload = decodePayload(zone.record);
  const record = signCompact({ ...payload, digest: digest.value(), size: (payload.size as number) + grown }, key, RECORD_TYP);
  db.prepare(`UPDATE zones SET record = ?, digest_state = ?, history_pending = 0 WHERE name = ?`).run(record, digest.state(), ZONE);
  // Schema 5's table and schema 6's log came later.
  db.exec('DROP TABLE compact_histories');
  withoutLogs(db);
  db.pragma('user_version = 3');
  db.close();
}

/** A data directory whose zone holds two registered handles (the server that made it closed), and its zone key's thumbprint. */
async function twoHandles(): Promise<{ dataDir: string; kid: string }> {
  const tmp = tempDir('idns-migrate-');
  cleanups.push(tmp.remove);
  const first = await startTestServer({ dataDir: tmp.dir, zones: { [ZONE]: {} } });
  for (const name of ['ann', 'bob']) {
    await first.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: `${name}@${ZONE}`, endpoint: `https://social.example/${name}`, keys: [owner.public] }, owner.private),
    );
  }
  const kid = first.ctx.zones.info(ZONE).keyThumbprints[0]!;
  await first.close();
  return { dataDir: tmp.dir, kid };
}

/** A server started on an older database, which it migrates; the migrated database has every table, column and index a new one has. */
async function startMigrated(dataDir: string): Promise<TestServer> {
  const s = await startTestServer({ dataDir });
  cleanups.push(() => s.close());
  const fresh = tempDir('idns-fresh-');
  cleanups.push(fresh.remove);
  (await startTestServer({ dataDir: fresh.dir })).close();
  expect(shapeOf(join(dataDir, 'idns.sqlite'))).toEqual(shapeOf(join(fresh.dir, 'idns.sqlite')));
  return s;
}

/** The tables (with their columns, in any order) and indexes of a database. */
function shapeOf(file: string): Record<string, string[]> {
  const db = new Database(file, { readonly: true });
  try {
    const shape: Record<string, string[]> = {};
    for (const { type, name } of db.prepare(`SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name`).all() as {
      type: string;
      name: string;
    }[]) {
      shape[`${type} ${name}`] = type === 'table' ? (db.pragma(`table_info(${name})`) as { name: string }[]).map((c) => c.name).sort() : [];
    }
    return shape;
  } finally {
    db.close();
  }
}

/** Takes away what schema 7 added (docs/protocol.md §13.6): the zones' maps. */
function withoutMaps(db: Database.Database): void {
  db.exec('DROP TABLE map_tiles');
}

/** Takes away what schemas 6 and 7 added (docs/protocol.md §13): the zones' logs and maps, their checkpoints, and the zone records in the journal. */
function withoutLogs(db: Database.Database): void {
  withoutMaps(db);
  db.exec(
    `ALTER TABLE zones DROP COLUMN checkpoint; ALTER TABLE records DROP COLUMN leaf; DROP TABLE log_nodes; DROP TABLE witnessed; DROP TABLE witness_forks; DROP TABLE witness_follows; DROP TABLE witness_keys; DELETE FROM journal WHERE type = 'zone'`,
  );
}

/** A zone with an owner's handle (registered, then updated) and two imported ones, rewritten as schema version 2. */
async function version2Database(): Promise<string> {
  const tmp = tempDir('idns-migrate-');
  cleanups.push(tmp.remove);
  const first = await startTestServer({ dataDir: tmp.dir, zones: { [ZONE]: {} } });
  const reg = signChangeRequest(
    { action: 'register', handle: `ann@${ZONE}`, endpoint: 'https://social.example/users/ann', keys: [owner.public] },
    owner.private,
  );
  await first.ctx.changes.submit(reg);
  await first.ctx.changes.submit(
    signChangeRequest(
      { action: 'update', handle: `ann@${ZONE}`, endpoint: 'https://social.example/users/ann2', keys: [owner.public], prev: requestId(reg) },
      owner.private,
    ),
  );
  await first.close();
  const lines = ['bob', 'cai'].map((n) => JSON.stringify({ handle: `${n}@${ZONE}`, endpoint: `https://social.example/users/${n}`, keys: [owner.public] }));
  writeFileSync(join(tmp.dir, 'import.ndjson'), lines.join('\n') + '\n');
  const imported = await runIdns(['zone', 'import', ZONE, join(tmp.dir, 'import.ndjson'), '--data', tmp.dir, '--json']);
  expect(imported.stderr).toBe('');
  rewriteAsVersion2(tmp.dir);
  return tmp.dir;
}

async function logOf(s: TestServer, handle: string) {
  const res = await fetch(`${s.url}/v1/handles/${handle}/log`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { operations: { seq: number; op: string; action: string; request: string }[] }).operations;
}

/** The digest of every record of the zone's content, recomputed from the stored records. */
function contentDigest(s: TestServer): string {
  const digest = ZoneDigest.empty();
  for (const type of ['handle', 'delegation', 'denial', 'op'] as const) {
    for (const key of s.ctx.store.records.keys(ZONE, type)) digest.add(type, key, s.ctx.store.records.jws(ZONE, type, key)!);
  }
  return digest.value();
}

function payloadOf(jws: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
}

describe('schema version 3: the history as zone content', () => {
  it('migrates a version 2 database: the owner history and the import lines become the zone content, signed into a new version, copied by secondaries', async () => {
    const dataDir = await version2Database();
    const before = new Database(join(dataDir, 'idns.sqlite'), { readonly: true });
    const oldSerial = (before.prepare(`SELECT version FROM zones WHERE name = ?`).get(ZONE) as { version: number }).version;
    const oldOps = before.prepare(`SELECT cid, handle, action FROM operations ORDER BY version`).all() as { cid: string; handle: string; action: string }[];
    before.close();
    expect(oldOps.map((o) => o.action)).toEqual(['register', 'update', 'import', 'import']);

    const s = await startTestServer({ dataDir });
    cleanups.push(() => s.close());
    const db = new Database(join(dataDir, 'idns.sqlite'), { readonly: true });
    cleanups.push(() => db.close());
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as { name: string }[]).map((t) => t.name);
    expect(tables).not.toContain('operations');
    expect(tables).not.toContain('migrated_imports');

    // One new version adds the history; the zone record's digest covers every record of the content.
    const info = s.ctx.zones.info(ZONE);
    expect(info.serial).toBe(oldSerial + 1);
    expect(contentDigest(s)).toBe(info.digest);
    const anchors = new Map([[ZONE, info.keyThumbprints]]);
    // Every record names its genesis and place, and follows from its history (checkAnswer verifies it):
    // the owner's own registration for ann, the operator's import entry for the imported handles.
    const checked = async (h: string) => {
      const answer = checkAnswer(await (await fetch(`${s.url}/v1/resolve/${h}@${ZONE}`)).json(), `${h}@${ZONE}`, anchors);
      if (answer.status !== 'answer') throw new Error(`no answer for ${h}`);
      return answer;
    };
    expect((await checked('ann')).record).toMatchObject({ genesis: oldOps[0]!.cid, seq: 2 });
    expect((await checked('ann')).history.operatorAsserted).toBe(false);
    for (const h of ['bob', 'cai']) expect((await checked(h)).history).toMatchObject({ seq: 1, operatorAsserted: true });

    // The owner's history is kept entry for entry.
    const ann = await logOf(s, `ann@${ZONE}`);
    expect(ann.map((e) => [e.seq, e.action, e.op])).toEqual([
      [1, 'register', oldOps[0]!.cid],
      [2, 'update', oldOps[1]!.cid],
    ]);
    // An import line becomes an operator entry signed by the zone key, naming the id the line gave the
    // handle; the record that rested on the line now names the entry.
    const bob = await logOf(s, `bob@${ZONE}`);
    expect(bob).toHaveLength(1);
    expect(bob[0]).toMatchObject({ seq: 1, action: 'import' });
    expect(payloadOf(bob[0]!.request)).toMatchObject({ action: 'import', zone: ZONE, handle: `bob@${ZONE}`, legacyOp: oldOps[2]!.cid });
    const bobRecord = (await (await fetch(`${s.url}/v1/resolve/bob@${ZONE}`)).json()) as { record: string };
    expect(payloadOf(bobRecord.record).op).toBe(bob[0]!.op);
    // The owner changes the handle on top of it, as before the upgrade.
    const update = signChangeRequest(
      { action: 'update', handle: `bob@${ZONE}`, endpoint: 'https://social.example/users/bob2', keys: [owner.public], prev: bob[0]!.op },
      owner.private,
    );
    await s.ctx.changes.submit(update);
    expect((await logOf(s, `bob@${ZONE}`)).map((e) => e.action)).toEqual(['import', 'update']);
    // The owner's change ends the operator's assertion; the registration (its genesis) goes on.
    expect((await checked('bob')).history).toMatchObject({ seq: 2, operatorAsserted: false, genesis: bob[0]!.op });

    // A secondary copies all of it and serves the same history.
    const secondary = await startTestServer();
    cleanups.push(() => secondary.close());
    secondary.ctx.zones.createSecondary(ZONE, { primaries: [s.url], ds: info.keyThumbprints });
    await secondary.ctx.replicator.checkNow(ZONE);
    expect(secondary.ctx.zones.info(ZONE).digest).toBe(s.ctx.zones.info(ZONE).digest);
    for (const h of ['ann', 'bob', 'cai']) expect(await logOf(secondary, `${h}@${ZONE}`)).toEqual(await logOf(s, `${h}@${ZONE}`));
  });

  it('migrates a version 1 database: every handle record gets its endpoint, the index is made, WebFinger by actor URL works', async () => {
    const dataDir = await version2Database();
    // Turn it back into what idns with schema version 1 wrote: no endpoint column, no index.
    const file = join(dataDir, 'idns.sqlite');
    const v1 = new Database(file);
    v1.exec('DROP INDEX records_by_endpoint; ALTER TABLE records DROP COLUMN endpoint');
    v1.pragma('user_version = 1');
    v1.close();

    const s = await startTestServer({ dataDir });
    cleanups.push(() => s.close());
    const db = new Database(file, { readonly: true });
    cleanups.push(() => db.close());
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(db.prepare(`SELECT key, endpoint FROM records WHERE type = 'handle' ORDER BY key`).all()).toEqual([
      { key: `ann@${ZONE}`, endpoint: 'https://social.example/users/ann2' },
      { key: `bob@${ZONE}`, endpoint: 'https://social.example/users/bob' },
      { key: `cai@${ZONE}`, endpoint: 'https://social.example/users/cai' },
    ]);
    expect(db.prepare(`SELECT count(*) AS n FROM records WHERE type != 'handle' AND endpoint IS NOT NULL`).get()).toEqual({ n: 0 });
    const plan = db.prepare(`EXPLAIN QUERY PLAN SELECT key FROM records WHERE endpoint = ?`).all('x') as { detail: string }[];
    expect(plan.map((p) => p.detail).join(' ')).toContain('records_by_endpoint');
    expect((await logOf(s, `cai@${ZONE}`)).map((e) => e.action)).toEqual(['import']);

    const res = await fetch(`${s.url}/.well-known/webfinger?resource=${encodeURIComponent('https://social.example/users/bob')}`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { subject: string }).subject).toBe(`acct:bob@${ZONE}`);
  });
});

describe('schema version 4: handle records name their genesis and place in the history', () => {
  it('migrates a version 3 database: one new version re-signs every handle record with genesis and seq, and secondaries copy it', async () => {
    const dataDir = await version2Database();
    const upgraded = await startTestServer({ dataDir });
    await upgraded.close();
    rewriteAsVersion3(dataDir);
    const before = new Database(join(dataDir, 'idns.sqlite'), { readonly: true });
    const oldSerial = decodePayload((before.prepare(`SELECT record FROM zones WHERE name = ?`).get(ZONE) as { record: string }).record).serial as number;
    const oldRecords = before.prepare(`SELECT jws FROM records WHERE type = 'handle'`).pluck().all() as string[];
    before.close();
    expect(oldRecords.map((r) => payloadOf(r).genesis)).toEqual([undefined, undefined, undefined]);

    const s = await startTestServer({ dataDir });
    let open = true;
    cleanups.push(async () => {
      if (open) await s.close();
    });
    const info = s.ctx.zones.info(ZONE);
    expect(info.serial).toBe(oldSerial + 1);
    expect(contentDigest(s)).toBe(info.digest);
    const anchors = new Map([[ZONE, info.keyThumbprints]]);
    const expected = { ann: { seq: 2, operatorAsserted: false }, bob: { seq: 1, operatorAsserted: true }, cai: { seq: 1, operatorAsserted: true } };
    for (const [h, want] of Object.entries(expected)) {
      const log = await logOf(s, `${h}@${ZONE}`);
      const answer = checkAnswer(await (await fetch(`${s.url}/v1/resolve/${h}@${ZONE}`)).json(), `${h}@${ZONE}`, anchors);
      if (answer.status !== 'answer') throw new Error(`no answer for ${h}`);
      expect(answer.record).toMatchObject({ genesis: log[0]!.op, seq: want.seq });
      expect(answer.history.operatorAsserted).toBe(want.operatorAsserted);
    }
    // Nothing is left to upgrade: a restart signs no other version.
    open = false;
    await s.close();
    const again = await startTestServer({ dataDir });
    cleanups.push(() => again.close());
    expect(again.ctx.zones.info(ZONE).serial).toBe(oldSerial + 1);
    // A secondary copies the upgraded zone and answers the same.
    const secondary = await startTestServer();
    cleanups.push(() => secondary.close());
    secondary.ctx.zones.createSecondary(ZONE, { primaries: [again.url], ds: info.keyThumbprints });
    await secondary.ctx.replicator.checkNow(ZONE);
    expect(secondary.ctx.zones.info(ZONE).digest).toBe(again.ctx.zones.info(ZONE).digest);
    expect(checkAnswer(await (await fetch(`${secondary.url}/v1/resolve/ann@${ZONE}`)).json(), `ann@${ZONE}`, anchors).status).toBe('answer');
  });
});

/** The digest state as idns before schema 5 computed it: each element expanded with SHAKE128 to 2048 bytes. */
function shakeState(records: readonly { type: string; key: string; jws: string }[]): Buffer {
  const lanes = new Uint16Array(1024);
  for (const r of records) {
    const out = createHash('shake128', { outputLength: 2048 }).update(`${r.type}\n${r.key}\n${r.jws}`).digest();
    for (let i = 0; i < 1024; i++) lanes[i] = lanes[i]! + out.readUInt16LE(i * 2);
  }
  const state = Buffer.alloc(2048);
  lanes.forEach((v, i) => state.writeUInt16LE(v, i * 2));
  return state;
}

describe('schema version 5: the digest expanded with ChaCha20, compact histories kept', () => {
  it('migrates a version 4 database: its digest is computed anew, one version signs it, and a secondary copies and verifies it', async () => {
    const { dataDir } = await twoHandles();
    // Rewrite it as idns with schema 4 left it: the SHAKE128 digest in the state and the signed zone record, no compact_histories.
    const db = new Database(join(dataDir, 'idns.sqlite'));
    const zone = db.prepare(`SELECT record, content FROM zones WHERE name = ?`).get(ZONE) as { record: string; content: string };
    const kid = (JSON.parse(Buffer.from(zone.record.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;
    const key = new KeyRing(join(dataDir, 'keys')).load(ZONE, kid);
    const state = shakeState(db.prepare(`SELECT type, key, jws FROM records WHERE content = ?`).all(zone.content) as Row[]);
    const oldDigest = createHash('sha256').update(state).digest('base64url');
    const oldRecord = signCompact({ ...decodePayload(zone.record), digest: oldDigest }, key, RECORD_TYP);
    db.prepare(`UPDATE zones SET record = ?, digest_state = ? WHERE name = ?`).run(oldRecord, state, ZONE);
    db.exec('DROP TABLE compact_histories');
    withoutLogs(db);
    db.pragma('user_version = 4');
    db.close();
    const oldSerial = decodePayload(oldRecord).serial as number;

    const s = await startTestServer({ dataDir });
    cleanups.push(() => s.close());
    const info = s.ctx.zones.info(ZONE);
    expect(info.serial).toBe(oldSerial + 1);
    expect(info.digest).not.toBe(oldDigest);
    expect(contentDigest(s)).toBe(info.digest);
    const served = (await (await fetch(`${s.url}/v1/zones/${ZONE}`)).json()) as { digest: string; record: string };
    expect(served.digest).toBe(info.digest);
    expect(decodePayload(served.record).digest).toBe(info.digest);
    // A secondary's full transfer checks the new digest against what it computes from the records.
    const secondary = await startTestServer();
    cleanups.push(() => secondary.close());
    secondary.ctx.zones.createSecondary(ZONE, { primaries: [s.url], ds: info.keyThumbprints });
    await secondary.ctx.replicator.checkNow(ZONE);
    expect(secondary.ctx.zones.info(ZONE)).toMatchObject({ serial: oldSerial + 1, digest: info.digest });
  });
});

describe('schema version 6: every zone keeps a log', () => {
  it('migrates a version 5 database: the primary builds its log from its content and signs a checkpoint; a copy without a log takes a full transfer', async () => {
    const tmp = tempDir('idns-migrate-');
    cleanups.push(tmp.remove);
    const dataDir = tmp.dir;
    const first = await startTestServer({ dataDir, zones: { [ZONE]: {} } });
    const reg = signChangeRequest({ action: 'register', handle: `ann@${ZONE}`, endpoint: 'https://social.example/ann', keys: [owner.public] }, owner.private);
    await first.ctx.changes.submit(reg);
    await first.ctx.changes.submit(
      signChangeRequest(
        { action: 'update', handle: `ann@${ZONE}`, endpoint: 'https://social.example/ann2', keys: [owner.public], prev: requestId(reg) },
        owner.private,
      ),
    );
    await first.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: `bob@${ZONE}`, endpoint: 'https://social.example/bob', keys: [owner.public] }, owner.private),
    );
    first.ctx.zones.delegate(ZONE, `child.${ZONE}`, { servers: ['https://child.example/'], ds: ['A'.repeat(43)] });
    await first.close();
    // As idns with schema 5 left it: no logs, no checkpoints, no zone records in the journal.
    const db = new Database(join(dataDir, 'idns.sqlite'));
    withoutLogs(db);
    db.pragma('user_version = 5');
    const entries = db.prepare(`SELECT key, jws FROM records WHERE type = 'op' ORDER BY key`).all() as { key: string; jws: string }[];
    const delegation = db.prepare(`SELECT jws FROM records WHERE type = 'delegation'`).pluck().get() as string;
    const oldSerial = decodePayload(db.prepare('SELECT record FROM zones').pluck().get() as string).serial as number;
    db.close();

    const s = await startMigrated(dataDir);
    const zone = (await (await fetch(`${s.url}/v1/zones/${ZONE}`)).json()) as { serial: number; record: string; checkpoint: string };
    expect(zone.serial).toBe(oldSerial + 1);
    // The log: the history entries in key order, the delegation, then the zone record of the version signed at start-up.
    const sha = (...parts: (string | Buffer)[]) => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest();
    const leaf = (kind: number, key: string, jws: string) => sha(Buffer.from([0, kind]), sha(key), sha(jws));
    const leaves = [...entries.map((e) => leaf(1, e.key, e.jws)), leaf(2, `child.${ZONE}`, delegation), leaf(4, '', zone.record)];
    const node = (l: Buffer, r: Buffer) => sha(Buffer.from([1]), l, r);
    // Five leaves: MTH = node(node(node(0,1), node(2,3)), 4).
    const root = node(node(node(leaves[0]!, leaves[1]!), node(leaves[2]!, leaves[3]!)), leaves[4]!);
    expect(leaves).toHaveLength(5);
    expect(zone.checkpoint.split('\n').slice(0, 3)).toEqual([`${ZONE}/idns-log`, '5', root.toString('base64')]);
    const log = (await (await fetch(`${s.url}/v1/handles/ann@${ZONE}/log`)).json()) as { operations: { leaf: number }[] };
    expect(log.operations.map((o) => o.leaf)).toEqual([0, 1]);

    // A secondary copies the log; a copy that lost it (as one made by schema 5) takes a full transfer again.
    const info = s.ctx.zones.info(ZONE);
    const secondary = await startTestServer();
    cleanups.push(() => secondary.close());
    secondary.ctx.zones.createSecondary(ZONE, { primaries: [s.url], ds: info.keyThumbprints });
    await secondary.ctx.replicator.checkNow(ZONE);
    await s.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: `cai@${ZONE}`, endpoint: 'https://social.example/cai', keys: [owner.public] }, owner.private),
    );
    const copy = new Database(join(secondary.dataDir, 'idns.sqlite'));
    copy.prepare(`UPDATE zones SET checkpoint = '' WHERE name = ?`).run(ZONE);
    copy.close();
    const status = await secondary.ctx.replicator.checkNow(ZONE);
    expect(status.transfers).toMatchObject({ full: 2, incremental: 0 });
    const served = (await (await fetch(`${secondary.url}/v1/zones/${ZONE}`)).json()) as { checkpoint: string };
    expect(served.checkpoint).toBe(((await (await fetch(`${s.url}/v1/zones/${ZONE}`)).json()) as { checkpoint: string }).checkpoint);
  });
});

describe('schema version 7: every zone keeps a map of its records', () => {
  it('migrates a version 6 database: the primary builds its map from its content and names it in the checkpoint it signs; a copy takes it and follows', async () => {
    const { dataDir, kid } = await twoHandles();
    // As idns with schema 6 left it: no map, a checkpoint of the tree alone.
    const db = new Database(join(dataDir, 'idns.sqlite'));
    const row = db.prepare('SELECT checkpoint, record FROM zones WHERE name = ?').get(ZONE) as { checkpoint: string; record: string };
    const [origin, size, root] = row.checkpoint.split('\n') as [string, string, string];
    const key = new KeyRing(join(dataDir, 'keys')).load(ZONE, kid);
    const { signNote, ed25519NoteSigner } = await import('../src/transparency/note.js');
    const { checkpointText } = await import('../src/transparency/checkpoint.js');
    const unmapped = signNote(checkpointText({ origin, size: Number(size), root: Buffer.from(root, 'base64') }), [
      ed25519NoteSigner(origin, key.privateKey, key.publicJwk),
    ]);
    db.prepare('UPDATE zones SET checkpoint = ? WHERE name = ?').run(unmapped, ZONE);
    db.exec('DROP TABLE map_tiles');
    db.pragma('user_version = 6');
    const oldSerial = decodePayload(row.record).serial as number;
    db.close();

    const s = await startMigrated(dataDir);
    // One version signed at start-up; its checkpoint names the map of the zone's handle, delegation and denial records.
    const zone = (await (await fetch(`${s.url}/v1/zones/${ZONE}`)).json()) as { serial: number; checkpoint: string };
    expect(zone.serial).toBe(oldSerial + 1);
    const { MapEntries, MAPPED_TYPES, mapKey, mapValue } = await import('../src/transparency/zone-map.js');
    const entries = new MapEntries();
    for (const type of MAPPED_TYPES)
      for (const k of s.ctx.store.records.keys(ZONE, type)) entries.add(mapKey(type, k), mapValue(s.ctx.store.records.jws(ZONE, type, k)!));
    expect(zone.checkpoint.split('\n')[3]).toBe(`idns-map ${entries.build().toString('base64')}`);
    const answer = (await (await fetch(`${s.url}/v1/resolve/ann@${ZONE}?log=1`)).json()) as { log: { map: string[][] } };
    expect(answer.log.map).toHaveLength(1);

    // A copy takes the zone and its map, and then follows the primary's changes.
    const secondary = await startTestServer();
    cleanups.push(() => secondary.close());
    secondary.ctx.zones.createSecondary(ZONE, { primaries: [s.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow(ZONE);
    await s.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: `cai@${ZONE}`, endpoint: 'https://social.example/cai', keys: [owner.public] }, owner.private),
    );
    const status = await secondary.ctx.replicator.checkNow(ZONE);
    expect(status.transfers).toMatchObject({ full: 1, incremental: 1 });
    const served = (await (await fetch(`${secondary.url}/v1/resolve/cai@${ZONE}?log=1`)).json()) as { log: { map: string[][] } };
    const fromPrimary = (await (await fetch(`${s.url}/v1/resolve/cai@${ZONE}?log=1`)).json()) as { log: { map: string[][] } };
    expect(served.log.map).toEqual(fromPrimary.log.map);
  });
});

describe('schema version 8: the maps are stored by tile', () => {
  it('migrates a version 7 database: the same map stored by tile, nothing signed again, answers still proven current, and the next change made on it', async () => {
    const { dataDir } = await twoHandles();
    const { byPath, MapEntries, MAPPED_TYPES, mapKey, mapValue, verifyMapMembership } = await import('../src/transparency/zone-map.js');
    const { Store } = await import('../src/store/store.js');
    const mapOf = (store: InstanceType<typeof Store>) => {
      const entries = new MapEntries();
      for (const type of MAPPED_TYPES)
        for (const k of store.records.keys(ZONE, type)) entries.add(mapKey(type, k), mapValue(store.records.jws(ZONE, type, k)!));
      return entries;
    };
    // As idns with schema 7 left it: every node under its path (two bytes of depth, then its bits).
    const store = Store.open(dataDir);
    const packed = mapOf(store);
    store.close();
    const db = new Database(join(dataDir, 'idns.sqlite'));
    const { version, checkpoint } = db.prepare('SELECT version, checkpoint FROM zones WHERE name = ?').get(ZONE) as { version: number; checkpoint: string };
    db.exec('DROP TABLE map_tiles');
    db.exec(
      'CREATE TABLE map_nodes (content TEXT NOT NULL, path BLOB NOT NULL, hash BLOB NOT NULL, leaf_key BLOB, PRIMARY KEY (content, path)) STRICT, WITHOUT ROWID',
    );
    const insert = db.prepare('INSERT INTO map_nodes (content, path, hash, leaf_key) VALUES (?, ?, ?, ?)');
    const root = packed.build(byPath((path, node) => insert.run(ZONE, path, node.hash, node.key)));
    const rows = (db.prepare('SELECT count(*) AS n FROM map_nodes').get() as { n: number }).n;
    expect(rows).toBeGreaterThan(2);
    db.pragma('user_version = 7');
    db.close();

    const s = await startMigrated(dataDir);
    // Nothing signed at start-up: the checkpoint that named the map still does (the same map, by tile).
    const zone = (await (await fetch(`${s.url}/v1/zones/${ZONE}`)).json()) as { serial: number; checkpoint: string };
    expect([zone.serial, zone.checkpoint.split('\n').slice(0, 4)]).toEqual([version, checkpoint.split('\n').slice(0, 4)]);
    expect(zone.checkpoint.split('\n')[3]).toBe(`idns-map ${root.toString('base64')}`);
    const migrated = new Database(join(dataDir, 'idns.sqlite'), { readonly: true });
    expect((migrated.prepare('SELECT count(*) AS n FROM map_tiles').get() as { n: number }).n).toBeGreaterThan(0);
    migrated.close();
    const answer = (await (await fetch(`${s.url}/v1/resolve/ann@${ZONE}?log=1`)).json()) as { record: string; log: { map: string[][] } };
    verifyMapMembership(
      mapKey('handle', `ann@${ZONE}`),
      mapValue(answer.record),
      answer.log.map[0]!.map((h) => Buffer.from(h, 'base64')),
      root,
    );
    // The next change is made on the migrated map (not built again): its root is the records' map.
    await s.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: `cai@${ZONE}`, endpoint: 'https://social.example/cai', keys: [owner.public] }, owner.private),
    );
    const next = (await (await fetch(`${s.url}/v1/zones/${ZONE}`)).json()) as { checkpoint: string };
    expect(next.checkpoint.split('\n')[3]).toBe(`idns-map ${mapOf(s.ctx.store).build().toString('base64')}`);
  });
});
