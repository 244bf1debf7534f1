import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';
import { BulkInsert } from './bulk-insert.js';
import type { MapNode, MapNodes } from '../transparency/zone-map.js';

/**
 * The zones' maps (schema.sql `map_nodes`, docs/protocol.md §13.6): every node of each content id's map by
 * its path, a leaf with its key. Changed in place inside the write transaction that changes the records
 * (transparency/zone-map.ts ZoneMap), or replaced whole by a map built from the records.
 */
export class MapStore {
  private readonly getStmt: Statement<[string, Buffer], { hash: Buffer; leaf_key: Buffer | null }>;
  private readonly putStmt;
  private readonly deleteStmt;
  private readonly clearStmt;
  private readonly deleteSomeStmt;
  private readonly bulk;

  constructor(db: Db) {
    this.getStmt = db.prepare<[string, Buffer], { hash: Buffer; leaf_key: Buffer | null }>(
      'SELECT hash, leaf_key FROM map_nodes WHERE content = ? AND path = ?',
    );
    this.putStmt = db.prepare('INSERT OR REPLACE INTO map_nodes (content, path, hash, leaf_key) VALUES (?, ?, ?, ?)');
    this.deleteStmt = db.prepare('DELETE FROM map_nodes WHERE content = ? AND path = ?');
    this.clearStmt = db.prepare('DELETE FROM map_nodes WHERE content = ?');
    this.deleteSomeStmt = db.prepare('DELETE FROM map_nodes WHERE content = ? AND path IN (SELECT path FROM map_nodes WHERE content = ? LIMIT ?)');
    this.bulk = new BulkInsert(db, 'INSERT INTO map_nodes (content, path, hash, leaf_key)', 4);
  }

  /** The nodes of a content id's map (writes only inside a transaction). */
  nodes(content: string): MapNodes {
    return {
      get: (path) => {
        const row = this.getStmt.get(content, path);
        return row === undefined ? undefined : { hash: row.hash, key: row.leaf_key };
      },
      put: (path, node) => void this.putStmt.run(content, path, node.hash, node.key),
      delete: (path) => void this.deleteStmt.run(content, path),
    };
  }

  /**
   * Replaces a content id's map by the nodes `build` hands to its `keep` (a map built whole); returns what
   * `build` returns. Call inside a transaction.
   */
  replace<T>(content: string, build: (keep: (path: Buffer, node: MapNode) => void) => T): T {
    this.clearStmt.run(content);
    let rows: unknown[][] = [];
    const result = build((path, node) => {
      rows.push([content, path, node.hash, node.key]);
      if (rows.length === 4096) {
        this.bulk.run(rows);
        rows = [];
      }
    });
    this.bulk.run(rows);
    return result;
  }

  /** Deletes up to `limit` nodes of a content id; returns how many went (retired copies are dropped in batches). */
  deleteSome(content: string, limit: number): number {
    return this.deleteSomeStmt.run(content, content, limit).changes;
  }
}
