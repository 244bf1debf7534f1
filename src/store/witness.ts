import type { Db } from './database.js';
import type { ForkEvidence, WitnessedCheckpoint } from '../transparency/witness.js';
import type { PublicJwk } from '../records/keys.js';

/** A fork this witness met, with when (ms). */
export interface KeptFork extends ForkEvidence {
  at: number;
}

/** A zone this server witnesses without copying it: where its zone record is read, and what it last said. */
export interface FollowedZone {
  zone: string;
  servers: string[];
  keys: PublicJwk[];
  serial: number;
  /** The zone record's ttl, s: it is read again once that long has passed since `checkedAt`. */
  ttl: number;
  checkedAt: number;
}

/** This server's state as a witness (schema.sql `witnessed`, `witness_follows`, `witness_forks`). */
export class WitnessStore {
  private readonly heldStmt;
  private readonly setHeldStmt;
  private readonly forkedStmt;
  private readonly addForkStmt;
  private readonly forksStmt;
  private readonly followStmt;
  private readonly unfollowStmt;
  private readonly followedStmt;
  private readonly followsStmt;
  private readonly putKeyStmt;
  private readonly keyStmt;

  constructor(db: Db) {
    this.putKeyStmt = db.prepare(`INSERT OR REPLACE INTO witness_keys (name, public_key) VALUES (?, ?)`);
    this.keyStmt = db.prepare<[string], string>(`SELECT public_key FROM witness_keys WHERE name = ?`).pluck();
    type Row = { zone: string; servers: string; keys: string; serial: number; ttl: number; checkedAt: number };
    const cols = 'zone, servers, keys, serial, ttl, checked_at AS checkedAt';
    this.followStmt = db.prepare(`INSERT OR REPLACE INTO witness_follows (zone, servers, keys, serial, ttl, checked_at) VALUES (?, ?, ?, ?, ?, ?)`);
    this.unfollowStmt = db.prepare(`DELETE FROM witness_follows WHERE zone = ?`);
    this.followedStmt = db.prepare<[string], Row>(`SELECT ${cols} FROM witness_follows WHERE zone = ?`);
    this.followsStmt = db.prepare<[], Row>(`SELECT ${cols} FROM witness_follows ORDER BY zone`);
    this.heldStmt = db.prepare<[string], { origin: string; size: number; root: Buffer; note: string }>(
      `SELECT origin, size, root, note FROM witnessed WHERE origin = ?`,
    );
    this.setHeldStmt = db.prepare(`INSERT OR REPLACE INTO witnessed (origin, size, root, note) VALUES (?, ?, ?, ?)`);
    this.forkedStmt = db.prepare<[string], number>(`SELECT 1 FROM witness_forks WHERE origin = ? LIMIT 1`).pluck();
    this.addForkStmt = db.prepare(
      `INSERT INTO witness_forks (origin, held, offered, proof, why, at) SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM witness_forks WHERE origin = ?)`,
    );
    this.forksStmt = db.prepare<[], { origin: string; held: string; offered: string; proof: string; why: string; at: number }>(
      `SELECT origin, held, offered, proof, why, at FROM witness_forks ORDER BY at, rowid`,
    );
  }

  /** The latest checkpoint of a log this witness cosigned, if any. */
  held(origin: string): WitnessedCheckpoint | undefined {
    return this.heldStmt.get(origin);
  }

  /** Records the checkpoint just cosigned; call in the transaction that checked it. */
  setHeld(w: WitnessedCheckpoint): void {
    this.setHeldStmt.run(w.origin, w.size, w.root, w.note);
  }

  /** True once a fork of the log is kept: the witness cosigns nothing more of it. */
  forked(origin: string): boolean {
    return this.forkedStmt.get(origin) !== undefined;
  }

  /**
   * Keeps the evidence of a fork: the first met of each log, kept for good (the log is refused from then
   * on, so there is no second). Nothing is trimmed: the refusal rests on the evidence, and logs are only
   * those of zones this witness copies or follows, so the rows are bounded by what its operator chose
   * (two notes of at most 64 KiB each).
   */
  addFork(e: ForkEvidence, at: number): void {
    this.addForkStmt.run(e.origin, e.held, e.offered, JSON.stringify(e.proof), e.why, at, e.origin);
  }

  /** Starts (or updates) witnessing a zone not copied here. */
  follow(f: FollowedZone): void {
    this.followStmt.run(f.zone, JSON.stringify(f.servers), JSON.stringify(f.keys), f.serial, f.ttl, f.checkedAt);
  }

  /** Stops witnessing a zone not copied here; false when it was not followed. */
  unfollow(zone: string): boolean {
    return this.unfollowStmt.run(zone).changes > 0;
  }

  /** A zone followed here, if it is. */
  followed(zone: string): FollowedZone | undefined {
    const row = this.followedStmt.get(zone);
    return row === undefined ? undefined : followedOf(row);
  }

  /** Every zone followed here. */
  follows(): FollowedZone[] {
    return this.followsStmt.all().map(followedOf);
  }

  /** Keys recorded through this connection so far: what was read of them before is stale once it moves. */
  keysRecorded = 0;

  /** Records the key a witness cosigns under (checked against its name by the caller). */
  putKey(name: string, publicKey: PublicJwk): void {
    this.putKeyStmt.run(name, JSON.stringify(publicKey));
    this.keysRecorded += 1;
  }

  /** The key of a witness whose cosignatures are served here, by its name, if known. */
  keyOf(name: string): PublicJwk | undefined {
    const json = this.keyStmt.get(name);
    return json === undefined ? undefined : (JSON.parse(json) as PublicJwk);
  }

  /** Every fork kept, oldest first. */
  forks(): KeptFork[] {
    return this.forksStmt.all().map((f) => ({ ...f, proof: JSON.parse(f.proof) as string[] }));
  }
}

function followedOf(row: { zone: string; servers: string; keys: string; serial: number; ttl: number; checkedAt: number }): FollowedZone {
  return {
    zone: row.zone,
    servers: JSON.parse(row.servers) as string[],
    keys: JSON.parse(row.keys) as PublicJwk[],
    serial: row.serial,
    ttl: row.ttl,
    checkedAt: row.checkedAt,
  };
}
