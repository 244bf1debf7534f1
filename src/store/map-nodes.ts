import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';
import { BulkInsert } from './bulk-insert.js';
import { EMPTY_MAP, keyBit, mapPath, mapRootFrom, siblingPath, type MapNode, type MapNodes } from '../transparency/zone-map.js';

/**
 * Nodes down to this depth are kept in memory (per content id, while its map's root is the one they were
 * read at): every proof and every change passes through them. A level of depth d takes 2^d places of 33
 * bytes once a node of it is read (a map of a million records: all 18 levels, some 17 MB); the 3 or 4
 * levels below are read from the table (in a read transaction, 2 to 4 µs a node; one statement with all
 * their paths in an IN list measured slower).
 */
const CACHED_DEPTH = 18;
/** The first path below CACHED_DEPTH: every path of the levels kept sorts before it (two bytes of depth first). */
const UPPER_END = Buffer.from([0, CACHED_DEPTH + 1]);
/** Maps whose upper nodes are kept in memory at once; the one used least lately goes first. */
const MAX_CACHED_MAPS = 4;

/** The nodes kept for proofs: as NodeCache, and per place the generation (one per root) it was read or checked under. */
interface ReaderCache extends NodeCache {
  gens: (Uint32Array | undefined)[];
  generation: number;
}

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
  private readonly upperStmt: Statement<[string, Buffer], { path: Buffer; hash: Buffer; leaf_key: Buffer | null }>;
  private readonly caches = new Map<string, NodeCache>();
  /** The nodes kept for proofs (proof()), which outlive a change of the map (checked when used). */
  private readonly readers = new Map<string, ReaderCache>();

  constructor(db: Db) {
    this.getStmt = db.prepare<[string, Buffer], { hash: Buffer; leaf_key: Buffer | null }>(
      'SELECT hash, leaf_key FROM map_nodes WHERE content = ? AND path = ?',
    );
    this.putStmt = db.prepare('INSERT OR REPLACE INTO map_nodes (content, path, hash, leaf_key) VALUES (?, ?, ?, ?)');
    this.deleteStmt = db.prepare('DELETE FROM map_nodes WHERE content = ? AND path = ?');
    this.clearStmt = db.prepare('DELETE FROM map_nodes WHERE content = ?');
    this.deleteSomeStmt = db.prepare('DELETE FROM map_nodes WHERE content = ? AND path IN (SELECT path FROM map_nodes WHERE content = ? LIMIT ?)');
    this.bulk = new BulkInsert(db, 'INSERT INTO map_nodes (content, path, hash, leaf_key)', 4);
    this.upperStmt = db.prepare<[string, Buffer], { path: Buffer; hash: Buffer; leaf_key: Buffer | null }>(
      'SELECT path, hash, leaf_key FROM map_nodes WHERE content = ? AND path < ?',
    );
  }

  /**
   * The nodes of a content id's map whose root is `at` (the root its checkpoint names; null when unknown:
   * nothing kept in memory is used). Writes only inside a transaction; after the transaction that changed
   * them commits, `committed` names the new root.
   */
  nodes(content: string, at: Buffer | null): MapNodes {
    const cache = this.cacheOf(content, at);
    const read = (path: Buffer): MapNode | undefined => this.read(content, path);
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
      return kind === EMPTY ? undefined : keptNode(cache, depth, place, kind);
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

  /**
   * The proof of `key` in the content's map whose root is `at`, read in the snapshot that names it (for
   * answers bound to the log): the siblings from the leaf up, or null when the map does not hold the key.
   * The nodes kept in memory for proofs outlive a change of the map: a proof that used nodes kept under
   * an earlier root is checked against `at` before it is given (a few hashes), and when it does not hold,
   * those nodes are forgotten and the proof read again from the table. So a change costs a proof only the
   * nodes it changed, not the whole memory. The hashes may be views of that memory: use them before the
   * next call.
   */
  proof(content: string, at: Buffer, key: Buffer): Buffer[] | null {
    const cache = this.readerCache(content, at);
    const first = this.walk(content, cache, key, false);
    if (first.trusted) return first.siblings;
    if (first.siblings !== null && mapRootFrom(key, first.leaf!, first.siblings).equals(at)) {
      for (const [depth, place] of first.used) gensAt(cache, depth)[place] = cache.generation;
      return first.siblings;
    }
    for (const [depth, place] of first.used) kindsAt(cache, depth)[place] = UNKNOWN;
    return this.walk(content, cache, key, true).siblings;
  }

  /** A key's path walked from the root: its proof (or null), the leaf's hash, and the kept places used, trusted when all were kept under the current root. */
  private walk(
    content: string,
    cache: ReaderCache,
    key: Buffer,
    fresh: boolean,
  ): { siblings: Buffer[] | null; leaf: Buffer | null; used: [number, number][]; trusted: boolean } {
    const used: [number, number][] = [];
    let trusted = true;
    // A place's node: kept (no path made, no copy: the hashes are read before anything changes them), or
    // read from the table by the path `path()` makes. Places count down the key's bits (2^depth of them).
    const look = (depth: number, place: number, path: () => Buffer): { hash: Buffer; key: Buffer | null } | undefined => {
      if (depth > CACHED_DEPTH) return this.read(content, path());
      const kind = kindsAt(cache, depth)[place]!;
      if (fresh || kind === UNKNOWN) {
        const node = this.read(content, path());
        keep(cache, depth, place, node);
        gensAt(cache, depth)[place] = cache.generation;
        return node;
      }
      used.push([depth, place]);
      if (gensAt(cache, depth)[place] !== cache.generation) trusted = false;
      if (kind === EMPTY) return undefined;
      const hash = hashesAt(cache, depth).subarray(place * 32, place * 32 + 32);
      return { hash, key: kind === LEAF ? cache.leafKeys.get(depth * 2 ** 32 + place)! : null };
    };
    const siblings: Buffer[] = [];
    let place = 0;
    for (let depth = 0; ; depth++) {
      const node = look(depth, place, () => mapPath(key, depth));
      if (node === undefined) return { siblings: null, leaf: null, used, trusted };
      if (node.key !== null) return { siblings: node.key.equals(key) ? siblings.reverse() : null, leaf: node.hash, used, trusted };
      const next = place * 2 + keyBit(key, depth);
      siblings.push(look(depth + 1, next ^ 1, () => siblingPath(key, depth + 1))?.hash ?? EMPTY_MAP);
      place = next;
    }
  }

  /** The nodes kept for proofs of a content id's map: under a new root, the same nodes, no longer trusted until checked. */
  private readerCache(content: string, at: Buffer): ReaderCache {
    let cache = this.readers.get(content);
    this.readers.delete(content);
    if (cache === undefined) {
      cache = { root: at, dirty: false, kinds: [], hashes: [], leafKeys: new Map(), gens: [], generation: 1 };
      this.fill(content, cache);
    } else if (!cache.root!.equals(at)) {
      cache.root = at;
      cache.generation++;
    }
    this.readers.set(content, cache);
    if (this.readers.size > MAX_CACHED_MAPS) this.readers.delete(this.readers.keys().next().value as string);
    return cache;
  }

  /**
   * Reads every node down to CACHED_DEPTH into a new cache, in one range of the table (paths sort by
   * depth first): at most 2^(CACHED_DEPTH + 1) rows however large the map, about half a second at most,
   * once, where reading them one by one as answers and changes ask would take hundreds of thousands of
   * them to warm. A place not listed is empty.
   */
  private fill(content: string, cache: NodeCache | ReaderCache): void {
    for (let depth = 0; depth <= CACHED_DEPTH; depth++) kindsAt(cache, depth).fill(EMPTY);
    for (const row of this.upperStmt.iterate(content, UPPER_END)) {
      const depth = depthOf(row.path);
      keep(cache, depth, placeOf(row.path, depth), { hash: row.hash, key: row.leaf_key });
    }
    if ('gens' in cache) for (let depth = 0; depth <= CACHED_DEPTH; depth++) gensAt(cache, depth).fill(cache.generation);
  }

  private read(content: string, path: Buffer): MapNode | undefined {
    const row = this.getStmt.get(content, path);
    return row === undefined ? undefined : { hash: row.hash, key: row.leaf_key };
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
      this.fill(content, cache);
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
    this.readers.delete(content);
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

/** A node kept in memory, as a copy: the place may be written again while the caller holds it. */
function keptNode(cache: NodeCache, depth: number, place: number, kind: number): MapNode {
  const hash = Buffer.from(hashesAt(cache, depth).subarray(place * 32, place * 32 + 32));
  return { hash, key: kind === LEAF ? cache.leafKeys.get(depth * 2 ** 32 + place)! : null };
}

function gensAt(cache: ReaderCache, depth: number): Uint32Array {
  return (cache.gens[depth] ??= new Uint32Array(2 ** depth));
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
