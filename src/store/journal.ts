import type { Db } from './database.js';
import type { StoredType } from './records.js';

/** One step of a version's change: a record put (with its new JWS) or deleted. */
export interface JournalEntry {
  version: number;
  idx: number;
  action: 'put' | 'del';
  type: StoredType;
  key: string;
  jws: string | null;
}

/** The per-zone change journal that incremental transfers are served from. */
export class JournalStore {
  private readonly appendStmt;

  constructor(db: Db) {
    this.appendStmt = db.prepare(
      `INSERT INTO journal (zone, version, idx, action, type, key, jws, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
  }

  /** Appends one entry; called inside the transaction that makes the change. */
  append(zone: string, entry: JournalEntry, createdAt: number): void {
    this.appendStmt.run(zone, entry.version, entry.idx, entry.action, entry.type, entry.key, entry.jws, createdAt);
  }
}
