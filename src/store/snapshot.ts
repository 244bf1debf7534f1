import Database from 'better-sqlite3';
import type { JournalEntry } from './journal.js';
import { COUNT_BY_TYPE_SQL, type StoredRecord } from './records.js';
import type { ZoneRow } from './zones.js';
import type { NumberedEntry } from '../records/history-chain.js';
import type { StoredEvidence } from '../records/history-evidence.js';

/**
 * A read-only connection holding one snapshot of the database (WAL keeps it stable while writers go on),
 * for producing a transfer: the stream is consistent at one serial however long the client takes to
 * read it, and the server's own connection stays free for other requests meanwhile.
 */
export class SnapshotReader {
  private readonly db: Database.Database;
  private open = true;
  private keptStmt: Database.Statement<[string, string], StoredEvidence> | undefined;

  constructor(path: string) {
    this.db = new Database(path, { readonly: true, fileMustExist: true });
    this.db.pragma('busy_timeout = 5000');
    this.db.exec('BEGIN');
  }

  /** The zone row as of the snapshot. */
  zone(name: string): ZoneRow | undefined {
    return this.db
      .prepare<[string], ZoneRow>(
        `SELECT name, role, version, policy, settings, salt, digest_state AS digestState, record, record_exp AS recordExp,
           content, journal_floor AS journalFloor, refreshed_at AS refreshedAt, created_at AS createdAt, checkpoint FROM zones WHERE name = ?`,
      )
      .get(name);
  }

  /** Every record of a content id, in key order, read lazily (bounded memory). */
  *records(content: string): Generator<StoredRecord> {
    yield* this.db.prepare<[string], StoredRecord>(`SELECT type, key, version, exp, jws FROM records WHERE content = ? ORDER BY type, key`).iterate(content);
  }

  /**
   * Every record of a content id as its compact transfer line, `type TAB key TAB jws LF` (docs/protocol.md
   * §11.1), in key order, read lazily. SQLite joins the fields: one string per record instead of three.
   */
  *compactLines(content: string): Generator<string> {
    yield* this.db
      .prepare<[string], string>(`SELECT type || char(9) || key || char(9) || jws || char(10) FROM records WHERE content = ? ORDER BY type, key`)
      .pluck()
      .iterate(content);
  }

  /** How many handles a content id holds. */
  handleCount(content: string): number {
    return this.db.prepare<[string, string], number>(COUNT_BY_TYPE_SQL).pluck().get(content, 'handle') ?? 0;
  }

  /**
   * Every handle of a content id with its signed record and the last `tailLength` entries of its history
   * (oldest first), in key order, read lazily: a page of handles at a time, then one scan of the history
   * rows between its first and last handle (a handle's entries, `handle#seq`, sort right after it).
   */
  *handlesWithHistory(
    content: string,
    tailLength: number,
    pageSize = 1000,
  ): Generator<{ key: string; jws: string; history: NumberedEntry[]; leaf: number | null }> {
    const page = this.db.prepare<[string, string, number], { key: string; jws: string }>(
      `SELECT key, jws FROM records WHERE content = ? AND type = 'handle' AND key > ? ORDER BY key LIMIT ?`,
    );
    const entries = this.db.prepare<[string, string, string], { key: string; jws: string; leaf: number | null }>(
      `SELECT key, jws, leaf FROM records WHERE content = ? AND type = 'op' AND key > ? AND key < ? ORDER BY key`,
    );
    for (let after = ''; ;) {
      const handles = page.all(content, after, pageSize);
      if (handles.length === 0) return;
      const tails = new Map<string, NumberedEntry[]>(handles.map((h) => [h.key, []]));
      // The leaf of each handle's newest entry (the last its evidence holds).
      const leaves = new Map<string, number | null>();
      for (const row of entries.iterate(content, `${handles[0]!.key}#`, `${handles.at(-1)!.key}$`)) {
        const cut = row.key.lastIndexOf('#');
        const tail = tails.get(row.key.slice(0, cut));
        if (tail === undefined) continue; // a deleted handle's history
        tail.push([Number(row.key.slice(cut + 1)), row.jws]);
        leaves.set(row.key.slice(0, cut), row.leaf);
        if (tail.length > tailLength) tail.shift();
      }
      for (const h of handles) yield { key: h.key, jws: h.jws, history: tails.get(h.key)!, leaf: leaves.get(h.key) ?? null };
      after = handles.at(-1)!.key;
    }
  }

  /** The evidence kept with a long history (compact-histories.ts), if the handle's history is one. */
  keptEvidence(content: string, handle: string): StoredEvidence | undefined {
    this.keptStmt ??= this.db.prepare<[string, string], StoredEvidence>('SELECT last, evidence FROM compact_histories WHERE content = ? AND handle = ?');
    return this.keptStmt.get(content, handle);
  }

  /** The journal entries of a zone after `afterVersion`, in order, read lazily. */
  *journal(zone: string, afterVersion: number): Generator<JournalEntry> {
    yield* this.db
      .prepare<[string, number], JournalEntry>(`SELECT version, idx, action, type, key, jws FROM journal WHERE zone = ? AND version > ? ORDER BY version, idx`)
      .iterate(zone, afterVersion);
  }

  /** The leaf hashes of a content's log from `start` up to `end` (exclusive), in order, read lazily. */
  *logLeaves(content: string, start: number, end: number): Generator<Buffer> {
    yield* this.db
      .prepare<[string, number, number], Buffer>(`SELECT hash FROM log_nodes WHERE content = ? AND level = 0 AND idx >= ? AND idx < ? ORDER BY idx`)
      .pluck()
      .iterate(content, start, end);
  }

  /** The log leaf of each history entry of a content, in the entries' key order (the order a full transfer sends them in), read lazily. */
  *entryLeaves(content: string): Generator<number | null> {
    yield* this.db.prepare<[string], number | null>(`SELECT leaf FROM records WHERE content = ? AND type = 'op' ORDER BY key`).pluck().iterate(content);
  }

  /** Ends the snapshot and closes the connection (idempotent). */
  close(): void {
    if (!this.open) return;
    this.open = false;
    if (this.db.inTransaction) this.db.exec('COMMIT');
    this.db.close();
  }
}
