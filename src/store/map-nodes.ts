import { dirname } from 'node:path';
import type { Statement } from 'better-sqlite3';
import type { Db } from './database.js';
import { BulkInsert } from './bulk-insert.js';
import type { RecordStore } from './records.js';
import { HASH_BYTES } from '../transparency/merkle.js';
import { EMPTY_MAP, keyBit, MapEntries, MAPPED_TYPES, mapKey, mapPathFrom, mapValue, type MapNode, type MapNodes } from '../transparency/zone-map.js';
import { BASE64_HASH } from '../transparency/memory-tree.js';
import { writeBase64 } from '../records/encoding.js';

/**
 * Levels of the map stored in one row (schema.sql `map_tiles`): a tile holds the nodes of the 5 levels
 * below a node whose depth is a multiple of 5 (up to 62 of them; the root is a tile of its own). A change
 * rewrites a node per depth on one key's path: a row each, they took as many pages and B-tree updates as
 * the path is long (each dirtied page is written whole to the WAL at commit, 16 KiB); a row per tile, a
 * fifth of that. A full tile is about 2 KB, well inside a 16 KiB page's limit for a row kept in place.
 */
export const TILE_LEVELS = 5;
/**
 * Nodes down to this depth (the root's tile and three levels of tiles, at most 2^16 − 1 nodes) are kept in
 * memory per content id, while its map's root is the one they were read at: every proof and every change
 * passes through them. A map of a million records: some 2 MB, read in about a thousand rows. The levels
 * below are read a tile at a time (a key's path there, and its siblings, in one or two rows).
 */
const CACHED_DEPTH = 3 * TILE_LEVELS;
/** The first tile below CACHED_DEPTH: every tile of the levels kept sorts before it (its level first). */
const UPPER_END = Buffer.from([tileOf(CACHED_DEPTH + 1).level]);
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

/** The nodes kept for proofs: as NodeCache, and per place the generation (one per root) it was read or checked under. */
interface ReaderCache extends NodeCache {
  gens: (Uint32Array | undefined)[];
  generation: number;
}

/**
 * The zones' maps (schema.sql `map_tiles`, docs/protocol.md §13.6): each content id's map as tiles of
 * nodes. Changed inside the write transaction that changes the records (transparency/zone-map.ts ZoneMap
 * over nodes(), then flush()), or replaced whole by a map built from the records. The upper levels are
 * kept in memory per content id and checked against the root a caller names (`at`) before use, so a
 * change made through another connection (the writer thread, the command line) is never read stale.
 */
export class MapStore {
  private readonly getStmt: Statement<[string, Buffer], Buffer>;
  private readonly putStmt;
  private readonly deleteStmt;
  private readonly clearStmt;
  private readonly deleteSomeStmt;
  private readonly bulk;
  private readonly upperStmt: Statement<[string, Buffer], { tile: Buffer; nodes: Buffer }>;
  private readonly caches = new Map<string, NodeCache>();
  /** The nodes kept for proofs (proof()), which outlive a change of the map (checked when used). */
  private readonly readers = new Map<string, ReaderCache>();
  /** The one walk of a proof, reused (a walk allocates nothing per node). */
  private readonly walk = new ProofWalk();

  /** Where a map built whole spills its entries (MapEntries): beside the database; none for one in memory. */
  private readonly spillDir: string | undefined;

  /** `records`: the records a map is rebuilt from. */
  constructor(
    db: Db,
    private readonly records: RecordStore,
  ) {
    this.spillDir = db.memory ? undefined : dirname(db.name);
    this.getStmt = db.prepare<[string, Buffer], Buffer>('SELECT nodes FROM map_tiles WHERE content = ? AND tile = ?').pluck();
    this.putStmt = db.prepare('INSERT OR REPLACE INTO map_tiles (content, tile, nodes) VALUES (?, ?, ?)');
    this.deleteStmt = db.prepare('DELETE FROM map_tiles WHERE content = ? AND tile = ?');
    this.clearStmt = db.prepare('DELETE FROM map_tiles WHERE content = ?');
    this.deleteSomeStmt = db.prepare('DELETE FROM map_tiles WHERE content = ? AND tile IN (SELECT tile FROM map_tiles WHERE content = ? LIMIT ?)');
    this.bulk = new BulkInsert(db, 'map_tiles (content, tile, nodes)', 3);
    this.upperStmt = db.prepare<[string, Buffer], { tile: Buffer; nodes: Buffer }>('SELECT tile, nodes FROM map_tiles WHERE content = ? AND tile < ?');
  }

  /**
   * The nodes of a content id's map whose root is `at` (the root its checkpoint names; null when unknown:
   * nothing kept in memory is used), for one transaction: changes are kept by tile until flush() writes
   * them (ZoneMap.commit), each tile once; after the transaction commits, `committed` names the new root.
   */
  nodes(content: string, at: Buffer | null): MapNodes {
    const cache = this.cacheOf(content, at);
    const tiles = new Tiles((id) => this.readTile(content, id));
    const get = (path: Buffer): MapNode | undefined => {
      const depth = depthOf(path);
      if (cache === null || depth > CACHED_DEPTH) return tiles.get(path);
      const place = placeOf(path, depth);
      const kind = kindsAt(cache, depth)[place]!;
      if (kind === UNKNOWN) {
        const node = tiles.get(path);
        keep(cache, depth, place, node);
        return node;
      }
      return kind === EMPTY ? undefined : keptView(cache, depth, place, kind);
    };
    // Tiles of the levels kept in memory are changed there and encoded from there at flush (no read of
    // the stored row); the tiles below, in `tiles`.
    const kept = new Map<string, Buffer>();
    const set = (path: Buffer, node: MapNode | undefined): void => {
      const depth = depthOf(path);
      if (cache === null || depth > CACHED_DEPTH) {
        tiles.set(path, node);
        this.changed(content, path, node);
        return;
      }
      keep(cache, depth, placeOf(path, depth), node);
      cache.dirty = true;
      const id = tileIdOf(path);
      kept.set(id.toString('latin1'), id);
    };
    const write = (id: Buffer, blob: Buffer | null): void => {
      if (blob === null) this.deleteStmt.run(content, id);
      else this.putStmt.run(content, id, blob);
    };
    return {
      get,
      put: (path, node) => set(path, node),
      delete: (path) => set(path, undefined),
      flush: () => {
        for (const id of kept.values()) write(id, encodeTile(keptTile(cache!, id)));
        kept.clear();
        tiles.flush(write);
      },
    };
  }

  /**
   * The proof of `key` in the content's map whose root is `at`, read in the snapshot that names it (for
   * answers bound to the log): the siblings from the leaf up, or null when the map does not hold the key.
   * The nodes kept in memory for proofs outlive a change of the map: a proof that used nodes kept under
   * an earlier root is checked against `at` before it is given (a few hashes), and when it does not hold,
   * those nodes are forgotten and the proof read again from the table. So a change costs a proof only the
   * nodes it changed, not the whole memory.
   */
  proof(content: string, at: Buffer, key: Buffer): Buffer[] | null {
    return (
      this.proven(content, at, key)
        ?.siblings()
        .map((h) => Buffer.from(h)) ?? null
    );
  }

  /**
   * proof() as the bound answers carry it: each sibling's base64 (BASE64_HASH bytes), one after the other,
   * from the leaf up. Written from the kept memory and the rows read, with no node made on the way.
   */
  proofBase64(content: string, at: Buffer, key: Buffer): Buffer | null {
    const walk = this.proven(content, at, key);
    if (walk === null) return null;
    const out = Buffer.allocUnsafe(walk.count * BASE64_HASH);
    let to = 0;
    for (let i = walk.count - 1; i >= 0; i--) to = writeBase64(walk.hashIn[i]!, out, to, walk.hashAt[i]!, walk.hashAt[i]! + HASH_BYTES);
    return out;
  }

  /** The walk of a key's proof that holds against `at` (see proof()), or null when the map does not hold the key. Valid until the next walk. */
  private proven(content: string, at: Buffer, key: Buffer): ProofWalk | null {
    const cache = this.readerCache(content, at);
    const walk = this.walk;
    walk.run(cache, key, false, (id) => this.readTile(content, id));
    if (walk.trusted) return walk.found ? walk : null;
    // Kept nodes from before a change: a proof found is checked against the root; a key not found may
    // be there now (read again below).
    if (walk.found) {
      const hashes = mapPathFrom(key, walk.leafIn!.subarray(walk.leafAt, walk.leafAt + HASH_BYTES), walk.siblings());
      if (hashes[hashes.length - 1]!.equals(at)) {
        // The root holds: the leaf and each sibling are what it commits to (a leaf's hash binds its key,
        // an interior node's is no leaf's, the empty hash is nobody's). The nodes on the path were used
        // only as interior nodes, their kept hashes unchecked: they take the hashes just computed.
        const { used } = walk;
        for (let i = 0; i < used.length; i += 2) gensAt(cache, used[i]!)[used[i + 1]!] = cache.generation;
        const depth = walk.count;
        for (let d = Math.min(depth - 1, CACHED_DEPTH); d >= 0; d--) keep(cache, d, placeAt(key, 0, d), { hash: hashes[depth - d]!, key: null });
        return walk;
      }
    }
    const { used } = walk;
    for (let i = 0; i < used.length; i += 2) kindsAt(cache, used[i]!)[used[i + 1]!] = UNKNOWN;
    walk.run(cache, key, true, (id) => this.readTile(content, id));
    return walk.found ? walk : null;
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
   * Reads every node down to CACHED_DEPTH into a new cache, in one range of the table (tiles sort by their
   * level first): at most 1 + 32 + 1,024 + 32,768 rows however large the map. A place not listed is empty.
   */
  private fill(content: string, cache: NodeCache | ReaderCache): void {
    for (let depth = 0; depth <= CACHED_DEPTH; depth++) kindsAt(cache, depth).fill(EMPTY);
    for (const row of this.upperStmt.iterate(content, UPPER_END)) {
      const nodes = decodeTile(row.nodes);
      placesOfTile(row.tile, (slot, depth, place) => keep(cache, depth, place, nodes[slot]));
    }
    if ('gens' in cache) for (let depth = 0; depth <= CACHED_DEPTH; depth++) gensAt(cache, depth).fill(cache.generation);
  }

  private readTile(content: string, id: Buffer): Buffer | undefined {
    return this.getStmt.get(content, id);
  }

  /** The transaction that changed a content id's map committed, leaving it with `root`: what is kept in memory is that map's. */
  committed(content: string, root: Buffer): void {
    const cache = this.caches.get(content);
    if (cache === undefined) return;
    cache.root = root;
    cache.dirty = false;
  }

  /**
   * Builds a content id's map (docs/protocol.md §13.6) from the records it holds, replacing the one stored,
   * and returns its root. Inside a transaction; O(n log n) for n records (the sort), two hashes a record.
   */
  rebuild(content: string): Buffer {
    const entries = this.entries();
    try {
      for (const type of MAPPED_TYPES) {
        for (let page = this.records.keyPage(content, type, null, 1000); page.length > 0; page = this.records.keyPage(content, type, page.at(-1)!.key, 1000)) {
          for (const r of page) entries.add(mapKey(type, r.key), mapValue(r.jws));
        }
      }
      return this.build(content, entries);
    } finally {
      entries.close();
    }
  }

  /** Entries to build a map of (`build`), spilled beside the database: close them when done. */
  entries(): MapEntries {
    return new MapEntries(this.spillDir);
  }

  /** Replaces a content id's map by the map of `entries`, built whole; returns its root. Call inside a transaction. */
  build(content: string, entries: MapEntries): Buffer {
    this.forget(content);
    this.clearStmt.run(content);
    let rows: unknown[][] = [];
    const tiles = new TileBuilder((id, blob) => {
      rows.push([content, id, blob]);
      if (rows.length === 1024) {
        this.bulk.run(rows);
        rows = [];
      }
    });
    const root = entries.build((bits, at, depth, hash, leaf) => tiles.node(bits, at, depth, hash, leaf));
    tiles.finish();
    this.bulk.run(rows);
    return root;
  }

  /** Deletes up to `limit` tiles of a content id; returns how many went (retired copies are dropped in batches). */
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
 * A key's path walked from the root for its proof, through the nodes kept in memory and then the tiles
 * below a row at a time, read in place (tileSlot): each sibling is a hash at an offset of a buffer (the
 * kept memory, a row read, or the empty hash), so a proof makes no node, path or tile id per level.
 */
class ProofWalk {
  /** The key is in the map (its leaf reached). */
  found = false;
  /** Every kept node used was read or checked under the current root. */
  trusted = true;
  /** Siblings from the root down: the i-th is at hashAt[i] of hashIn[i]. */
  count = 0;
  readonly hashIn: Buffer[] = [];
  readonly hashAt: number[] = [];
  leafIn: Buffer | null = null;
  leafAt = 0;
  /** The kept places used, as depth and place pairs. */
  readonly used: number[] = [];
  /** The tile row of the deepest level read, and its level. */
  private tile: Buffer | undefined;
  private tileLevel = -1;
  /** The node looked at last: its hash at `at` of `in` (null: empty), and whether it is a leaf with the walk's key. */
  private nodeIn: Buffer | null = null;
  private nodeAt = 0;
  private nodeLeaf = false;
  private nodeMine = false;

  /** The siblings found, from the leaf up, as views of where they are (valid until the next walk). */
  siblings(): Buffer[] {
    const out: Buffer[] = [];
    for (let i = this.count - 1; i >= 0; i--) out.push(this.hashIn[i]!.subarray(this.hashAt[i]!, this.hashAt[i]! + HASH_BYTES));
    return out;
  }

  run(cache: ReaderCache, key: Buffer, fresh: boolean, read: (id: Buffer) => Buffer | undefined): void {
    this.found = false;
    this.trusted = true;
    this.count = 0;
    this.used.length = 0;
    this.tile = undefined;
    this.tileLevel = -1;
    let place = 0;
    for (let depth = 0; ; depth++) {
      this.look(cache, key, depth, place, false, fresh, read);
      if (this.nodeIn === null) return;
      if (this.nodeLeaf) {
        if (!this.nodeMine) return;
        this.found = true;
        this.leafIn = this.nodeIn;
        this.leafAt = this.nodeAt;
        return;
      }
      const next = place * 2 + keyBit(key, depth);
      this.look(cache, key, depth + 1, next ^ 1, true, fresh, read);
      this.hashIn[this.count] = this.nodeIn ?? EMPTY_MAP;
      this.hashAt[this.count] = this.nodeIn === null ? 0 : this.nodeAt;
      this.count++;
      place = next;
    }
  }

  /**
   * Looks at the node at `depth` on the key's path (`sibling`: its sibling), whose place among the 2^depth
   * of its depth is `place` (used while depth ≤ CACHED_DEPTH): sets nodeIn, nodeAt, nodeLeaf and nodeMine.
   */
  private look(
    cache: ReaderCache,
    key: Buffer,
    depth: number,
    place: number,
    sibling: boolean,
    fresh: boolean,
    read: (id: Buffer) => Buffer | undefined,
  ): void {
    if (depth <= CACHED_DEPTH) {
      const kinds = kindsAt(cache, depth);
      if (fresh || kinds[place] === UNKNOWN) {
        const tile = this.tileAt(key, depth, read);
        const at = tile === undefined ? -1 : tileSlot(tile, slotIn(key, 0, depth, sibling));
        keep(cache, depth, place, at < 0 ? undefined : nodeOf(tile!, at));
        gensAt(cache, depth)[place] = cache.generation;
      } else {
        this.used.push(depth, place);
        if (gensAt(cache, depth)[place] !== cache.generation) this.trusted = false;
      }
      const kind = kinds[place]!;
      if (kind === EMPTY) {
        this.nodeIn = null;
        return;
      }
      this.nodeIn = hashesAt(cache, depth);
      this.nodeAt = place * HASH_BYTES;
      this.nodeLeaf = kind === LEAF;
      this.nodeMine = this.nodeLeaf && cache.leafKeys.get(depth * 2 ** 32 + place)!.equals(key);
      return;
    }
    const tile = this.tileAt(key, depth, read);
    const at = tile === undefined ? -1 : tileSlot(tile, slotIn(key, 0, depth, sibling));
    if (at < 0) {
      this.nodeIn = null;
      return;
    }
    this.nodeIn = tile!;
    this.nodeAt = at & ~LEAF_FLAG;
    this.nodeLeaf = (at & LEAF_FLAG) !== 0;
    this.nodeMine = this.nodeLeaf && key.compare(tile!, this.nodeAt + HASH_BYTES, this.nodeAt + 2 * HASH_BYTES) === 0;
  }

  /** The row of the tile that holds the key's path at `depth` (read once a walk: a path's nodes and their siblings share it). */
  private tileAt(key: Buffer, depth: number, read: (id: Buffer) => Buffer | undefined): Buffer | undefined {
    const { level } = tileOf(depth);
    if (level !== this.tileLevel) {
      this.tileLevel = level;
      this.tile = read(tileIdIn(key, 0, depth));
    }
    return this.tile;
  }
}

/** In tileSlot's answer, the bit that marks a leaf (offsets are far below it). */
const LEAF_FLAG = 1 << 30;

/** Where the node at `slot` starts in a tile's row (encodeTile), with LEAF_FLAG for a leaf; −1 when the place is empty. */
function tileSlot(blob: Buffer, slot: number): number {
  // Places 0–31 in the second word, 32–61 in the first; nodes are written places 0–31 first.
  const low = blob.readUInt32BE(4);
  const lowLeaves = blob.readUInt32BE(12);
  let present: number;
  let leaves: number;
  let before = 0;
  let leavesBefore = 0;
  if (slot < 32) {
    present = low;
    leaves = lowLeaves;
  } else {
    present = blob.readUInt32BE(0);
    leaves = blob.readUInt32BE(8);
    before = popcount(low);
    leavesBefore = popcount(lowLeaves);
  }
  const bit = (1 << (slot & 31)) >>> 0;
  if ((present & bit) === 0) return -1;
  const below = (bit - 1) >>> 0;
  const at = 16 + (before + popcount(present & below) + leavesBefore + popcount(leaves & below)) * HASH_BYTES;
  return (leaves & bit) !== 0 ? at | LEAF_FLAG : at;
}

function popcount(n: number): number {
  n = n - ((n >>> 1) & 0x55555555);
  n = (n & 0x33333333) + ((n >>> 2) & 0x33333333);
  return (Math.imul((n + (n >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24) & 0xff;
}

/** The node at `at` of a row (tileSlot's answer), as views of it. */
function nodeOf(blob: Buffer, at: number): MapNode {
  const start = at & ~LEAF_FLAG;
  const hash = blob.subarray(start, start + HASH_BYTES);
  return { hash, key: (at & LEAF_FLAG) !== 0 ? blob.subarray(start + HASH_BYTES, start + 2 * HASH_BYTES) : null };
}

/**
 * Tiles read (by `read`, the stored row or undefined) and changed in memory, for one transaction's changes
 * or one proof: each tile read once, each changed tile written once by flush().
 */
class Tiles {
  private readonly tiles = new Map<string, { id: Buffer; nodes: (MapNode | undefined)[]; changed: boolean }>();

  constructor(private readonly read: (id: Buffer) => Buffer | undefined) {}

  /** The node at `path` (mapPath), or undefined (empty). */
  get(path: Buffer): MapNode | undefined {
    return this.tileOf(tileIdOf(path)).nodes[slotOf(path)];
  }

  /** Sets the node at `path` (undefined: empty). */
  set(path: Buffer, node: MapNode | undefined): void {
    const tile = this.tileOf(tileIdOf(path));
    tile.nodes[slotOf(path)] = node;
    tile.changed = true;
  }

  /** Hands every changed tile to `write` (its encoding; null when it holds no node now). */
  flush(write: (id: Buffer, blob: Buffer | null) => void): void {
    for (const tile of this.tiles.values()) {
      if (!tile.changed) continue;
      write(tile.id, encodeTile(tile.nodes));
      tile.changed = false;
    }
  }

  private tileOf(id: Buffer): { id: Buffer; nodes: (MapNode | undefined)[]; changed: boolean } {
    const name = id.toString('latin1');
    let tile = this.tiles.get(name);
    if (tile === undefined) {
      const blob = this.read(id);
      tile = { id, nodes: blob === undefined ? [] : decodeTile(blob), changed: false };
      this.tiles.set(name, tile);
    }
    return tile;
  }
}

/**
 * The tiles of a map built whole, from its nodes as MapEntries.build hands them, each after the nodes
 * below it: the nodes of a tile then arrive together, before the node at its top, so one tile per level is
 * open at a time, and it is complete when that node arrives. Each node is copied into its open tile's
 * place; a complete tile is encoded (encodeTile's layout) and handed to `write`. No path, node object or
 * map entry per node, as Tiles would make.
 */
class TileBuilder {
  /** Per level: the open tile's id (null: none open), its places (a hash and a key each), and its masks (encodeTile's words). */
  private readonly ids: (Buffer | null)[] = [];
  private readonly places: Buffer[] = [];
  private readonly masks: Uint32Array[] = [];

  constructor(private readonly write: (id: Buffer, blob: Buffer) => void) {}

  /** Takes one node (a MapNodeSink's arguments). */
  node(bits: Buffer, at: number, depth: number, hash: Buffer, leaf: boolean): void {
    // The node at the top of a tile comes after every node of that tile: the tile below is whole.
    if (depth % TILE_LEVELS === 0) this.close(tileOf(depth + 1).level);
    const { level } = tileOf(depth);
    if (this.ids[level] == null) {
      this.ids[level] = tileIdIn(bits, at, depth);
      this.places[level] ??= Buffer.allocUnsafe(TILE_PLACES * 2 * HASH_BYTES);
      this.masks[level] ??= new Uint32Array(4);
    }
    const slot = slotIn(bits, at, depth, false);
    const masks = this.masks[level]!;
    const word = slot < 32 ? 1 : 0;
    const bit = (1 << (slot & 31)) >>> 0;
    masks[word] = (masks[word]! | bit) >>> 0;
    const place = this.places[level]!;
    hash.copy(place, slot * 2 * HASH_BYTES);
    if (leaf) {
      masks[2 + word] = (masks[2 + word]! | bit) >>> 0;
      bits.copy(place, slot * 2 * HASH_BYTES + HASH_BYTES, at, at + HASH_BYTES);
    }
  }

  /** Writes the tiles still open: the root's, once the root has come. */
  finish(): void {
    for (let level = 0; level < this.ids.length; level++) this.close(level);
  }

  private close(level: number): void {
    const id = this.ids[level];
    if (id == null) return;
    const masks = this.masks[level]!;
    const place = this.places[level]!;
    const blob = packTile(masks, (slot, leaf, out, at) => {
      const from = slot * 2 * HASH_BYTES;
      return place.copy(out, at, from, from + (leaf ? 2 : 1) * HASH_BYTES);
    });
    masks.fill(0);
    this.ids[level] = null;
    this.write(id, blob);
  }
}

/** Places in a tile: the nodes of TILE_LEVELS levels below its top, 2 + 4 + … + 32. */
const TILE_PLACES = 2 ** (TILE_LEVELS + 1) - 2;

/**
 * A tile's row (schema.sql `map_tiles.nodes`): two 64-bit big-endian masks of its places (bit s of the
 * pair, counting from the least significant bit of the second word: place s), the places that hold a node
 * and those that hold a leaf; then, for each place that holds a node in ascending order, its hash (32
 * bytes) and, for a leaf, its key (32 bytes). A node r levels below the tile's root, at position p among
 * the 2^r there, is at place 2^r − 2 + p; the root's tile has the root at place 0. Null: no node.
 */
function encodeTile(nodes: readonly (MapNode | undefined)[]): Buffer | null {
  // The masks as two 32-bit words each (places 32 to 61, then 0 to 31): numbers, not BigInts, for speed.
  const masks = new Uint32Array(4);
  for (let s = 0; s < nodes.length; s++) {
    const node = nodes[s];
    if (node === undefined) continue;
    const word = s < 32 ? 1 : 0;
    masks[word] = (masks[word]! | (1 << (s & 31))) >>> 0;
    if (node.key !== null) masks[2 + word] = (masks[2 + word]! | (1 << (s & 31))) >>> 0;
  }
  if (masks[0] === 0 && masks[1] === 0) return null;
  return packTile(masks, (slot, _leaf, out, at) => {
    const node = nodes[slot]!;
    return node.hash.copy(out, at) + (node.key === null ? 0 : node.key.copy(out, at + HASH_BYTES));
  });
}

/**
 * A tile's row (encodeTile's layout) from its masks (present places, then leaves, each as encodeTile's
 * two words) and `node`, which writes the node at each present place, in ascending order (its hash, and
 * a leaf's key after it) and returns the bytes written. Shared by a tile of nodes (encodeTile) and a tile
 * built whole (TileBuilder).
 */
function packTile(masks: Uint32Array, node: (slot: number, leaf: boolean, out: Buffer, at: number) => number): Buffer {
  let size = 16;
  for (let word = 0; word < 2; word++) size += (popcount(masks[word]!) + popcount(masks[2 + word]!)) * HASH_BYTES;
  const blob = Buffer.allocUnsafe(size);
  for (let i = 0; i < 4; i++) blob.writeUInt32BE(masks[i]!, 4 * i);
  let at = 16;
  for (let slot = 0; slot < TILE_PLACES; slot++) {
    const word = slot < 32 ? 1 : 0;
    const bit = (1 << (slot & 31)) >>> 0;
    if ((masks[word]! & bit) !== 0) at += node(slot, (masks[2 + word]! & bit) !== 0, blob, at);
  }
  return blob;
}

/** The nodes of a tile's row (encodeTile), by place; the hashes and keys are views of `blob`. */
function decodeTile(blob: Buffer): (MapNode | undefined)[] {
  const nodes: (MapNode | undefined)[] = [];
  let at = 16;
  for (let word = 1; word >= 0; word--) {
    let present = blob.readUInt32BE(word * 4);
    const leaves = blob.readUInt32BE(8 + word * 4);
    while (present !== 0) {
      const bit = present & -present;
      const s = (1 - word) * 32 + 31 - Math.clz32(bit);
      present = (present ^ bit) >>> 0;
      const hash = blob.subarray(at, at + HASH_BYTES);
      at += HASH_BYTES;
      let key: Buffer | null = null;
      if ((leaves & bit) !== 0) {
        key = blob.subarray(at, at + HASH_BYTES);
        at += HASH_BYTES;
      }
      nodes[s] = { hash, key };
    }
  }
  return nodes;
}

/** Calls `fn` with each place of the tile `id` (encodeTile), and the depth and place among 2^depth it stands for. */
function placesOfTile(id: Buffer, fn: (slot: number, depth: number, place: number) => void): void {
  const level = id[0]!;
  const top = topOf(level);
  const under = placeAt(id, 1, top);
  if (level === 0) return fn(0, 0, 0);
  for (let r = 1; r <= TILE_LEVELS; r++) for (let p = 0; p < 2 ** r; p++) fn(2 ** r - 2 + p, top + r, under * 2 ** r + p);
}

/** A tile of the levels kept in memory, read from that memory (complete: it was filled whole). */
function keptTile(cache: NodeCache, id: Buffer): (MapNode | undefined)[] {
  const nodes: (MapNode | undefined)[] = [];
  placesOfTile(id, (slot, depth, place) => {
    const kind = kindsAt(cache, depth)[place]!;
    if (kind === INTERIOR || kind === LEAF) nodes[slot] = keptView(cache, depth, place, kind);
  });
  return nodes;
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
 * The key of the row of the tile that holds the node at `path` (schema.sql `map_tiles.tile`): its level (a
 * byte), then the path of the tile's root (its first `top` bits, whole bytes, the rest of the last zero).
 * Tiles sort by level, so the levels kept in memory are one range.
 */
function tileIdOf(path: Buffer): Buffer {
  return tileIdIn(path, 2, depthOf(path));
}

/** tileIdOf for the node at `depth` whose path's bits are `bits` from byte `at` (a path's: 2; a key's, for the node on its path: 0). */
function tileIdIn(bits: Buffer, at: number, depth: number): Buffer {
  const { level, top } = tileOf(depth);
  const bytes = (top + 7) >> 3;
  const id = Buffer.allocUnsafe(1 + bytes);
  id[0] = level;
  bits.copy(id, 1, at, at + bytes);
  if (top & 7) id[bytes] = id[bytes]! & (0xff << (8 - (top & 7)));
  return id;
}

/** The place of the node at `path` in its tile (encodeTile). */
function slotOf(path: Buffer): number {
  return slotIn(path, 2, depthOf(path), false);
}

/** slotOf for the node at `depth` whose path's bits are `bits` from byte `at` (as tileIdIn), or for its sibling. */
function slotIn(bits: Buffer, at: number, depth: number, sibling: boolean): number {
  if (depth === 0) return 0;
  const { top } = tileOf(depth);
  let p = 0;
  for (let bit = top; bit < depth; bit++) p = (p << 1) | ((bits[at + (bit >> 3)]! >> (7 - (bit & 7))) & 1);
  if (sibling) p ^= 1;
  return 2 ** (depth - top) - 2 + p;
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

/** A node kept in memory, its hash a view of that memory. */
function keptView(cache: NodeCache, depth: number, place: number, kind: number): MapNode {
  return { hash: hashesAt(cache, depth).subarray(place * 32, place * 32 + 32), key: kind === LEAF ? cache.leafKeys.get(depth * 2 ** 32 + place)! : null };
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
