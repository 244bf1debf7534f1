import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';

/** Rows per multi-row statement; SQLite allows 32,766 parameters, and gains flatten out well before. */
const ROWS_PER_STATEMENT = 64;

/**
 * Inserts many rows with multi-row `INSERT … VALUES (…), (…), …` statements: for bulk loads, where the
 * per-statement cost of one row at a time (binding, stepping, resetting) is a good part of the work.
 */
export class BulkInsert {
  private readonly many: Statement<unknown[]>;
  private readonly one: Statement<unknown[]>;

  /** `head` is the statement up to VALUES (`INSERT INTO t (a, b)`), `columns` how many values a row has. */
  constructor(db: Db, head: string, columns: number, tail = '') {
    const row = `(${Array(columns).fill('?').join(', ')})`;
    this.many = db.prepare(`${head} VALUES ${Array(ROWS_PER_STATEMENT).fill(row).join(', ')} ${tail}`);
    this.one = db.prepare(`${head} VALUES ${row} ${tail}`);
  }

  /** Inserts every row (each the column values, in order); call inside a transaction. */
  run(rows: readonly unknown[][]): void {
    let at = 0;
    for (; at + ROWS_PER_STATEMENT <= rows.length; at += ROWS_PER_STATEMENT) this.many.run(rows.slice(at, at + ROWS_PER_STATEMENT).flat());
    for (; at < rows.length; at++) this.one.run(rows[at]!);
  }
}
