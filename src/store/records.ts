import { BulkInsert, ROLLBACK_ON_CONFLICT } from './bulk-insert.js';
import type { Db } from './database.js';
import { handleEndpoint } from './endpoint.js';
import { historyKey, parseHistoryKey } from '../records/history-key.js';
import type { NumberedEntry } from '../records/history-chain.js';

export type StoredType = 'handle' | 'delegation' | 'denial' | 'op';

/**
 * The expiry column of a history entry (`op`): owner-signed requests carry no expiry and are never
 * re-signed. The expiry index leaves them out (schema.sql); the value only keeps the column meaningful.
 */
export const HISTORY_EXP = 2 ** 53 - 1;

/** What hears of history entries written and of contents dropped. */
export interface HistoryListener {
  noteWritten(content: string, key: string): void;
  drop(content: string): void;
}

/** A stored record of a zone's content. */
export interface StoredRecord {
  type: StoredType;
  key: string;
  version: number;
  exp: number;
  jws: string;
}

/** A record as a transfer carries it: what a copy stores (its version and expiry columns stay 0). */
export interface LoadedRecord {
  type: StoredType;
  key: string;
  jws: string;
  /** A history entry's leaf in the zone's log, when the transfer says. */
  leaf?: number | null;
}

/**
 * How many signed records of a (content, type) there are, counted on the expiry index, which holds
 * (content, exp, type, key) and nothing else: the table's own key would do too, but its leaves carry the
 * records, and a million handles' leaves are 1.35 GB to read (1.7 s cold, 0.18 s warm) where the index's
 * are ~50 MB (0.11 s cold, 0.08 s warm). The index leaves history entries out (they never expire), and
 * SQLite uses a partial index only for a query that states its condition: hence `type != 'op'`.
 */
export const COUNT_BY_TYPE_SQL = `SELECT count(*) FROM records INDEXED BY records_by_exp WHERE content = ? AND type = ? AND type != 'op'`;

/** Rows per multi-row INSERT when loading a copy: one statement call instead of 64 (bounded by SQLite's 32,766 parameters). */
const LOAD_ROWS_PER_STATEMENT = 64;

/**
 * The signed records of every zone, keyed by (content id, type, key). Callers pass the zone row's
 * `content`, which is the zone name on a primary and the current copy's id on a secondary.
 */
export class RecordStore {
  private readonly getStmt;
  private readonly jwsStmt;
  private readonly putStmt;
  private readonly delStmt;
  private readonly gapStmt;
  private readonly dueStmt;
  private readonly earliestStmt;
  private readonly totalsStmt;
  private readonly countStmt;
  private readonly underStmt;
  private readonly deleteSomeStmt;
  private readonly keysStmt;
  private readonly pageStmt;
  private readonly setExpStmt;
  private readonly retireStmt;
  private readonly unretireStmt;
  private readonly nextRetiredStmt;
  private readonly isRetiredStmt;
  private readonly bulk;
  private readonly loadOneStmt;
  private readonly loadManyStmt;
  private readonly putLoadedStmt;
  private readonly byEndpointStmt;
  private readonly historyStmt;
  private readonly historySizeStmt;
  private readonly latestHistoryStmt;
  private readonly firstStmt;
  private readonly setLeafStmt;
  private readonly leafStmt;
  private readonly newestLeafStmt;
  private readonly keyPageStmt;
  private readonly firstPageStmt;

  /** `histories` hears of every history entry written and of contents dropped (compact-histories.ts keeps long histories' compact forms). */
  constructor(
    db: Db,
    private readonly histories: HistoryListener,
  ) {
    this.getStmt = db.prepare<[string, string, string], StoredRecord>(
      `SELECT type, key, version, exp, jws FROM records WHERE content = ? AND type = ? AND key = ?`,
    );
    // The read path needs only the signed record: one column, no row object, the type written in (one
    // parameter fewer to bind per query).
    const jwsOf = (type: StoredType) =>
      db.prepare<[string, string], string>(`SELECT jws FROM records WHERE content = ? AND type = '${type}' AND key = ?`).pluck();
    this.jwsStmt = { handle: jwsOf('handle'), delegation: jwsOf('delegation'), denial: jwsOf('denial'), op: jwsOf('op') };
    // A handle's entries are the keys from `handle#` to `handle$` ('$' follows '#'): one range of the primary key.
    this.historyStmt = db.prepare<[string, string, string, number], { key: string; jws: string }>(
      `SELECT key, jws FROM records WHERE content = ? AND type = 'op' AND key > ? AND key < ? ORDER BY key LIMIT ?`,
    );
    this.historySizeStmt = db.prepare<[string, string, string], { entries: number; chars: number | null }>(
      `SELECT count(*) AS entries, sum(length(jws)) AS chars FROM records WHERE content = ? AND type = 'op' AND key > ? AND key < ?`,
    );
    this.latestHistoryStmt = db.prepare<[string, string, string, number], { key: string; jws: string }>(
      `SELECT key, jws FROM records WHERE content = ? AND type = 'op' AND key > ? AND key < ? ORDER BY key DESC LIMIT ?`,
    );
    this.firstStmt = db.prepare<[string, string], string>(`SELECT jws FROM records WHERE content = ? AND type = ? ORDER BY key LIMIT 1`).pluck();
    this.putStmt = db.prepare(
      `INSERT INTO records (content, type, key, version, exp, jws, endpoint, leaf) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (content, type, key) DO UPDATE SET version = excluded.version, exp = excluded.exp, jws = excluded.jws, endpoint = excluded.endpoint, leaf = excluded.leaf`,
    );
    this.delStmt = db.prepare(`DELETE FROM records WHERE content = ? AND type = ? AND key = ?`);
    // The gap that starts at the greatest key below the hash: the gaps tile the hash space.
    this.gapStmt = db.prepare<[string, string], StoredRecord>(
      `SELECT type, key, version, exp, jws FROM records WHERE content = ? AND type = 'denial' AND key < ? ORDER BY key DESC LIMIT 1`,
    );
    this.dueStmt = db.prepare<[string, number, number], StoredRecord>(
      `SELECT type, key, version, exp, jws FROM records WHERE content = ? AND exp < ? AND type != 'op' ORDER BY exp LIMIT ?`,
    );
    // In the expiry index's order, stopping at the first signature: one index seek, however large the zone
    // (history entries, which have no expiry, sort last on a primary; on a copy every exp is 0).
    this.earliestStmt = db.prepare<[string], number>(`SELECT exp FROM records WHERE content = ? AND type != 'op' ORDER BY exp LIMIT 1`).pluck();
    this.countStmt = db.prepare<[string, string], number>(COUNT_BY_TYPE_SQL).pluck();
    // Every column is ASCII (types, normalised names, hashes, compact JWS): length() counts its bytes.
    this.totalsStmt = db.prepare<[string], { count: number; size: number | null }>(
      `SELECT count(*) AS count, sum(length(type) + length(key) + length(jws) + 2) AS size FROM records WHERE content = ?`,
    );
    // GLOB is case-sensitive and host names hold no glob metacharacters (LDH only), so the pattern is literal.
    this.deleteSomeStmt = db.prepare(`DELETE FROM records WHERE content = ? AND (type, key) IN (SELECT type, key FROM records WHERE content = ? LIMIT ?)`);
    this.pageStmt = db.prepare<[string, string, string, number], StoredRecord>(
      `SELECT type, key, version, exp, jws FROM records WHERE content = ? AND (type, key) > (?, ?) ORDER BY type, key LIMIT ?`,
    );
    this.setLeafStmt = db.prepare(`UPDATE records SET leaf = ? WHERE content = ? AND type = 'op' AND key = ?`);
    this.leafStmt = db.prepare<[string, string], number | null>(`SELECT leaf FROM records WHERE content = ? AND type = 'op' AND key = ?`).pluck();
    this.newestLeafStmt = db
      .prepare<[string, string, string], number | null>(
        `SELECT leaf FROM records WHERE content = ? AND type = 'op' AND key > ? AND key < ? ORDER BY key DESC LIMIT 1`,
      )
      .pluck();
    this.keyPageStmt = db.prepare<[string, string, string, number], { key: string; jws: string }>(
      `SELECT key, jws FROM records WHERE content = ? AND type = ? AND key > ? ORDER BY key LIMIT ?`,
    );
    this.firstPageStmt = db.prepare<[string, string, number], { key: string; jws: string }>(
      `SELECT key, jws FROM records WHERE content = ? AND type = ? ORDER BY key LIMIT ?`,
    );
    this.setExpStmt = db.prepare(`UPDATE records SET exp = ? WHERE content = ? AND type = ? AND key = ?`);
    this.keysStmt = db.prepare<[string, string], string>(`SELECT key FROM records WHERE content = ? AND type = ?`).pluck();
    this.bulk = new BulkInsert(db, 'records (content, type, key, version, exp, jws, endpoint, leaf)', 8);
    this.retireStmt = db.prepare(`INSERT OR REPLACE INTO retired_content (content, retired_at) VALUES (?, ?)`);
    this.unretireStmt = db.prepare(`DELETE FROM retired_content WHERE content = ?`);
    // A copy being loaded is new: no upsert, so a repeated (type, key) in a transfer fails instead of replacing.
    this.loadOneStmt = db.prepare(`${ROLLBACK_ON_CONFLICT} records (content, type, key, version, exp, jws, endpoint, leaf) VALUES (?, ?, ?, 0, 0, ?, ?, ?)`);
    this.loadManyStmt = db.prepare(
      `${ROLLBACK_ON_CONFLICT} records (content, type, key, version, exp, jws, endpoint, leaf) VALUES ${Array.from({ length: LOAD_ROWS_PER_STATEMENT }, () => '(?, ?, ?, 0, 0, ?, ?, ?)').join(', ')}`,
    );
    // A copy's expiry column stays 0: an update leaves it (and so the expiry index) untouched.
    this.putLoadedStmt = db.prepare(
      `INSERT INTO records (content, type, key, version, exp, jws, endpoint, leaf) VALUES (?, ?, ?, ?, 0, ?, ?, ?)
       ON CONFLICT (content, type, key) DO UPDATE SET version = excluded.version, jws = excluded.jws, endpoint = excluded.endpoint, leaf = excluded.leaf`,
    );
    // Only live copies (a zone's current content), never a retired or half-loaded one. In index order
    // (content, key): no sort, so the cost is bounded by `limit` however many handles share the endpoint.
    this.byEndpointStmt = db.prepare<[string, number], { key: string; jws: string }>(
      `SELECT r.key, r.jws FROM records r INDEXED BY records_by_endpoint JOIN zones z ON z.content = r.content
       WHERE r.endpoint = ? AND r.type = 'handle' LIMIT ?`,
    );
    this.nextRetiredStmt = db.prepare<[], { content: string }>(`SELECT content FROM retired_content ORDER BY retired_at LIMIT 1`);
    this.isRetiredStmt = db.prepare<[string], number>(`SELECT 1 FROM retired_content WHERE content = ?`).pluck();
    this.underStmt = db.prepare<[string, string, string], { n: number }>(
      `SELECT count(*) AS n FROM records WHERE content = ? AND type = 'handle' AND (key GLOB '*@' || ? OR key GLOB '*.' || ?)`,
    );
  }

  /** Up to `limit` entries of a handle's history after entry `afterSeq`, oldest first. */
  history(content: string, handle: string, afterSeq: number, limit: number): NumberedEntry[] {
    return this.historyStmt
      .all(content, afterSeq === 0 ? `${handle}#` : historyKey(handle, afterSeq), `${handle}$`, limit)
      .map((r): NumberedEntry => [parseHistoryKey(r.key)!.seq, r.jws]);
  }

  /** The last `limit` entries of a handle's history, newest first. */
  latestHistory(content: string, handle: string, limit: number): NumberedEntry[] {
    return this.latestHistoryStmt.all(content, `${handle}#`, `${handle}$`, limit).map((r): NumberedEntry => [parseHistoryKey(r.key)!.seq, r.jws]);
  }

  /** How many entries a handle's history holds and their characters together (one scan of its range). */
  historySize(content: string, handle: string): { entries: number; chars: number } {
    const r = this.historySizeStmt.get(content, `${handle}#`, `${handle}$`)!;
    return { entries: r.entries, chars: r.chars ?? 0 };
  }

  /** The signed record of one record of `type` in a content, any one (the first by key), or undefined. */
  firstOfType(content: string, type: StoredType): string | undefined {
    return this.firstStmt.get(content, type);
  }

  /** One record, or undefined. */
  get(content: string, type: StoredType, key: string): StoredRecord | undefined {
    return this.getStmt.get(content, type, key);
  }

  /** Just the signed record (JWS) of one record, or undefined. */
  jws(content: string, type: StoredType, key: string): string | undefined {
    return this.jwsStmt[type].get(content, key);
  }

  /** Inserts or replaces a record (`leaf`: a history entry's leaf in the zone's log). */
  put(content: string, type: StoredType, key: string, version: number, exp: number, jws: string, leaf: number | null = null): void {
    this.putStmt.run(content, type, key, version, exp, jws, endpointOf(type, jws), leaf);
    if (type === 'op') this.histories.noteWritten(content, key);
  }

  /** Deletes a record; true if it existed. */
  delete(content: string, type: StoredType, key: string): boolean {
    return this.delStmt.run(content, type, key).changes > 0;
  }

  /** The denial gap whose start lies below `hash` (the one covering it, when the hash is not a handle's). */
  gapBelow(content: string, hash: string): StoredRecord | undefined {
    return this.gapStmt.get(content, hash);
  }

  /** Up to `limit` records whose signatures expire before `before` (seconds), soonest first. */
  expiringBefore(content: string, before: number, limit: number): StoredRecord[] {
    return this.dueStmt.all(content, before, limit);
  }

  /** The earliest signature expiry (seconds) among a content's records, null when it has none (a copy's are all 0). */
  earliestExp(content: string): number | null {
    return this.earliestStmt.get(content) ?? null;
  }

  /** Inserts many records under a content id (a transfer being loaded); call inside a transaction. */
  putMany(content: string, rows: readonly StoredRecord[]): void {
    for (const r of rows) this.put(content, r.type, r.key, r.version, r.exp, r.jws);
  }

  /** Inserts new records of one type, version and expiry (a bulk import); none may exist yet. Call inside a transaction. */
  insertNew(content: string, type: StoredType, version: number, exp: number, records: readonly { key: string; jws: string; leaf?: number | null }[]): void {
    this.bulk.run(records.map((r) => [content, type, r.key, version, exp, r.jws, endpointOf(type, r.jws), r.leaf ?? null]));
    if (type === 'op') for (const r of records) this.histories.noteWritten(content, r.key);
  }

  /**
   * Inserts records of a copy being loaded (version and expiry 0); call inside a transaction. Throws
   * (SQLITE_CONSTRAINT) when a (type, key) is already there, and the transaction is then rolled back.
   */
  insertLoaded(content: string, rows: readonly LoadedRecord[]): void {
    const n = rows.length;
    let i = 0;
    if (n >= LOAD_ROWS_PER_STATEMENT) {
      const params: (string | number | null)[] = new Array<string | number | null>(LOAD_ROWS_PER_STATEMENT * 6);
      for (; i + LOAD_ROWS_PER_STATEMENT <= n; i += LOAD_ROWS_PER_STATEMENT) {
        for (let j = 0; j < LOAD_ROWS_PER_STATEMENT; j++) {
          const r = rows[i + j]!;
          params[j * 6] = content;
          params[j * 6 + 1] = r.type;
          params[j * 6 + 2] = r.key;
          params[j * 6 + 3] = r.jws;
          params[j * 6 + 4] = endpointOf(r.type, r.jws);
          params[j * 6 + 5] = r.leaf ?? null;
          if (r.type === 'op') this.histories.noteWritten(content, r.key);
        }
        this.loadManyStmt.run(params);
      }
    }
    for (; i < n; i++) {
      const r = rows[i]!;
      this.loadOneStmt.run(content, r.type, r.key, r.jws, endpointOf(r.type, r.jws), r.leaf ?? null);
      if (r.type === 'op') this.histories.noteWritten(content, r.key);
    }
  }

  /** Inserts or replaces a record of a copy (expiry 0), as an incremental transfer does. */
  putLoaded(content: string, type: StoredType, key: string, version: number, jws: string, leaf: number | null = null): void {
    this.putLoadedStmt.run(content, type, key, version, jws, endpointOf(type, jws), leaf);
    if (type === 'op') this.histories.noteWritten(content, key);
  }

  /** Sets the log leaf of a history entry (the change that added it appended the leaf). */
  setLeaf(content: string, key: string, leaf: number): void {
    this.setLeafStmt.run(leaf, content, key);
  }

  /** The log leaf of a history entry; null when its zone has no log yet, undefined when there is no such entry. */
  leafOf(content: string, key: string): number | null | undefined {
    return this.leafStmt.get(content, key);
  }

  /** The log leaf of a handle's newest history entry; null when its zone has no log yet, undefined when it has no history. */
  newestLeaf(content: string, handle: string): number | null | undefined {
    return this.newestLeafStmt.get(content, `${handle}#`, `${handle}$`);
  }

  /** The next `limit` records of one type after `afterKey` (null: from the first), in key order: for walking them in bounded memory. */
  keyPage(content: string, type: StoredType, afterKey: string | null, limit: number): { key: string; jws: string }[] {
    return afterKey === null ? this.firstPageStmt.all(content, type, limit) : this.keyPageStmt.all(content, type, afterKey, limit);
  }

  /** Deletes up to `limit` records of a content id; returns how many went (retired copies are dropped in batches). */
  deleteSome(content: string, limit: number): number {
    const n = this.deleteSomeStmt.run(content, content, limit).changes;
    if (n < limit) this.histories.drop(content);
    return n;
  }

  /** Lists a content id for deletion (a replaced copy, or a transfer in progress that may be abandoned). */
  retire(content: string, at: number): void {
    this.retireStmt.run(content, at);
  }

  /** True while a content id waits for deletion. */
  isRetired(content: string): boolean {
    return this.isRetiredStmt.get(content) !== undefined;
  }

  /** Takes a content id off the deletion list (the transfer that was loading it succeeded). */
  unretire(content: string): void {
    this.unretireStmt.run(content);
  }

  /** A content id waiting for deletion, if any. */
  nextRetired(): string | undefined {
    return this.nextRetiredStmt.get()?.content;
  }

  /** The next `limit` records of a content id after (type, key), in key order: for walking a zone in bounded memory. */
  page(content: string, after: { type: string; key: string } | null, limit: number): StoredRecord[] {
    return this.pageStmt.all(content, after?.type ?? '', after?.key ?? '', limit);
  }

  /** Sets the signature-expiry column of one record. */
  setExp(content: string, type: StoredType, key: string, exp: number): void {
    this.setExpStmt.run(exp, content, type, key);
  }

  /** Every key of one type under a content id (bulk operations only: it is O(zone)). */
  keys(content: string, type: StoredType): string[] {
    return this.keysStmt.all(content, type);
  }

  /** How many handles of a zone have their host at or below `host` (a full scan: operator commands only). */
  countHandlesUnder(content: string, host: string): number {
    return this.underStmt.get(content, host, host)?.n ?? 0;
  }

  /**
   * How many records a content holds and their size: the sum of their digest elements' lengths
   * (docs/protocol.md §3.2 `count`, `size`). A full scan: a zone record that lacks them computes them once.
   */
  totals(content: string): { count: number; size: number } {
    const row = this.totalsStmt.get(content);
    return { count: row?.count ?? 0, size: row?.size ?? 0 };
  }

  /**
   * Up to `limit` handle records, of the zones held here, whose `endpoint` is exactly `endpoint` (the
   * endpoint index: WebFinger by actor URL).
   */
  handlesByEndpoint(endpoint: string, limit: number): { key: string; jws: string }[] {
    return this.byEndpointStmt.all(endpoint, limit);
  }

  /** How many records of a type a zone holds. */
  count(content: string, type: Exclude<StoredType, 'op'>): number {
    return this.countStmt.get(content, type) ?? 0;
  }
}

/** The value of the endpoint column: a handle record's endpoint, NULL for other records. */
function endpointOf(type: string, jws: string): string | null {
  return type === 'handle' ? handleEndpoint(jws) : null;
}
