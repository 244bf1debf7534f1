import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';
import { BulkInsert } from './bulk-insert.js';
import type { MapNode, MapNodes } from '../transparency/zone-map.js';

/**
 * Nodes down to this depth are kept in memory (per content id, while its map's root is the one they were
 * read at): every proof and every change passes through them, and a map of a million records has about
 * 2^17 of them (some 15 MB); the 5 or so levels below are read from the table.
 */
const CACHED_DEPTH = 16;
/** Most nodes kept in memory, all maps together; past it a map's nodes are let go. */
const MAX_CACHED = 300_000;
/** Paths a batched read asks for at once: the nodes below CACHED_DEPTH on a key's path and their siblings. */
const BATCH = 48;

/** A map's nodes kept in memory: valid for the root named when they were read, unless changed since. */
interface NodeCache {
  root: Buffer | null;
  /** Nodes were changed by a transaction that has not been seen to commit: the cache is not trusted. */
  dirty: boolean;
  /** By path (latin1 of its bytes); null: known empty. */
  nodes: Map<string, MapNode | null>;
}

/**
 * The zones' maps (schema.sql `map_nodes`, docs/protocol.md §13.6): every node of each content id's map by
 * its path, a leaf with its key. Changed in place inside the write transaction that changes the records
 * (transparency/zone-map.ts ZoneMap), or replaced whole by a map built from the records. The upper levels
 * are kept in memory per content id and checked against the root a caller names (`at`) before use, so a
 * change made through another connection (the writer thread, the command line) is never read stale.
 */
export class MapStore {
  private readonly getStmt: Statement<[string, Buffer], { hash: Buffer; leaf_key: Buffer | null }>;
  private readonly manyStmt: Statement<unknown[], { path: Buffer; hash: Buffer; leaf_key: Buffer | null }>;
  private readonly putStmt;
  private readonly deleteStmt;
  private readonly clearStmt;
  private readonly deleteSomeStmt;
  private readonly bulk;
  private readonly caches = new Map<string, NodeCache>();
  private cached = 0;

  constructor(db: Db) {
    this.getStmt = db.prepare<[string, Buffer], { hash: Buffer; leaf_key: Buffer | null }>(
      'SELECT hash, leaf_key FROM map_nodes WHERE content = ? AND path = ?',
    );
    this.manyStmt = db.prepare<unknown[], { path: Buffer; hash: Buffer; leaf_key: Buffer | null }>(
      `SELECT path, hash, leaf_key FROM map_nodes WHERE content = ? AND path IN (${Array(BATCH).fill('?').join(', ')})`,
    );
    this.putStmt = db.prepare('INSERT OR REPLACE INTO map_nodes (content, path, hash, leaf_key) VALUES (?, ?, ?, ?)');
    this.deleteStmt = db.prepare('DELETE FROM map_nodes WHERE content = ? AND path = ?');
    this.clearStmt = db.prepare('DELETE FROM map_nodes WHERE content = ?');
    this.deleteSomeStmt = db.prepare('DELETE FROM map_nodes WHERE content = ? AND path IN (SELECT path FROM map_nodes WHERE content = ? LIMIT ?)');
    this.bulk = new BulkInsert(db, 'INSERT INTO map_nodes (content, path, hash, leaf_key)', 4);
  }

  /**
   * The nodes of a content id's map whose root is `at` (the root its checkpoint names; null when unknown:
   * nothing kept in memory is used). Writes only inside a transaction; after the transaction that changed
   * them commits, `committed` names the new root.
   */
  nodes(content: string, at: Buffer | null): MapNodes {
    const cache = this.cacheOf(content, at);
    const read = (path: Buffer): MapNode | undefined => {
      const row = this.getStmt.get(content, path);
      return row === undefined ? undefined : { hash: row.hash, key: row.leaf_key };
    };
    const keep = (id: string, node: MapNode | undefined): void => {
      if (cache === null || cache.nodes.has(id)) return;
      if (this.cached >= MAX_CACHED) this.forgetAll();
      cache.nodes.set(id, node ?? null);
      this.cached++;
    };
    const get = (path: Buffer): MapNode | undefined => {
      if (cache === null || depthOf(path) > CACHED_DEPTH) return read(path);
      const id = path.toString('latin1');
      const known = cache.nodes.get(id);
      if (known !== undefined) return known ?? undefined;
      const node = read(path);
      keep(id, node);
      return node;
    };
    return {
      get,
      getMany: (paths) => {
        // The shallow ones from memory (or read and kept), the rest in batches of one statement each.
        const out: (MapNode | undefined)[] = new Array(paths.length);
        const rest: number[] = [];
        paths.forEach((p, i) => {
          if (cache !== null && depthOf(p) <= CACHED_DEPTH) out[i] = get(p);
          else rest.push(i);
        });
        for (let from = 0; from < rest.length; from += BATCH) {
          const part = rest.slice(from, from + BATCH);
          const args: unknown[] = [content, ...part.map((i) => paths[i]!)];
          while (args.length < BATCH + 1) args.push(NO_PATH);
          const found = new Map<string, MapNode>();
          for (const row of this.manyStmt.iterate(...args)) found.set(row.path.toString('latin1'), { hash: row.hash, key: row.leaf_key });
          for (const i of part) out[i] = found.get(paths[i]!.toString('latin1'));
        }
        return out;
      },
      put: (path, node) => {
        this.putStmt.run(content, path, node.hash, node.key);
        this.changed(content, path, node);
      },
      delete: (path) => {
        this.deleteStmt.run(content, path);
        this.changed(content, path, undefined);
      },
    };
  }

  /** The transaction that changed a content id's map committed, leaving it with `root`: what is kept in memory is that map's. */
  committed(content: string, root: Buffer): void {
    const cache = this.caches.get(content);
    if (cache === undefined) return;
    cache.root = root;
    cache.dirty = false;
  }

  /**
   * Replaces a content id's map by the nodes `build` hands to its `keep` (a map built whole); returns what
   * `build` returns. Call inside a transaction.
   */
  replace<T>(content: string, build: (keep: (path: Buffer, node: MapNode) => void) => T): T {
    this.forget(content);
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
    this.forget(content);
    return this.deleteSomeStmt.run(content, content, limit).changes;
  }

  /** The nodes kept for a map whose root is `at`: those kept before when they are that map's, else none yet. */
  private cacheOf(content: string, at: Buffer | null): NodeCache | null {
    if (at === null) return null;
    let cache = this.caches.get(content);
    if (cache !== undefined && !cache.dirty && cache.root !== null && cache.root.equals(at)) return cache;
    this.forget(content);
    cache = { root: at, dirty: false, nodes: new Map() };
    this.caches.set(content, cache);
    return cache;
  }

  private changed(content: string, path: Buffer, node: MapNode | undefined): void {
    const cache = this.caches.get(content);
    if (cache === undefined) return;
    cache.dirty = true;
    if (depthOf(path) > CACHED_DEPTH) return;
    const id = path.toString('latin1');
    if (!cache.nodes.has(id)) this.cached++;
    cache.nodes.set(id, node ?? null);
  }

  private forget(content: string): void {
    const cache = this.caches.get(content);
    if (cache === undefined) return;
    this.cached -= cache.nodes.size;
    this.caches.delete(content);
  }

  private forgetAll(): void {
    this.caches.clear();
    this.cached = 0;
  }
}

/** A path no node has (a path is at least two bytes): fills a batched read's unused places. */
const NO_PATH = Buffer.alloc(0);

function depthOf(path: Buffer): number {
  return path.readUInt16BE(0);
}
