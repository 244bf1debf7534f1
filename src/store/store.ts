import { IdnsError } from '../errors.js';
import { isStorageBusy, isStorageFull, openDatabase, openMemoryDatabase, type Db } from './database.js';
import { InviteStore } from './invites.js';
import { JournalStore } from './journal.js';
import { RecordStore, type HistoryListener } from './records.js';
import { ZoneStore } from './zones.js';
import { CompactHistories } from './compact-histories.js';
import { LogStore } from './log-nodes.js';
import { MapStore } from './map-nodes.js';
import { WitnessStore } from './witness.js';

/** Seconds a writer refused for a busy database is told to wait before trying again. */
const BUSY_RETRY_AFTER_SECONDS = 5;

/** The server's storage: one SQLite database, one store per table family. */
export class Store {
  readonly zones: ZoneStore;
  readonly records: RecordStore;
  readonly journal: JournalStore;
  readonly invites: InviteStore;
  readonly histories: CompactHistories;
  readonly logs: LogStore;
  readonly maps: MapStore;
  readonly witness: WitnessStore;

  private readonly changedInTransaction = new Set<string>();
  /** A read transaction opened by batchReads() is open. */
  private readBatch = false;
  /** Read batches opened so far (each one's number). */
  private readBatches = 0;
  private readonly endReadBatch = (): void => {
    if (!this.readBatch) return;
    this.readBatch = false;
    if (this.db.open && this.db.inTransaction) this.db.exec('COMMIT');
  };
  private readonly changeListeners: ((zone: string) => void)[] = [];
  /** The version and content id of each zone last announced to the listeners. */
  private readonly announced = new Map<string, string>();

  constructor(private readonly db: Db) {
    this.zones = new ZoneStore(db);
    // The compact histories read the records and hear of their writes: a late-bound listener joins them.
    const histories: HistoryListener = { noteWritten: (c, k) => this.histories.noteWritten(c, k), drop: (c) => this.histories.drop(c) };
    this.records = new RecordStore(db, histories);
    this.histories = new CompactHistories(db, this.records);
    this.journal = new JournalStore(db);
    this.invites = new InviteStore(db);
    this.logs = new LogStore(db);
    this.maps = new MapStore(db, this.records);
    this.witness = new WitnessStore(db);
    this.zones.onChangedElsewhere = (zones) => this.announce(zones);
  }

  /** Opens the database of a data directory. */
  static open(dataDir: string, maxBytes: number | null = null): Store {
    return new Store(openDatabase(dataDir, { maxBytes }));
  }

  /** An in-memory store for unit tests. */
  static memory(): Store {
    return new Store(openMemoryDatabase());
  }

  /**
   * Opens, unless a transaction is open, a read transaction shared by the reads of this turn of the event
   * loop; it ends at the next check phase (setImmediate), or at once when a write begins. Outside a
   * transaction each statement takes and drops SQLite's WAL read lock (three system calls), which is a
   * fifth of an authoritative lookup; under load one turn answers many queries. The reads see one
   * consistent snapshot, at most one turn old.
   */
  batchReads(): void {
    if (this.readBatch || this.db.inTransaction) return;
    this.db.exec('BEGIN');
    this.readBatch = true;
    this.readBatches++;
    setImmediate(this.endReadBatch);
  }

  /**
   * The read batch open now (a number of its own), or null outside one: what is read twice in one batch
   * reads the same (one snapshot), so a reader may keep it for the batch.
   */
  get openReadBatch(): number | null {
    return this.readBatch ? this.readBatches : null;
  }

  /**
   * Runs `fn` in one write transaction (BEGIN IMMEDIATE, so a concurrent writer waits instead of failing
   * half-way). It is durable when this returns (synchronous = FULL).
   */
  write<T>(fn: () => T): T {
    // A write never runs inside a read batch: it would become a savepoint, committed only with the batch.
    this.endReadBatch();
    // A nested write is a savepoint inside the outer transaction; only the outermost one announces changes.
    if (this.db.inTransaction) return this.db.transaction(fn)();
    this.changedInTransaction.clear();
    try {
      const result = this.db
        .transaction(() => {
          const result = fn();
          this.histories.settle();
          return result;
        })
        .immediate();
      this.announceChanges();
      return result;
    } catch (err) {
      throw this.failedWrite(err);
    } finally {
      // Rows cached before or during the transaction may be stale now, whether it committed or not.
      this.zones.invalidate();
    }
  }

  /**
   * Runs `fn` with a rollback journal instead of the WAL when this connection is the database's only
   * one (an offline bulk load), then returns to the WAL. Pages a transaction adds at the end of the file
   * need no journal in that mode, so a large load writes each page once, where the WAL writes it twice
   * (the log, then the checkpoint the commit runs). The commit is just as atomic and durable. With
   * another connection open (a running server), the WAL stays: `journal` says which was used.
   */
  async withRollbackJournal<T>(fn: () => Promise<T>): Promise<{ result: T; journal: 'rollback' | 'wal' }> {
    const switched = this.trySwitchToRollbackJournal();
    try {
      return { result: await fn(), journal: switched ? 'rollback' : 'wal' };
    } finally {
      // Alone on the file still, unless a server opened it meanwhile; then the server's own open (which
      // sets the WAL) waits for this, and a failure here leaves a valid database in rollback mode.
      if (switched) this.db.pragma('journal_mode = WAL');
    }
  }

  private trySwitchToRollbackJournal(): boolean {
    const timeout = this.db.pragma('busy_timeout', { simple: true }) as number;
    // Another connection makes the switch fail at once with SQLITE_BUSY: no point waiting for it.
    this.db.pragma('busy_timeout = 0');
    try {
      return this.db.pragma('journal_mode = DELETE', { simple: true }) === 'delete';
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_BUSY') return false;
      throw err;
    } finally {
      this.db.pragma(`busy_timeout = ${timeout}`);
    }
  }

  /**
   * Runs an asynchronous `fn` in one write transaction that stays open across its awaits (a bulk import
   * signs on worker threads while it stores), committed when `fn` resolves and rolled back when it
   * throws. The connection is shared: the caller must be the only user of this Store meanwhile (the CLI's
   * offline commands are), or other work would join the transaction.
   */
  async writeAcross<T>(fn: () => Promise<T>): Promise<T> {
    if (this.db.inTransaction) throw new Error('writeAcross cannot run inside another transaction');
    this.changedInTransaction.clear();
    try {
      this.db.exec('BEGIN IMMEDIATE');
      let result: T;
      try {
        result = await fn();
        this.histories.settle();
        this.db.exec('COMMIT');
      } catch (err) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
      this.announceChanges();
      return result;
    } catch (err) {
      throw this.failedWrite(err);
    } finally {
      this.zones.invalidate();
    }
  }

  /** After a commit, never inside it: listeners (notify, caches) must only see durable changes. */
  private announceChanges(): void {
    const changed = [...this.changedInTransaction];
    this.changedInTransaction.clear();
    this.announce(changed);
  }

  /** The error to throw for a write that did not commit. */
  private failedWrite(err: unknown): unknown {
    this.changedInTransaction.clear();
    this.histories.forget();
    if (isStorageFull(err)) return new IdnsError('storage_full', 'the database is full; the change was not applied', { cause: err });
    if (isStorageBusy(err)) {
      return new IdnsError('storage_busy', 'another writer (a bulk import?) holds the database; the change was not applied, try again shortly', {
        cause: err,
        details: { retryAfter: BUSY_RETRY_AFTER_SECONDS },
      });
    }
    return err;
  }

  /**
   * Lets SQLite keep up to `bytes` of pages in memory (default ~2 MB). Bulk writers raise it: a million
   * inserts at random places in the tables' B-trees otherwise re-read and re-write the same pages.
   */
  setCacheBytes(bytes: number): void {
    this.db.pragma(`cache_size = -${Math.max(1, Math.floor(bytes / 1024))}`);
  }

  /**
   * Like write, for rows that nothing reads until a later write() makes them live (a transfer being
   * loaded beside the current copy): the commit does not wait for the disk. That later write() syncs the
   * log, and with it these rows, before it returns; a crash before then can only lose rows not yet in use
   * (WAL keeps the file consistent at the last commit that reached the disk).
   */
  writeUnsynced<T>(fn: () => T): T {
    if (this.db.inTransaction) return this.write(fn);
    const level = this.db.pragma('synchronous', { simple: true }) as number;
    this.db.pragma('synchronous = NORMAL');
    try {
      return this.write(fn);
    } finally {
      this.db.pragma(`synchronous = ${level}`);
    }
  }

  /** Deletes up to `limit` rows of a content id no zone uses (its records, then its log and map); returns how many went. */
  deleteSomeContent(content: string, limit: number): number {
    let n = this.records.deleteSome(content, limit);
    if (n < limit) n += this.logs.deleteSome(content, limit - n);
    return n < limit ? n + this.maps.deleteSome(content, limit - n) : n;
  }

  /** Marks a zone as changed by the running transaction; listeners hear of it once it commits. */
  markChanged(zone: string): void {
    this.changedInTransaction.add(zone);
  }

  /**
   * Another connection of this process (the writer thread) committed changes to these zones: drops the
   * cached zone rows at once (rather than at the next data_version check) and tells the listeners.
   */
  changedElsewhere(zones: readonly string[]): void {
    this.zones.invalidate();
    this.announce(zones);
  }

  /**
   * Tells the listeners of each zone's new version, once per version: the writer thread's commits are
   * announced by changedElsewhere and noticed again through data_version, the CLI's only the second way.
   */
  private announce(zones: readonly string[]): void {
    const rows = this.zones.snapshot();
    for (const zone of new Set(zones)) {
      const row = rows.get(zone);
      // A copy replaced at the same serial (a forced full transfer) is a change too: its content id differs.
      const state = row === undefined ? undefined : `${row.version} ${row.content}`;
      if (state !== undefined && this.announced.get(zone) === state) continue;
      if (state !== undefined) this.announced.set(zone, state);
      else this.announced.delete(zone);
      for (const listener of this.changeListeners) listener(zone);
    }
  }

  /**
   * Notices commits of other processes (the CLI on a running server's data directory: a delegation, a key
   * rollover started) and tells the listeners, as for this process's own; called periodically. SQLite's
   * data_version says when another connection committed.
   */
  noticeChangesElsewhere(): void {
    this.zones.snapshot();
  }

  /** Calls `listener` with the zone name after every committed transaction that changed that zone. */
  onZoneChanged(listener: (zone: string) => void): void {
    this.changeListeners.push(listener);
  }

  /** Path of the database file, for a separate read-only connection (transfers read a snapshot). */
  get path(): string {
    return this.db.name;
  }

  /** Moves everything from the WAL into the database file (for copying the file, e.g. a cold backup). */
  checkpoint(): void {
    this.endReadBatch();
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  /** Closes the database. */
  close(): void {
    this.endReadBatch();
    if (this.db.open) this.db.close();
  }
}
