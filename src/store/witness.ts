import type { Db } from './database.js';
import type { ForkEvidence, WitnessedCheckpoint } from '../transparency/witness.js';

/** Most forks kept as evidence; past it the oldest go (each is two notes of at most 64 KiB). */
export const MAX_KEPT_FORKS = 100;

/** A fork this witness met, with when (ms). */
export interface KeptFork extends ForkEvidence {
  at: number;
}

/** This server's state as a witness (schema.sql `witnessed`, `witness_forks`). */
export class WitnessStore {
  private readonly heldStmt;
  private readonly setHeldStmt;
  private readonly forkedStmt;
  private readonly addForkStmt;
  private readonly trimForksStmt;
  private readonly forksStmt;

  constructor(db: Db) {
    this.heldStmt = db.prepare<[string], { origin: string; size: number; root: Buffer; note: string }>(
      `SELECT origin, size, root, note FROM witnessed WHERE origin = ?`,
    );
    this.setHeldStmt = db.prepare(`INSERT OR REPLACE INTO witnessed (origin, size, root, note) VALUES (?, ?, ?, ?)`);
    this.forkedStmt = db.prepare<[string], number>(`SELECT 1 FROM witness_forks WHERE origin = ? LIMIT 1`).pluck();
    this.addForkStmt = db.prepare(`INSERT INTO witness_forks (origin, held, offered, proof, why, at) VALUES (?, ?, ?, ?, ?, ?)`);
    this.trimForksStmt = db.prepare(`DELETE FROM witness_forks WHERE rowid NOT IN (SELECT rowid FROM witness_forks ORDER BY at DESC, rowid DESC LIMIT ?)`);
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

  /** Keeps the evidence of a fork (at most MAX_KEPT_FORKS, the newest). */
  addFork(e: ForkEvidence, at: number): void {
    this.addForkStmt.run(e.origin, e.held, e.offered, JSON.stringify(e.proof), e.why, at);
    this.trimForksStmt.run(MAX_KEPT_FORKS);
  }

  /** Every fork kept, oldest first. */
  forks(): KeptFork[] {
    return this.forksStmt.all().map((f) => ({ ...f, proof: JSON.parse(f.proof) as string[] }));
  }
}
