import Database from 'better-sqlite3';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IdnsError } from '../errors.js';
import { handleEndpoint } from './endpoint.js';
import { HISTORY_EXP, RecordStore } from './records.js';
import { CompactHistories } from './compact-histories.js';
import { ZoneDigest } from '../records/digest.js';
import { MapStore } from './map-nodes.js';

export type Db = Database.Database;

/** The records' listener of a migration: nothing caches them while it runs. */
const NO_LISTENER = { noteWritten: (): void => {}, drop: (): void => {} };

/** The schema version schema.sql defines; bumped together with a migration below. */
export const SCHEMA_VERSION = 8;

// src/store/ and dist/store/ both sit two levels below the package root, where schema.sql lives.
const SCHEMA_PATH = new URL('../../schema.sql', import.meta.url);

/** Opens (creating if needed) the server's database in `dataDir` and brings its schema up to date. */
export function openDatabase(dataDir: string, options: { readonly?: boolean; maxBytes?: number | null } = {}): Db {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new Database(join(dataDir, 'idns.sqlite'), { readonly: options.readonly ?? false });
  configure(db);
  migrate(db);
  if (options.maxBytes) {
    // A cap on the file (like a full disk, but chosen): writes past it fail with SQLITE_FULL, nothing is half-written.
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxBytes / pageSize))}`);
  }
  return db;
}

/** Opens an in-memory database with the schema, for unit tests of pure storage logic. */
export function openMemoryDatabase(): Db {
  const db = new Database(':memory:');
  configure(db);
  migrate(db);
  return db;
}

function configure(db: Db): void {
  // Only takes effect on a new, empty database. SQLite keeps a row of a WITHOUT ROWID table in its B-tree
  // page only up to about a quarter of the page; the rest goes to an overflow page of its own. Denials are
  // 2-3 KB, so with 8 KiB pages each one took a whole extra page, read on every registration and rewritten
  // (with the free list) on every change. 16 KiB pages keep every record in its leaf: a database a quarter
  // smaller and registrations about 18% faster on a million-handle zone, for about 5% on random reads.
  db.pragma('page_size = 16384');
  db.pragma('journal_mode = WAL');
  // The WAL is copied into the database file (a checkpoint) when it reaches this many pages (128 MiB),
  // by the commit that reaches it. The default (1,000 pages) made a registration's commit run one every
  // hundred registrations or so, copying again the pages every change rewrites (B-tree interiors, the
  // map's upper tiles, the journal's end); eight times fewer checkpoints copy them eight times less often.
  // The connection whose commit reaches it runs it (the writer thread's, nearly always). The file is cut
  // back to that size after a checkpoint that let it grow past it (a long read held it).
  db.pragma('wal_autocheckpoint = 8192');
  db.pragma(`journal_size_limit = ${8192 * 16384}`);
  // FULL: a commit is on disk (WAL fsynced) before it returns, so an acknowledged write survives a crash
  // or power loss, not just a process kill.
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  // The CLI may write (zone create, invites) while a server holds the database: wait, don't fail.
  db.pragma('busy_timeout = 5000');
}

function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current === SCHEMA_VERSION) return;
  if (current > SCHEMA_VERSION) {
    throw new IdnsError('invalid_config', `the database has schema version ${current}, newer than this idns (${SCHEMA_VERSION}); upgrade idns`);
  }
  const schema = readFileSync(SCHEMA_PATH, 'utf8');
  db.transaction(() => {
    if (current === 0) db.exec(schema);
    if (current === 1) addEndpointColumn(db);
    if (current >= 1 && current <= 2) moveHistoryIntoContent(db);
    if (current === 3) db.exec("UPDATE zones SET history_pending = 2 WHERE role = 'primary' AND history_pending = 0");
    // Before any step that prepares the store's statements, which name schema 6's columns.
    if (current >= 1 && current <= 5) addZoneLogs(db);
    if (current >= 1 && current <= 6) addZoneMaps(db);
    if (current === 7) tileMaps(db);
    if (current >= 1 && current <= 4) addCompactHistories(db);
    if (current >= 1 && current <= 4) recomputeDigests(db);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

/**
 * Version 1 → 2: handle records get their `endpoint` column (found by WebFinger by actor URL), filled
 * from each stored record, and its index. O(handles), once, inside the migration's transaction. The
 * function that reads a record's endpoint exists only for this statement: the schema never depends on it.
 */
function addEndpointColumn(db: Db): void {
  db.exec('ALTER TABLE records ADD COLUMN endpoint TEXT');
  db.function('idns_migrate_endpoint', { deterministic: true }, (jws: unknown) => (typeof jws === 'string' ? handleEndpoint(jws) : null));
  db.exec(`UPDATE records SET endpoint = idns_migrate_endpoint(jws) WHERE type = 'handle'`);
  db.exec('CREATE INDEX records_by_endpoint ON records (endpoint) WHERE endpoint IS NOT NULL');
}

/**
 * Version 2 → 3: a handle's owner-signed history becomes zone content (stored type `op`, key
 * `handle '#' seq`), so every server of the zone holds, transfers and digests it. The records table is
 * rebuilt for its wider type CHECK; each owner-signed request of the `operations` table becomes an `op`
 * row of its zone's content, numbered in the order accepted, and the table goes. Import lines were never
 * signed: they wait in `migrated_imports` for the zone key. The zones' digests do not cover the new rows
 * yet: `history_pending` makes each primary sign a version that adds them and turns each import line
 * into an operator entry (ZoneService.editor, src/authority/zones.ts) before its next change.
 */
function moveHistoryIntoContent(db: Db): void {
  db.exec(`CREATE TABLE records_v3 (
    content TEXT NOT NULL,
    type    TEXT NOT NULL CHECK (type IN ('handle', 'delegation', 'denial', 'op')),
    key     TEXT NOT NULL,
    version INTEGER NOT NULL,
    exp     INTEGER NOT NULL,
    jws     TEXT NOT NULL,
    endpoint TEXT,
    PRIMARY KEY (content, type, key)
  ) STRICT, WITHOUT ROWID`);
  db.exec('INSERT INTO records_v3 SELECT content, type, key, version, exp, jws, endpoint FROM records');
  // Entries are numbered in the order accepted, import lines included, so an import keeps its place (1).
  db.exec(`CREATE TEMP TABLE numbered AS
    SELECT o.zone, z.content, o.handle, o.action, o.cid, o.version, o.jws,
           row_number() OVER (PARTITION BY o.zone, o.handle ORDER BY o.version) AS seq
    FROM operations o JOIN zones z ON z.name = o.zone`);
  db.exec(`INSERT INTO records_v3 (content, type, key, version, exp, jws, endpoint)
    SELECT content, 'op', handle || '#' || printf('%06d', seq), version, ${HISTORY_EXP}, jws, NULL FROM numbered WHERE action != 'import'`);
  db.exec(`CREATE TABLE migrated_imports (zone TEXT NOT NULL, handle TEXT NOT NULL, seq INTEGER NOT NULL, cid TEXT NOT NULL, line TEXT NOT NULL) STRICT`);
  db.exec(`INSERT INTO migrated_imports SELECT zone, handle, seq, cid, jws FROM numbered WHERE action = 'import'`);
  db.exec('DROP TABLE temp.numbered');
  db.exec('DROP TABLE records');
  db.exec('ALTER TABLE records_v3 RENAME TO records');
  db.exec("CREATE INDEX records_by_exp ON records (content, exp) WHERE type != 'op'");
  db.exec('CREATE INDEX records_by_endpoint ON records (endpoint) WHERE endpoint IS NOT NULL');
  db.exec('DROP TABLE operations');
  db.exec('ALTER TABLE zones ADD COLUMN history_pending INTEGER NOT NULL DEFAULT 0');
  db.exec("UPDATE zones SET history_pending = 1 WHERE role = 'primary'");
}

// Version 3 → 4: handle records name their `genesis` and `seq` (docs/protocol.md §3.1). Signing is the
// zone key's work, so the migration only marks each primary (history_pending = 2): its first editor
// re-signs every handle record with them, in one version (ZoneService.editor, src/authority/zones.ts).
// A schema-2 database is marked 1 by moveHistoryIntoContent, which includes that work.

/**
 * Version 4 → 5: long histories keep their compact form and evidence beside them (compact-histories.ts),
 * made here once for every long history there is, inside the migration's transaction.
 */
function addCompactHistories(db: Db): void {
  db.exec(`CREATE TABLE compact_histories (
    content  TEXT NOT NULL,
    handle   TEXT NOT NULL,
    kept     TEXT NOT NULL,
    last     INTEGER NOT NULL,
    evidence TEXT NOT NULL,
    PRIMARY KEY (content, handle)
  ) STRICT`);
  new CompactHistories(db, new RecordStore(db, NO_LISTENER)).rebuildAll();
}

/**
 * Version 4 → 5: the zone digest expands each record with ChaCha20 instead of SHAKE128 (docs/protocol.md
 * §5). Every zone's digest state is computed again from its records, one pass over them; each primary
 * then signs one version whose zone record states the new digest (history_pending 2: its re-signing
 * of handle records finds nothing left to do), before it serves. A secondary's copy keeps its old zone
 * record until the next transfer from an upgraded primary (docs/operations.md: upgrade a zone's servers
 * together).
 */
function recomputeDigests(db: Db): void {
  const zones = db.prepare<[], { name: string; content: string; pending: number }>('SELECT name, content, history_pending AS pending FROM zones').all();
  const records = db.prepare<[string], { type: string; key: string; jws: string }>('SELECT type, key, jws FROM records WHERE content = ?');
  const setState = db.prepare('UPDATE zones SET digest_state = ? WHERE name = ?');
  for (const zone of zones) {
    const digest = ZoneDigest.empty();
    // A history just moved into the content (schema 3's upgrade, pending 1) is added by the version that upgrade signs.
    for (const r of records.iterate(zone.content)) if (zone.pending !== 1 || r.type !== 'op') digest.add(r.type, r.key, r.jws);
    setState.run(digest.state(), zone.name);
  }
  db.exec("UPDATE zones SET history_pending = 2 WHERE role = 'primary' AND history_pending = 0");
}

/**
 * Version 5 → 6: every zone gets a log (docs/protocol.md §13), and the server a witness's state (§14): the
 * tables here, empty. A primary's log is
 * built from its content by the first version it signs (src/transparency/zone-log.ts seeds a log that has
 * no checkpoint yet), which history_pending makes it sign at start-up; a secondary, whose copy has no
 * checkpoint, takes a full transfer that brings the primary's log.
 */
function addZoneLogs(db: Db): void {
  db.exec(`ALTER TABLE zones ADD COLUMN checkpoint TEXT NOT NULL DEFAULT ''`);
  db.exec(`ALTER TABLE records ADD COLUMN leaf INTEGER`);
  db.exec(`CREATE TABLE log_nodes (
    content TEXT NOT NULL,
    level   INTEGER NOT NULL,
    idx     INTEGER NOT NULL,
    hash    BLOB NOT NULL,
    PRIMARY KEY (content, level, idx)
  ) STRICT, WITHOUT ROWID`);
  db.exec(`CREATE TABLE witnessed (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, note TEXT NOT NULL) STRICT`);
  db.exec(`CREATE TABLE witness_keys (name TEXT PRIMARY KEY, public_key TEXT NOT NULL) STRICT`);
  db.exec(
    `CREATE TABLE witness_follows (zone TEXT PRIMARY KEY, servers TEXT NOT NULL, keys TEXT NOT NULL, serial INTEGER NOT NULL, ttl INTEGER NOT NULL, checked_at INTEGER NOT NULL) STRICT`,
  );
  db.exec(
    `CREATE TABLE witness_forks (origin TEXT NOT NULL, held TEXT NOT NULL, offered TEXT NOT NULL, proof TEXT NOT NULL, why TEXT NOT NULL, at INTEGER NOT NULL) STRICT`,
  );
  db.exec("UPDATE zones SET history_pending = 2 WHERE role = 'primary' AND history_pending = 0");
}

/**
 * Version 6 → 7: every zone gets a map of its current records (docs/protocol.md §13.6), empty here. A
 * primary builds its map from its content by the first version it signs (its checkpoint names no map yet),
 * which history_pending makes it sign at start-up; a secondary builds its own from its copy when the
 * first checkpoint naming a map arrives (src/replication/transfer-client.ts).
 */
function addZoneMaps(db: Db): void {
  db.exec(MAP_TILES_TABLE);
  db.exec("UPDATE zones SET history_pending = 2 WHERE role = 'primary' AND history_pending = 0");
}

/**
 * Version 7 → 8: the maps are stored by tile (src/store/map-nodes.ts), a row per tile of 5 levels instead
 * of a row per node. Each content id's map is built again from its records (MapStore.rebuild, as for a
 * primary's first map: the same map, so its checkpoint still names it): O(n log n) for n records, once,
 * inside the migration's transaction; nothing is signed again and copies keep following their primaries.
 */
function tileMaps(db: Db): void {
  db.exec(MAP_TILES_TABLE);
  const maps = new MapStore(db, new RecordStore(db, NO_LISTENER));
  for (const content of db.prepare<[], string>('SELECT DISTINCT content FROM map_nodes').pluck().all()) maps.rebuild(content);
  db.exec('DROP TABLE map_nodes');
}

/** schema.sql's `map_tiles` (since version 8). */
const MAP_TILES_TABLE = `CREATE TABLE map_tiles (content TEXT NOT NULL, tile BLOB NOT NULL, nodes BLOB NOT NULL, PRIMARY KEY (content, tile)) STRICT, WITHOUT ROWID`;

/** True for SQLite's "another connection holds the write lock" (past the busy timeout). */
export function isStorageBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

/** True for SQLite's "disk full" family, which callers map to a typed error instead of a bare 500. */
export function isStorageFull(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_FULL' || code === 'SQLITE_IOERR_WRITE';
}
