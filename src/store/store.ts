import { IdnsError } from '../errors.js';
import { isStorageFull, openDatabase, openMemoryDatabase, type Db } from './database.js';
import { InviteStore } from './invites.js';
import { JournalStore } from './journal.js';
import { OperationStore } from './operations.js';
import { RecordStore } from './records.js';
import { ZoneStore } from './zones.js';

/** The server's storage: one SQLite database, one store per table family. */
export class Store {
  readonly zones: ZoneStore;
  readonly records: RecordStore;
  readonly journal: JournalStore;
  readonly operations: OperationStore;
  readonly invites: InviteStore;

  private readonly changedInTransaction = new Set<string>();
  private readonly changeListeners: ((zone: string) => void)[] = [];

  constructor(private readonly db: Db) {
    this.zones = new ZoneStore(db);
    this.records = new RecordStore(db);
    this.journal = new JournalStore(db);
    this.operations = new OperationStore(db);
    this.invites = new InviteStore(db);
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
   * Runs `fn` in one write transaction (BEGIN IMMEDIATE, so a concurrent writer waits instead of failing
   * half-way). It is durable when this returns (synchronous = FULL).
   */
  write<T>(fn: () => T): T {
    // A nested write is a savepoint inside the outer transaction; only the outermost one announces changes.
    if (this.db.inTransaction) return this.db.transaction(fn)();
    this.changedInTransaction.clear();
    try {
      const result = this.db.transaction(fn).immediate();
      // After the commit, never inside it: listeners (notify, caches) must only see durable changes.
      const changed = [...this.changedInTransaction];
      this.changedInTransaction.clear();
      for (const zone of changed) for (const listener of this.changeListeners) listener(zone);
      return result;
    } catch (err) {
      this.changedInTransaction.clear();
      if (isStorageFull(err)) throw new IdnsError('storage_full', 'the database is full; the change was not applied', { cause: err });
      throw err;
    } finally {
      // Rows cached before or during the transaction may be stale now, whether it committed or not.
      this.zones.invalidate();
    }
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

  /** Marks a zone as changed by the running transaction; listeners hear of it once it commits. */
  markChanged(zone: string): void {
    this.changedInTransaction.add(zone);
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
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  /** Closes the database. */
  close(): void {
    if (this.db.open) this.db.close();
  }
}
