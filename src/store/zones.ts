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
  createdAt: number;
}

/** The zones this server holds. */
export class ZoneStore {
  private readonly byName;
  private readonly all;
  private readonly insertStmt;
  private readonly updateStateStmt;
  private readonly updatePolicyStmt;

  private cache: Map<string, ZoneRow> | null = null;
  private cacheGeneration = '';
  private localWrites = 0;
  private readonly dataVersion;

  constructor(db: Db) {
    // data_version changes when another connection (the CLI) commits; our own commits bump localWrites.
    this.dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
    const cols = `name, role, version, policy, settings, salt, digest_state AS digestState, record, record_exp AS recordExp, created_at AS createdAt`;
    this.byName = db.prepare<[string], ZoneRow>(`SELECT ${cols} FROM zones WHERE name = ?`);
    this.all = db.prepare<[], ZoneRow>(`SELECT ${cols} FROM zones ORDER BY name`);
    this.insertStmt = db.prepare(
      `INSERT INTO zones (name, role, version, policy, settings, salt, digest_state, record, record_exp, created_at)
       VALUES (@name, @role, @version, @policy, @settings, @salt, @digestState, @record, @recordExp, @createdAt)`,
    );
    this.updateStateStmt = db.prepare(
      `UPDATE zones SET version = ?, digest_state = ?, record = ?, record_exp = ? WHERE name = ?`,
    );
    this.updatePolicyStmt = db.prepare(`UPDATE zones SET policy = ? WHERE name = ?`);
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
    const generation = `${this.dataVersion.get()}:${this.localWrites}`;
    if (this.cache === null || generation !== this.cacheGeneration) {
      this.cache = new Map(this.all.all().map((row) => [row.name, row]));
      this.cacheGeneration = generation;
    }
    return this.cache.get(name);
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

  /** Changes a zone's registration policy. */
  setPolicy(name: string, policy: RegistrationPolicy): void {
    this.updatePolicyStmt.run(policy, name);
  }
}
