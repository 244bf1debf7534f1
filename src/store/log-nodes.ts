import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';
import { BulkInsert } from './bulk-insert.js';
import { nodeHash, type SubtreeHashes } from '../transparency/merkle.js';

/**
 * Levels kept: every KEPT_EVERY-th (0, 4, 8, …). A subtree of a level in between is recomputed from at
 * most 2^(KEPT_EVERY − 1) = 8 kept nodes below it, which one range read returns; keeping every level
 * would take about 2 n rows for n leaves instead of about 1.07 n.
 */
const KEPT_EVERY = 4;

/** Most subtree hashes remembered (about 15 MB): every node of level 4 and above of a tree of about 1,000,000 leaves. */
const MEMO_NODES = 131_072;

/** A subtree hash computed by the tree: its height, its index at that height, and the hash. */
export interface LogNode {
  level: number;
  index: number;
  hash: Buffer;
}

/**
 * The zones' logs (schema.sql `log_nodes`): the complete subtrees of each content id's Merkle tree, of the
 * kept levels, from which every root and proof of the tree at any past size is computed.
 */
export class LogStore {
  private readonly getStmt: Statement<[string, number, number], Buffer>;
  private readonly rangeStmt: Statement<[string, number, number, number], Buffer>;
  private readonly insertStmt;
  private readonly bulk;
  private readonly deleteSomeStmt;
  /** Complete subtrees of the kept levels and above already read for proofs, by content, tree name, level and index. */
  private readonly memo = new Map<string, Buffer>();

  constructor(db: Db) {
    this.getStmt = db.prepare<[string, number, number], Buffer>(`SELECT hash FROM log_nodes WHERE content = ? AND level = ? AND idx = ?`).pluck();
    this.rangeStmt = db
      .prepare<[string, number, number, number], Buffer>(`SELECT hash FROM log_nodes WHERE content = ? AND level = ? AND idx >= ? AND idx < ? ORDER BY idx`)
      .pluck();
    this.insertStmt = db.prepare(`INSERT INTO log_nodes (content, level, idx, hash) VALUES (?, ?, ?, ?)`);
    this.bulk = new BulkInsert(db, 'log_nodes (content, level, idx, hash)', 4);
    this.deleteSomeStmt = db.prepare(
      `DELETE FROM log_nodes WHERE content = ? AND (level, idx) IN (SELECT level, idx FROM log_nodes WHERE content = ? LIMIT ?)`,
    );
  }

  /** Stores the nodes of the kept levels among `nodes` (what MerkleFrontier.append completes); call inside a transaction. */
  keep(content: string, nodes: readonly LogNode[]): void {
    for (const n of nodes) if (n.level % KEPT_EVERY === 0) this.insertStmt.run(content, n.level, n.index, n.hash);
  }

  /** Like keep, for many nodes at once (a log loaded from a transfer). */
  keepMany(content: string, nodes: readonly LogNode[]): void {
    const rows: unknown[][] = [];
    for (const n of nodes) if (n.level % KEPT_EVERY === 0) rows.push([content, n.level, n.index, n.hash]);
    this.bulk.run(rows);
  }

  /**
   * The content's complete subtrees, for merkle.ts (roots, proofs, the frontier): a kept level is one
   * read, a level in between one range read of the kept level below. Throws for a subtree not stored:
   * the caller asked about leaves the log does not hold yet.
   */
  subtrees(content: string, remember: string | null = null): SubtreeHashes {
    return (level, index) => {
      // A complete subtree never changes while its tree lives: with `remember` (a name of this tree that
      // no later tree under the same content id shares, such as the zone's creation time), those of the
      // kept levels and above are remembered for the proofs that ask for the same upper nodes again and
      // again, up to MEMO_NODES, then the memory starts afresh.
      const memoKey = remember !== null && level >= KEPT_EVERY ? `${content}\n${remember}\n${level}\n${index}` : null;
      const known = memoKey === null ? undefined : this.memo.get(memoKey);
      if (known !== undefined) return known;
      const hash = this.read(content, level, index);
      if (memoKey !== null) {
        if (this.memo.size >= MEMO_NODES) this.memo.clear();
        this.memo.set(memoKey, hash);
      }
      return hash;
    };
  }

  /** A complete subtree's hash from the table: a kept level's row, or the kept level below's rows hashed up. */
  private read(content: string, level: number, index: number): Buffer {
    const below = level - (level % KEPT_EVERY);
    if (below === level) {
      const hash = this.getStmt.get(content, level, index);
      if (hash === undefined) throw new Error(`log ${content}: no subtree at level ${level}, index ${index}`);
      return hash;
    }
    const width = 2 ** (level - below);
    let row = this.rangeStmt.all(content, below, index * width, (index + 1) * width);
    if (row.length !== width) throw new Error(`log ${content}: subtree at level ${level}, index ${index} is incomplete`);
    while (row.length > 1) {
      const up: Buffer[] = [];
      for (let i = 0; i < row.length; i += 2) up.push(nodeHash(row[i]!, row[i + 1]!));
      row = up;
    }
    return row[0]!;
  }

  /** The leaf hashes from `start` (inclusive) to `end` (exclusive), in order, read lazily. */
  *leaves(content: string, start: number, end: number): Generator<Buffer> {
    yield* this.rangeStmt.iterate(content, 0, start, end);
  }

  /** Deletes up to `limit` nodes of a content id; returns how many went (retired copies are dropped in batches). */
  deleteSome(content: string, limit: number): number {
    return this.deleteSomeStmt.run(content, content, limit).changes;
  }
}
