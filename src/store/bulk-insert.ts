import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';

/**
 * How bulk loads insert: a broken constraint ends the transaction rather than the statement, so SQLite
 * needs no statement journal for a statement of many rows (BulkInsert says why that matters).
 */
export const ROLLBACK_ON_CONFLICT = 'INSERT OR ROLLBACK INTO';

/** Rows per multi-row statement; SQLite allows 32,766 parameters, and gains flatten out well before. */
const ROWS_PER_STATEMENT = 64;

/**
 * Inserts many rows with multi-row `INSERT … VALUES (…), (…), …` statements: for bulk loads, where the
 * per-statement cost of one row at a time (binding, stepping, resetting) is a good part of the work.
 *
 * The statements are `INSERT OR ROLLBACK`: a row that breaks a constraint rolls back the whole
 * transaction, which every bulk load abandons anyway. A plain INSERT of many rows inside a transaction
 * must be undone alone if it fails part-way, so SQLite copies every page it touches to a statement
 * journal first, a temporary file past 64 KiB: that was 9 GB of writes in a full transfer of a million
 * handles, more than the WAL and the database together. See `ROLLBACK_ON_CONFLICT`.
 */
export class BulkInsert {
  private readonly many: Statement<unknown[]>;
  private readonly one: Statement<unknown[]>;

  /** `target` is the table and its columns (`t (a, b)`), `columns` how many values a row has. */
  constructor(db: Db, target: string, columns: number) {
    const row = `(${Array(columns).fill('?').join(', ')})`;
    this.many = db.prepare(`${ROLLBACK_ON_CONFLICT} ${target} VALUES ${Array(ROWS_PER_STATEMENT).fill(row).join(', ')}`);
    this.one = db.prepare(`${ROLLBACK_ON_CONFLICT} ${target} VALUES ${row}`);
  }

  /** Inserts every row (each the column values, in order); call inside a transaction, which a constraint broken rolls back whole. */
  run(rows: readonly unknown[][]): void {
    let at = 0;
    for (; at + ROWS_PER_STATEMENT <= rows.length; at += ROWS_PER_STATEMENT) this.many.run(rows.slice(at, at + ROWS_PER_STATEMENT).flat());
    for (; at < rows.length; at++) this.one.run(rows[at]!);
  }
}
