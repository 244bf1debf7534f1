import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';
import { BulkInsert } from './bulk-insert.js';
import type { MapNode, MapNodes } from '../transparency/zone-map.js';

/**
 * Nodes down to this depth are kept in memory (per content id, while its map's root is the one they were
 * read at): every proof and every change passes through them. A level of depth d takes 2^d places of 33
 * bytes once a node of it is read (a map of a million records: all 18 levels, some 17 MB); the 3 or 4
 * levels below are read from the table (in a read transaction, 2 to 4 µs a node; one statement with all
 * their paths in an IN list measured slower).
 */
const CACHED_DEPTH = 18;
/** Maps whose upper nodes are kept in memory at once; the one used least lately goes first. */
const MAX_CACHED_MAPS = 4;

/** What is known of a place: not read yet, empty, an interior node, a leaf (its key in `leafKeys`). */
const UNKNOWN = 0;
const EMPTY = 1;
const INTERIOR = 2;
const LEAF = 3;

/** A map's nodes kept in memory: valid for the root named when they were read, unless changed since. */
interface NodeCache {
  root: Buffer | null;
  /** Nodes were changed by a transaction that has not been seen to commit: the cache is not trusted. */
  dirty: boolean;
  /** Per depth, what each place holds (UNKNOWN … LEAF), and its hash (32 bytes a place); made when first used. */
  kinds: (Uint8Array | undefined)[];
  hashes: (Buffer | undefined)[];
  /** The keys of the leaves kept, by depth and place (depth · 2^32 + place). */
  leafKeys: Map<number, Buffer>;
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
  private readonly putStmt;
  private readonly deleteStmt;
  private readonly clearStmt;
  private readonly deleteSomeStmt;
  private readonly bulk;
  private readonly caches = new Map<string, NodeCache>();

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
    const get = (path: Buffer): MapNode | undefined => {
      const depth = depthOf(path);
      if (cache === null || depth > CACHED_DEPTH) return read(path);
      const place = placeOf(path, depth);
      const kind = kindsAt(cache, depth)[place]!;
      if (kind === UNKNOWN) {
        const node = read(path);
        keep(cache, depth, place, node);
        return node;
      }
      if (kind === EMPTY) return undefined;
      // A copy: the place may be written again while the caller holds the node.
      const hash = Buffer.from(hashesAt(cache, depth).subarray(place * 32, place * 32 + 32));
      return { hash, key: kind === LEAF ? cache.leafKeys.get(depth * 2 ** 32 + place)! : null };
    };
    return {
      get,
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
    this.caches.delete(content);
    if (cache === undefined || cache.dirty || cache.root === null || !cache.root.equals(at)) {
      cache = { root: at, dirty: false, kinds: [], hashes: [], leafKeys: new Map() };
    }
    // Last in the map's order: used most lately.
    this.caches.set(content, cache);
    if (this.caches.size > MAX_CACHED_MAPS) this.caches.delete(this.caches.keys().next().value as string);
    return cache;
  }

  private changed(content: string, path: Buffer, node: MapNode | undefined): void {
    const cache = this.caches.get(content);
    if (cache === undefined) return;
    cache.dirty = true;
    const depth = depthOf(path);
    if (depth <= CACHED_DEPTH) keep(cache, depth, placeOf(path, depth), node);
  }

  private forget(content: string): void {
    this.caches.delete(content);
  }
}

function depthOf(path: Buffer): number {
  return path.readUInt16BE(0);
}

/** A node's place among the 2^depth of its depth: its path's bits (depth at most CACHED_DEPTH). */
function placeOf(path: Buffer, depth: number): number {
  if (depth === 0) return 0;
  const bits = (((path[2] ?? 0) << 16) | ((path[3] ?? 0) << 8) | (path[4] ?? 0)) >>> 0;
  return bits >>> (24 - depth);
}

function kindsAt(cache: NodeCache, depth: number): Uint8Array {
  return (cache.kinds[depth] ??= new Uint8Array(2 ** depth));
}

function hashesAt(cache: NodeCache, depth: number): Buffer {
  return (cache.hashes[depth] ??= Buffer.alloc(2 ** depth * 32));
}

/** Records what a place holds (a node read or written; undefined: empty). */
function keep(cache: NodeCache, depth: number, place: number, node: MapNode | undefined): void {
  const id = depth * 2 ** 32 + place;
  if (node === undefined) {
    kindsAt(cache, depth)[place] = EMPTY;
    cache.leafKeys.delete(id);
    return;
  }
  node.hash.copy(hashesAt(cache, depth), place * 32);
  kindsAt(cache, depth)[place] = node.key === null ? INTERIOR : LEAF;
  if (node.key === null) cache.leafKeys.delete(id);
  else cache.leafKeys.set(id, Buffer.from(node.key));
}
