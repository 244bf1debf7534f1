import type { Db } from './database.js';

/** Single-use invite codes, stored as hashes. */
export class InviteStore {
  private readonly insertStmt;
  private readonly consumeStmt;

  constructor(db: Db) {
    this.insertStmt = db.prepare(`INSERT INTO invites (code_hash, zone, created_at, expires_at) VALUES (?, ?, ?, ?)`);
    // One statement both checks and spends the code, so two concurrent uses cannot both succeed.
    this.consumeStmt = db.prepare(
      `UPDATE invites SET used_at = ?, used_by = ? WHERE code_hash = ? AND zone = ? AND used_at IS NULL AND (expires_at IS NULL OR expires_at > ?)`,
    );
  }

  /** Stores a new code's hash. */
  insert(codeHash: string, zone: string, createdAt: number, expiresAt: number | null): void {
    this.insertStmt.run(codeHash, zone, createdAt, expiresAt);
  }

  /** Spends a code; false when it is unknown, used, expired or for another zone. */
  consume(codeHash: string, zone: string, usedBy: string, now: number): boolean {
    return this.consumeStmt.run(now, usedBy, codeHash, zone, now).changes === 1;
  }
}
