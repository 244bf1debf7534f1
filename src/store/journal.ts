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

/** The per-zone change journal that incremental transfers are served from. */
export class JournalStore {
  private readonly appendStmt;
  private readonly clearStmt;
  private readonly trimStmt;
  private readonly dropAfterStmt;
  private readonly boundsStmt;
  private readonly versionAtStmt;
  private readonly beforeStmt;
  private readonly handlesChangedStmt;

  constructor(db: Db) {
    this.appendStmt = db.prepare(`INSERT INTO journal (zone, version, idx, action, type, key, jws, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    this.clearStmt = db.prepare(`DELETE FROM journal WHERE zone = ?`);
    this.trimStmt = db.prepare(`DELETE FROM journal WHERE zone = ? AND version <= ?`);
    this.dropAfterStmt = db.prepare(`DELETE FROM journal WHERE zone = ? AND version > ?`);
    this.boundsStmt = db.prepare<[string], { entries: number; oldest: number | null }>(
      `SELECT count(*) AS entries, min(created_at) AS oldest FROM journal WHERE zone = ?`,
    );
    // The version below which dropping the oldest entries leaves at most `keep` entries.
    this.beforeStmt = db.prepare<[string, number], { version: number }>(`SELECT max(version) AS version FROM journal WHERE zone = ? AND created_at < ?`);
    this.handlesChangedStmt = db
      .prepare<[string, number, number], string>(`SELECT DISTINCT key FROM journal WHERE zone = ? AND version > ? AND version <= ? AND type = 'handle'`)
      .pluck();
    this.versionAtStmt = db.prepare<[string, number], { version: number }>(
      `SELECT version FROM journal WHERE zone = ? ORDER BY version DESC, idx DESC LIMIT 1 OFFSET ?`,
    );
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

  /** How many entries a zone's journal holds and the time of its oldest (ms). */
  bounds(zone: string): { entries: number; oldest: number | null } {
    return this.boundsStmt.get(zone) ?? { entries: 0, oldest: null };
  }

  /** The version of the entry `keep` places from the newest (the last version to drop to keep at most `keep`). */
  versionKeeping(zone: string, keep: number): number | undefined {
    return this.versionAtStmt.get(zone, keep)?.version;
  }

  /** The newest version with entries created before `time` (ms). */
  newestBefore(zone: string, time: number): number | undefined {
    return this.beforeStmt.get(zone, time)?.version;
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
