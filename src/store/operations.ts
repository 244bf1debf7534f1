import { BulkInsert } from './bulk-insert.js';
import type { Db } from './database.js';

/** An accepted change request of a handle. */
export interface OperationRow {
  cid: string;
  zone: string;
  handle: string;
  action: 'register' | 'update' | 'delete' | 'import';
  version: number;
  jws: string;
  receivedAt: number;
}

/** The signed history of every handle. */
export class OperationStore {
  private readonly insertStmt;
  private readonly existsStmt;
  private readonly historyStmt;
  private readonly bulk;

  constructor(db: Db) {
    this.insertStmt = db.prepare(
      `INSERT INTO operations (cid, zone, handle, action, version, jws, received_at) VALUES (@cid, @zone, @handle, @action, @version, @jws, @receivedAt)`,
    );
    this.bulk = new BulkInsert(db, 'INSERT INTO operations (cid, zone, handle, action, version, jws, received_at)', 7);
    this.existsStmt = db.prepare<[string], { one: number }>(`SELECT 1 AS one FROM operations WHERE cid = ?`);
    this.historyStmt = db.prepare<[string, number, number], OperationRow>(
      `SELECT cid, zone, handle, action, version, jws, received_at AS receivedAt FROM operations
       WHERE handle = ? AND version > ? ORDER BY version LIMIT ?`,
    );
  }

  /** Records an accepted request. */
  insert(row: OperationRow): void {
    this.insertStmt.run(row);
  }

  /** Records many accepted requests (a bulk import); call inside a transaction. */
  insertMany(rows: readonly OperationRow[]): void {
    this.bulk.run(rows.map((r) => [r.cid, r.zone, r.handle, r.action, r.version, r.jws, r.receivedAt]));
  }

  /** True when a request with this id was accepted before (a replay). */
  exists(cid: string): boolean {
    return this.existsStmt.get(cid) !== undefined;
  }

  /** A handle's requests after `afterVersion`, oldest first. */
  history(handle: string, afterVersion: number, limit: number): OperationRow[] {
    return this.historyStmt.all(handle, afterVersion, limit);
  }
}
