import type { Db } from './database.js';

export type StoredType = 'handle' | 'delegation' | 'denial';

/** A stored record of a zone's content. */
export interface StoredRecord {
  type: StoredType;
  key: string;
  version: number;
  exp: number;
  jws: string;
}

/** The signed records of every zone, keyed by (zone, type, key). */
export class RecordStore {
  private readonly getStmt;
  private readonly putStmt;
  private readonly delStmt;
  private readonly gapStmt;
  private readonly dueStmt;
  private readonly countStmt;
  private readonly underStmt;

  constructor(db: Db) {
    this.getStmt = db.prepare<[string, string, string], StoredRecord>(
      `SELECT type, key, version, exp, jws FROM records WHERE zone = ? AND type = ? AND key = ?`,
    );
    this.putStmt = db.prepare(
      `INSERT INTO records (zone, type, key, version, exp, jws) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (zone, type, key) DO UPDATE SET version = excluded.version, exp = excluded.exp, jws = excluded.jws`,
    );
    this.delStmt = db.prepare(`DELETE FROM records WHERE zone = ? AND type = ? AND key = ?`);
    // The gap that starts at the greatest key below the hash: the gaps tile the hash space.
    this.gapStmt = db.prepare<[string, string], StoredRecord>(
      `SELECT type, key, version, exp, jws FROM records WHERE zone = ? AND type = 'denial' AND key < ? ORDER BY key DESC LIMIT 1`,
    );
    this.dueStmt = db.prepare<[string, number, number], StoredRecord>(
      `SELECT type, key, version, exp, jws FROM records WHERE zone = ? AND exp < ? ORDER BY exp LIMIT ?`,
    );
    this.countStmt = db.prepare<[string, string], { n: number }>(`SELECT count(*) AS n FROM records WHERE zone = ? AND type = ?`);
    // GLOB is case-sensitive and host names hold no glob metacharacters (LDH only), so the pattern is literal.
    this.underStmt = db.prepare<[string, string, string], { n: number }>(
      `SELECT count(*) AS n FROM records WHERE zone = ? AND type = 'handle' AND (key GLOB '*@' || ? OR key GLOB '*.' || ?)`,
    );
  }

  /** One record, or undefined. */
  get(zone: string, type: StoredType, key: string): StoredRecord | undefined {
    return this.getStmt.get(zone, type, key);
  }

  /** Inserts or replaces a record. */
  put(zone: string, type: StoredType, key: string, version: number, exp: number, jws: string): void {
    this.putStmt.run(zone, type, key, version, exp, jws);
  }

  /** Deletes a record; true if it existed. */
  delete(zone: string, type: StoredType, key: string): boolean {
    return this.delStmt.run(zone, type, key).changes > 0;
  }

  /** The denial gap whose start lies below `hash` (the one covering it, when the hash is not a handle's). */
  gapBelow(zone: string, hash: string): StoredRecord | undefined {
    return this.gapStmt.get(zone, hash);
  }

  /** Up to `limit` records whose signatures expire before `before` (seconds), soonest first. */
  expiringBefore(zone: string, before: number, limit: number): StoredRecord[] {
    return this.dueStmt.all(zone, before, limit);
  }

  /** How many handles of a zone have their host at or below `host` (a full scan: operator commands only). */
  countHandlesUnder(zone: string, host: string): number {
    return this.underStmt.get(zone, host, host)?.n ?? 0;
  }

  /** How many records of a type a zone holds. */
  count(zone: string, type: StoredType): number {
    return this.countStmt.get(zone, type)?.n ?? 0;
  }
}
