import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';
import { BulkInsert } from './bulk-insert.js';
import { EMPTY_MAP, keyBit, mapPath, mapPathFrom, siblingPath, type MapNode, type MapNodes } from '../transparency/zone-map.js';

/**
 * Levels of the map whose nodes are neighbours in the table: a tile is the subtree of this many levels
 * below a node whose depth is a multiple of it (the root is a tile of its own), and its rows sort together
 * (mapRowKey). A change rewrites a node per depth on one key's path: stored by depth, those rows lay on as
 * many pages as there are levels, each dirtied page written whole to the WAL at commit (16 KiB); by tile,
 * on a page per tile. A key's path below the levels kept in memory, and every sibling on it, is one tile:
 * one range read.
 */
export const TILE_LEVELS = 6;
/**
 * Nodes down to this depth (the root and three tiles) are kept in memory (per content id, while its map's
 * root is the one they were read at): every proof and every change passes through them. A level of depth d
 * takes 2^d places of 33 bytes once a node of it is read (a map of a million records: all 18 levels, some
 * 17 MB); the levels below are read a tile at a time, the rows of one range (a map of a million records
 * holds about 8 nodes in such a tile).
 */
const CACHED_DEPTH = 3 * TILE_LEVELS;
/** The first row key below CACHED_DEPTH: every row of the levels kept sorts before it (the tile's level first). */
const UPPER_END = Buffer.from([tileOf(CACHED_DEPTH + 1).level]);
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
  private readonly upperStmt: Statement<[string, Buffer], { node: Buffer; hash: Buffer; leaf_key: Buffer | null }>;
  private readonly tileStmt: Statement<[string, Buffer, Buffer], { node: Buffer; hash: Buffer; leaf_key: Buffer | null }>;
  private readonly caches = new Map<string, NodeCache>();
  /** The nodes kept for proofs (proof()), which outlive a change of the map (checked when used). */
  private readonly readers = new Map<string, ReaderCache>();

  constructor(db: Db) {
    this.getStmt = db.prepare<[string, Buffer], { hash: Buffer; leaf_key: Buffer | null }>(
      'SELECT hash, leaf_key FROM map_nodes WHERE content = ? AND node = ?',
    );
    this.putStmt = db.prepare('INSERT OR REPLACE INTO map_nodes (content, node, hash, leaf_key) VALUES (?, ?, ?, ?)');
    this.deleteStmt = db.prepare('DELETE FROM map_nodes WHERE content = ? AND node = ?');
    this.clearStmt = db.prepare('DELETE FROM map_nodes WHERE content = ?');
    this.deleteSomeStmt = db.prepare('DELETE FROM map_nodes WHERE content = ? AND node IN (SELECT node FROM map_nodes WHERE content = ? LIMIT ?)');
    this.bulk = new BulkInsert(db, 'INSERT INTO map_nodes (content, node, hash, leaf_key)', 4);
    this.upperStmt = db.prepare<[string, Buffer], { node: Buffer; hash: Buffer; leaf_key: Buffer | null }>(
      'SELECT node, hash, leaf_key FROM map_nodes WHERE content = ? AND node < ?',
    );
    this.tileStmt = db.prepare<[string, Buffer, Buffer], { node: Buffer; hash: Buffer; leaf_key: Buffer | null }>(
      'SELECT node, hash, leaf_key FROM map_nodes WHERE content = ? AND node > ? AND node < ?',
    );
  }

  /**
   * The nodes of a content id's map whose root is `at` (the root its checkpoint names; null when unknown:
   * nothing kept in memory is used). Writes only inside a transaction; after the transaction that changed
   * them commits, `committed` names the new root.
   */
  nodes(content: string, at: Buffer | null): MapNodes {
    const cache = this.cacheOf(content, at);
    const tiles = this.tiles(content);
    const read = (path: Buffer): MapNode | undefined => this.read(content, path);
    const get = (path: Buffer): MapNode | undefined => {
      const depth = depthOf(path);
      if (depth > CACHED_DEPTH) return tiles.get(mapRowKey(path));
      if (cache === null) return read(path);
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
        const row = mapRowKey(path);
        this.putStmt.run(content, row, node.hash, node.key);
        tiles.changed(row, node);
        this.changed(content, path, node);
      },
      delete: (path) => {
        const row = mapRowKey(path);
        this.deleteStmt.run(content, row);
        tiles.changed(row, undefined);
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
    if (first.siblings !== null) {
      const hashes = mapPathFrom(key, first.leaf!, first.siblings);
      if (hashes[hashes.length - 1]!.equals(at)) {
        // The root holds: the leaf and each sibling are what it commits to (a leaf's hash binds its key,
        // an interior node's is no leaf's, the empty hash is nobody's). The nodes on the path were used
        // only as interior nodes, their kept hashes unchecked: they take the hashes just computed.
        for (const [depth, place] of first.used) gensAt(cache, depth)[place] = cache.generation;
        const depth = first.siblings.length;
        for (let d = Math.min(depth - 1, CACHED_DEPTH); d >= 0; d--) keep(cache, d, placeAt(key, 0, d), { hash: hashes[depth - d]!, key: null });
        return first.siblings;
      }
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
    const tiles = this.tiles(content);
    // A place's node: kept (no path made, no copy: the hashes are read before anything changes them), or
    // read from the table by the path `path()` makes. Places count down the key's bits (2^depth of them).
    const look = (depth: number, place: number, path: () => Buffer): { hash: Buffer; key: Buffer | null } | undefined => {
      if (depth > CACHED_DEPTH) return tiles.get(mapRowKey(path()));
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
   * Reads every node down to CACHED_DEPTH into a new cache, in one range of the table (rows sort by
   * their tile's level first): at most 2^(CACHED_DEPTH + 1) rows however large the map, about half a second at most,
   * once, where reading them one by one as answers and changes ask would take hundreds of thousands of
   * them to warm. A place not listed is empty.
   */
  private fill(content: string, cache: NodeCache | ReaderCache): void {
    for (let depth = 0; depth <= CACHED_DEPTH; depth++) kindsAt(cache, depth).fill(EMPTY);
    for (const row of this.upperStmt.iterate(content, UPPER_END)) {
      const { depth, place } = placeOfRow(row.node);
      keep(cache, depth, place, { hash: row.hash, key: row.leaf_key });
    }
    if ('gens' in cache) for (let depth = 0; depth <= CACHED_DEPTH; depth++) gensAt(cache, depth).fill(cache.generation);
  }

  /** A reader of a content id's nodes a tile at a time, for one transaction's changes or one proof. */
  private tiles(content: string): TileReader {
    return new TileReader((id) => {
      const end = Buffer.concat([id, Buffer.from([0xff])]);
      return this.tileStmt.iterate(content, id, end);
    });
  }

  private read(content: string, path: Buffer): MapNode | undefined {
    const row = this.getStmt.get(content, mapRowKey(path));
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
      rows.push([content, mapRowKey(path), node.hash, node.key]);
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

/**
 * Nodes below the levels kept in memory, read a tile at a time (every node on a key's path there, and their
 * siblings, in one range read), kept for one transaction's changes (which it is told of) or one proof.
 */
class TileReader {
  private readonly tiles = new Map<string, Map<string, MapNode>>();

  constructor(private readonly readTile: (id: Buffer) => Iterable<{ node: Buffer; hash: Buffer; leaf_key: Buffer | null }>) {}

  /** The node whose row key is `row`, or undefined (empty). */
  get(row: Buffer): MapNode | undefined {
    const id = tileIdOf(row);
    let tile = this.tiles.get(id);
    if (tile === undefined) {
      tile = new Map();
      for (const r of this.readTile(Buffer.from(id, 'latin1'))) tile.set(r.node.toString('latin1'), { hash: r.hash, key: r.leaf_key });
      this.tiles.set(id, tile);
    }
    return tile.get(row.toString('latin1'));
  }

  /** A node written (undefined: deleted), in its tile if that was read. */
  changed(row: Buffer, node: MapNode | undefined): void {
    const tile = this.tiles.get(tileIdOf(row));
    if (tile === undefined) return;
    if (node === undefined) tile.delete(row.toString('latin1'));
    else tile.set(row.toString('latin1'), node);
  }
}

/** The tile of a node at `depth`: its level (a byte: the root's tile is 0) and the depth of its root. */
function tileOf(depth: number): { level: number; top: number } {
  const level = depth === 0 ? 0 : Math.floor((depth - 1) / TILE_LEVELS) + 1;
  return { level, top: topOf(level) };
}

/** The depth of the roots of the tiles of a level. */
function topOf(level: number): number {
  return level === 0 ? 0 : (level - 1) * TILE_LEVELS;
}

/**
 * The key of a node's row (schema.sql `map_nodes.node`): its tile's level (a byte), the path of the tile's
 * root (its first `top` bits, whole bytes, the rest of the last zero), the node's depth below that root (a
 * byte), then its path's bits (mapPath without the depth). Rows sort by tile, so a tile's nodes share a
 * page, and the first 2 + ⌈top / 8⌉ bytes name the tile (tileRange).
 */
export function mapRowKey(path: Buffer): Buffer {
  const depth = depthOf(path);
  const { level, top } = tileOf(depth);
  const topBytes = (top + 7) >> 3;
  const row = Buffer.allocUnsafe(2 + topBytes + path.length - 2);
  row[0] = level;
  path.copy(row, 1, 2, 2 + topBytes);
  if (top & 7) row[topBytes] = row[topBytes]! & (0xff << (8 - (top & 7)));
  row[1 + topBytes] = depth - top;
  path.copy(row, 2 + topBytes, 2);
  return row;
}

/** The bytes that name a row's tile (its level and root), as a string to look it up by. */
function tileIdOf(row: Buffer): string {
  return row.toString('latin1', 0, 1 + ((topOf(row[0]!) + 7) >> 3));
}

/** A row's node's depth, and its place among the 2^depth of its depth (depth at most CACHED_DEPTH). */
function placeOfRow(row: Buffer): { depth: number; place: number } {
  const top = topOf(row[0]!);
  const at = 2 + ((top + 7) >> 3);
  const depth = top + row[at - 1]!;
  return { depth, place: placeAt(row, at, depth) };
}

function depthOf(path: Buffer): number {
  return path.readUInt16BE(0);
}

/** A node's place among the 2^depth of its depth: its path's bits (depth at most CACHED_DEPTH). */
function placeOf(path: Buffer, depth: number): number {
  return placeAt(path, 2, depth);
}

/** The first `depth` bits (at most 24) of `bytes` from `at`, as a number. */
function placeAt(bytes: Buffer, at: number, depth: number): number {
  if (depth === 0) return 0;
  const bits = (((bytes[at] ?? 0) << 16) | ((bytes[at + 1] ?? 0) << 8) | (bytes[at + 2] ?? 0)) >>> 0;
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
