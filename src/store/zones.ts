import type { Db } from './database.js';

export type ZoneRole = 'primary' | 'secondary';
export type RegistrationPolicy = 'open' | 'invite' | 'closed';

/** A row of the zones table. */
export interface ZoneRow {
  name: string;
  role: ZoneRole;
  version: number;
  policy: RegistrationPolicy;
  settings: string;
  salt: string;
  digestState: Buffer;
  record: string;
  recordExp: number;
  /** Id of the zone's rows in the records table (the zone name on a primary). */
  content: string;
  /** The journal holds every change after this version. */
  journalFloor: number;
  /** Secondary: last successful check against a primary, ms; null before the first. */
  refreshedAt: number | null;
  createdAt: number;
  /** The signed checkpoint of the zone's log at this version ('' before the zone has a log). */
  checkpoint: string;
}

/** The zones this server holds. */
export class ZoneStore {
  private readonly byName;
  private readonly all;
  private readonly insertStmt;
  private readonly updateStateStmt;
  private readonly updatePolicyStmt;
  private readonly checkpointStmt;
  private readonly versionOfStmt;
  private readonly updateSettingsStmt;
  private readonly replaceCopyStmt;
  private readonly refreshedStmt;
  private readonly promoteStmt;
  private readonly demoteStmt;
  private readonly deleteStmt;
  private readonly floorStmt;

  private cache: Map<string, ZoneRow> | null = null;
  private cacheGeneration = '';
  private localWrites = 0;
  private checkedAt = 0;
  private checkedWrites = -1;
  private readonly dataVersion;
  private readonly historyPendingStmt;
  private readonly isHistoryPendingStmt;
  private readonly clearHistoryPendingStmt;

  constructor(private readonly db: Db) {
    // data_version changes when another connection (the CLI) commits; our own commits bump localWrites.
    this.dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
    const cols = `name, role, version, policy, settings, salt, digest_state AS digestState, record, record_exp AS recordExp,
      content, journal_floor AS journalFloor, refreshed_at AS refreshedAt, created_at AS createdAt, checkpoint`;
    this.byName = db.prepare<[string], ZoneRow>(`SELECT ${cols} FROM zones WHERE name = ?`);
    this.all = db.prepare<[], ZoneRow>(`SELECT ${cols} FROM zones ORDER BY name`);
    this.insertStmt = db.prepare(
      `INSERT INTO zones (name, role, version, policy, settings, salt, digest_state, record, record_exp, content, journal_floor, refreshed_at, created_at)
       VALUES (@name, @role, @version, @policy, @settings, @salt, @digestState, @record, @recordExp, @content, @journalFloor, @refreshedAt, @createdAt)`,
    );
    this.updateStateStmt = db.prepare(`UPDATE zones SET version = ?, digest_state = ?, record = ?, record_exp = ? WHERE name = ?`);
    this.checkpointStmt = db.prepare(`UPDATE zones SET checkpoint = ? WHERE name = ?`);
    this.versionOfStmt = db.prepare<[string], number>(`SELECT version FROM zones WHERE name = ?`).pluck();
    this.updatePolicyStmt = db.prepare(`UPDATE zones SET policy = ? WHERE name = ?`);
    this.updateSettingsStmt = db.prepare(`UPDATE zones SET settings = ? WHERE name = ?`);
    this.replaceCopyStmt = db.prepare(
      `UPDATE zones SET version = @version, digest_state = @digestState, record = @record, record_exp = @recordExp, salt = @salt,
         content = @content, journal_floor = @journalFloor, refreshed_at = @refreshedAt, checkpoint = @checkpoint WHERE name = @name`,
    );
    this.refreshedStmt = db.prepare(`UPDATE zones SET refreshed_at = ? WHERE name = ?`);
    this.promoteStmt = db.prepare(`UPDATE zones SET role = 'primary', settings = ?, refreshed_at = NULL WHERE name = ?`);
    this.demoteStmt = db.prepare(`UPDATE zones SET role = 'secondary', settings = ?, policy = 'closed', refreshed_at = NULL WHERE name = ?`);
    // The journal and invites go with the zone (ON DELETE CASCADE); its content is retired by the caller.
    this.deleteStmt = db.prepare(`DELETE FROM zones WHERE name = ?`);
    this.floorStmt = db.prepare(`UPDATE zones SET journal_floor = max(journal_floor, ?) WHERE name = ?`);
    this.historyPendingStmt = db.prepare<[], string>(`SELECT name FROM zones WHERE history_pending != 0 ORDER BY name`).pluck();
    this.isHistoryPendingStmt = db.prepare<[string], number>(`SELECT history_pending FROM zones WHERE name = ?`).pluck();
    this.clearHistoryPendingStmt = db.prepare(`UPDATE zones SET history_pending = 0 WHERE name = ?`);
  }

  /** Zones with an upgrade of their content still to sign (history_pending, see historyUpgrade). */
  historyPending(): string[] {
    return this.historyPendingStmt.all();
  }

  /**
   * The upgrade a zone's content waits for: 0 none; 1 the history the upgrade to schema 3 moved into
   * its content is not in its digest yet (and then 2's work); 2 since schema 4, its handle records do not
   * name their `genesis` and `seq` yet.
   */
  historyUpgrade(name: string): 0 | 1 | 2 {
    return (this.isHistoryPendingStmt.get(name) ?? 0) as 0 | 1 | 2;
  }

  /** The zone's content is upgraded; the import lines of schema 3 (if any were left) are no longer needed. */
  clearHistoryPending(name: string): void {
    this.clearHistoryPendingStmt.run(name);
    if (this.hasMigratedImports()) {
      this.db.prepare(`DELETE FROM migrated_imports WHERE zone = ?`).run(name);
      if (this.db.prepare(`SELECT 1 FROM migrated_imports LIMIT 1`).get() === undefined) this.db.exec('DROP TABLE migrated_imports');
    }
  }

  /**
   * The import lines of a zone that the schema-3 migration kept for the zone key to sign as operator
   * entries (`line` is the canonical import line, `cid` the id it gave the handle). Prepared only when
   * asked: the table exists only between that migration and the upgrade of the last zone.
   */
  migratedImports(zone: string): { handle: string; seq: number; cid: string; line: string }[] {
    if (!this.hasMigratedImports()) return [];
    return this.db
      .prepare<[string], { handle: string; seq: number; cid: string; line: string }>(
        `SELECT handle, seq, cid, line FROM migrated_imports WHERE zone = ? ORDER BY handle`,
      )
      .all(zone);
  }

  private hasMigratedImports(): boolean {
    return this.db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrated_imports'`).get() !== undefined;
  }

  /** The zone row, or undefined when this server does not hold the zone. */
  get(name: string): ZoneRow | undefined {
    return this.byName.get(name);
  }

  /**
   * The zone row from a cache that is refreshed whenever the database changed, for the read path, which
   * looks up several candidate zones per query.
   */
  cached(name: string): ZoneRow | undefined {
    return this.snapshot().get(name);
  }

  /**
   * Every zone row by name, from the cache. Our own writes invalidate it at once; writes by another
   * process (the CLI) are noticed through SQLite's data_version, asked at most every 50 ms because the
   * read path calls this for every query.
   */
  snapshot(): ReadonlyMap<string, ZoneRow> {
    const now = Date.now();
    if (this.cache !== null && this.checkedWrites === this.localWrites && now - this.checkedAt < 50) return this.cache;
    this.checkedAt = now;
    this.checkedWrites = this.localWrites;
    const dataVersion = this.dataVersion.get() ?? 0;
    const generation = `${dataVersion}:${this.localWrites}`;
    if (this.cache === null || generation !== this.cacheGeneration) {
      const before = this.cache;
      this.cache = new Map(this.all.all().map((row) => [row.name, row]));
      this.cacheGeneration = generation;
      if (before !== null && dataVersion !== this.lastDataVersion) this.announceElsewhere(before, this.cache);
    }
    this.lastDataVersion = dataVersion;
    return this.cache;
  }

  /** Hears of zones another connection (the CLI, the writer thread) gave a new version, as snapshot() notices them. */
  onChangedElsewhere: ((zones: string[]) => void) | null = null;
  private lastDataVersion: number | null = null;

  private announceElsewhere(before: ReadonlyMap<string, ZoneRow>, after: ReadonlyMap<string, ZoneRow>): void {
    const changed = [...after.values()]
      .filter((row) => before.get(row.name)?.version !== row.version || before.get(row.name)?.content !== row.content)
      .map((row) => row.name);
    if (changed.length > 0) this.onChangedElsewhere?.(changed);
  }

  /** Marks the cache stale after a write on this connection. */
  invalidate(): void {
    this.localWrites += 1;
  }

  /** Every zone held here. */
  list(): ZoneRow[] {
    return this.all.all();
  }

  /** Adds a new zone. */
  insert(row: ZoneRow): void {
    this.insertStmt.run(row);
  }

  /** Stores a zone's new version, digest and signed zone record together. */
  updateState(name: string, version: number, digestState: Buffer, record: string, recordExp: number): void {
    this.updateStateStmt.run(version, digestState, record, recordExp, name);
  }

  /** A zone's version as stored now (read from the table, not the cached row). */
  versionOf(name: string): number | undefined {
    return this.versionOfStmt.get(name);
  }

  /** Stores the checkpoint of a zone's log at its current version (signed by its editor, or copied with a transfer). */
  setCheckpoint(name: string, checkpoint: string): void {
    this.checkpointStmt.run(checkpoint, name);
  }

  /** A secondary's new copy: everything the primary's zone record and the transfer define, at once. */
  replaceCopy(
    row: Pick<ZoneRow, 'name' | 'version' | 'digestState' | 'record' | 'recordExp' | 'salt' | 'content' | 'journalFloor' | 'refreshedAt' | 'checkpoint'>,
  ): void {
    this.replaceCopyStmt.run(row);
  }

  /** Records a secondary's successful check against its primary. */
  setRefreshed(name: string, at: number): void {
    this.refreshedStmt.run(at, name);
  }

  /** Turns a secondary into a primary with new settings. */
  promote(name: string, settings: string): void {
    this.promoteStmt.run(settings, name);
  }

  /** Turns a primary into a secondary with the given (secondary) settings: its copy stays until a transfer replaces it. */
  demote(name: string, settings: string): void {
    this.demoteStmt.run(settings, name);
  }

  /** Removes a zone, its journal and its invites. */
  delete(name: string): void {
    this.deleteStmt.run(name);
  }

  /** Records that the journal now starts after `version`. */
  setJournalFloor(name: string, version: number): void {
    this.floorStmt.run(version, name);
  }

  /** Changes a zone's registration policy. */
  setPolicy(name: string, policy: RegistrationPolicy): void {
    this.updatePolicyStmt.run(policy, name);
  }

  /** Replaces a zone's settings (JSON, validated by the caller). */
  setSettings(name: string, settings: string): void {
    this.updateSettingsStmt.run(settings, name);
  }
}
