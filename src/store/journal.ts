import type { Db } from './database.js';
import type { StoredType } from './records.js';

/** What the journal holds: changes of the zone's records, and each version's zone record (the last entry of a version that signed one). */
export type JournaledType = StoredType | 'zone';

/** One step of a version's change: a record put (with its new JWS) or deleted. */
export interface JournalEntry {
  version: number;
  idx: number;
  action: 'put' | 'del';
  type: JournaledType;
  key: string;
  jws: string | null;
}

/** An entry's place in a zone's journal (its key: version, then index), and when it was written (ms). */
export interface JournalPlace {
  version: number;
  idx: number;
  createdAt: number;
}

/** The per-zone change journal that incremental transfers are served from. */
export class JournalStore {
  private readonly appendStmt;
  private readonly clearStmt;
  private readonly trimStmt;
  private readonly dropAfterStmt;
  private readonly oldestStmt;
  private readonly placeStmt;
  private readonly countAfterStmt;
  private readonly placeAfterStmt;
  private readonly versionAtStmt;
  private readonly beforeStmt;
  private readonly handlesChangedStmt;

  constructor(db: Db) {
    this.appendStmt = db.prepare(`INSERT INTO journal (zone, version, idx, action, type, key, jws, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    this.clearStmt = db.prepare(`DELETE FROM journal WHERE zone = ?`);
    this.trimStmt = db.prepare(`DELETE FROM journal WHERE zone = ? AND version <= ?`);
    this.dropAfterStmt = db.prepare(`DELETE FROM journal WHERE zone = ? AND version > ?`);
    // Each reads along the primary key (zone, version, idx) from one end, as far as it is asked to go: a
    // count or an aggregate over a zone's whole journal reads every row (a million entries, about half a
    // second on the thread that also serves).
    const place = 'version, idx, created_at AS createdAt';
    this.oldestStmt = db.prepare<[string], JournalPlace>(`SELECT ${place} FROM journal WHERE zone = ? ORDER BY version, idx LIMIT 1`);
    this.placeStmt = db.prepare<[string, number, number], JournalPlace>(`SELECT ${place} FROM journal WHERE zone = ? AND version = ? AND idx = ?`);
    this.countAfterStmt = db
      .prepare<[string, number, number, number], number>(
        `SELECT count(*) FROM (SELECT 1 FROM journal WHERE zone = ? AND (version, idx) > (?, ?) ORDER BY version, idx LIMIT ?)`,
      )
      .pluck();
    this.placeAfterStmt = db.prepare<[string, number, number, number], JournalPlace>(
      `SELECT ${place} FROM journal WHERE zone = ? AND (version, idx) > (?, ?) ORDER BY version, idx LIMIT 1 OFFSET ?`,
    );
    this.versionAtStmt = db.prepare<[string, number], number>(`SELECT version FROM journal WHERE zone = ? ORDER BY version, idx LIMIT 1 OFFSET ?`).pluck();
    // Among the oldest `limit` entries: the newest version created before the time.
    this.beforeStmt = db
      .prepare<[string, number, number], number | null>(
        `SELECT max(version) FROM (SELECT version, created_at FROM journal WHERE zone = ? ORDER BY version, idx LIMIT ?) WHERE created_at < ?`,
      )
      .pluck();
    this.handlesChangedStmt = db
      .prepare<[string, number, number], string>(`SELECT DISTINCT key FROM journal WHERE zone = ? AND version > ? AND version <= ? AND type = 'handle'`)
      .pluck();
  }

  /** Deletes a zone's whole journal (a secondary that took a full transfer starts a new one). */
  clear(zone: string): void {
    this.clearStmt.run(zone);
  }

  /** Deletes the entries of versions up to and including `version`. */
  trimThrough(zone: string, version: number): number {
    return this.trimStmt.run(zone, version).changes;
  }

  /**
   * Deletes the entries of versions after `version`. A zone's journal never legitimately reaches past the
   * zone's own version; entries there (left by an older idns that journaled unverified serials) would
   * collide with the next genuine change of that version, so a secondary drops them before it appends.
   */
  dropAfter(zone: string, version: number): number {
    return this.dropAfterStmt.run(zone, version).changes;
  }

  /** The oldest entry of a zone's journal (the first by version and index), or undefined when it is empty. */
  oldest(zone: string): JournalPlace | undefined {
    return this.oldestStmt.get(zone);
  }

  /** The entry at a place, or undefined when the journal holds none there. */
  at(zone: string, version: number, idx: number): JournalPlace | undefined {
    return this.placeStmt.get(zone, version, idx);
  }

  /**
   * Counts up to `limit` entries after `after` (from the oldest: null), in key order: how many, and the
   * place of the last one counted (`after` when there are none). Reads only those entries.
   */
  countAfter(zone: string, after: JournalPlace | null, limit: number): { entries: number; last: JournalPlace | null } {
    // Versions and indexes start at 0: (−1, −1) is before every entry.
    const [version, idx] = after === null ? [-1, -1] : [after.version, after.idx];
    const entries = this.countAfterStmt.get(zone, version, idx, limit) ?? 0;
    return { entries, last: entries === 0 ? after : (this.placeAfterStmt.get(zone, version, idx, entries - 1) ?? null) };
  }

  /** The version of the entry `offset` places from the oldest (0: the oldest's), or undefined past the newest. */
  versionAt(zone: string, offset: number): number | undefined {
    return this.versionAtStmt.get(zone, offset);
  }

  /** The newest version created before `time` (ms) among the oldest `limit` entries. */
  newestBefore(zone: string, time: number, limit: number): number | undefined {
    return this.beforeStmt.get(zone, limit, time) ?? undefined;
  }

  /** The handles put or deleted by the versions after `after` up to `through`. */
  handlesChanged(zone: string, after: number, through: number): string[] {
    return this.handlesChangedStmt.all(zone, after, through);
  }

  /** Appends one entry; called inside the transaction that makes the change. */
  append(zone: string, entry: JournalEntry, createdAt: number): void {
    this.appendStmt.run(zone, entry.version, entry.idx, entry.action, entry.type, entry.key, entry.jws, createdAt);
  }
}
