import { hash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { IdnsError } from '../errors.js';
import { HASH_BYTES, leafHash, leafHashOf, nodeHash } from './merkle.js';

/**
 * A zone's map (docs/protocol.md §13.6): a Merkle prefix tree over the records the zone holds now, key
 * SHA-256(type "\n" key), value SHA-256(jws). Where the log proves that an entry was once written, the map
 * proves that a record is the zone's current one: its root is a line of each checkpoint, so a record
 * replaced since (a handle's older keys, a denial from before a registration) has no proof against it.
 *
 * The tree over a set S of keys at depth d (keys sharing their first d bits): no key, the empty hash (32
 * zero bytes); one key, that key's leaf `SHA-256(0x00 || key || value)`; more, the interior node
 * `SHA-256(0x01 || tree(S with bit d = 0) || tree(S with bit d = 1))`. Bits count from the most
 * significant bit of the key's first byte. One shape per set, so every server of the zone computes the
 * same root; a change rehashes the nodes on one key's path, about log2(n) + 1 of them.
 */

/** The hash of an empty subtree, and the root of an empty map. */
export const EMPTY_MAP = Buffer.alloc(HASH_BYTES);

/** Most hashes a map proof holds: one per bit of the key. */
export const MAX_MAP_PROOF = 256;

/** The prefix of a checkpoint's extension line that carries its map's root. */
export const MAP_LINE = 'idns-map ';

/** The types of record the map holds (not the zone record, whose leaf ends each checkpoint's tree, nor history entries, which the tree logs). */
export const MAPPED_TYPES = ['handle', 'delegation', 'denial'] as const;

/** A type of record the map holds. */
export type MappedType = (typeof MAPPED_TYPES)[number];

/**
 * The key a record is stored under, from its (verified) payload (docs/protocol.md §3, §4): a handle
 * record's handle, a delegation's child zone, a denial's `after` (the empty string for the first).
 */
export function storedKeyOf(type: MappedType, payload: Record<string, unknown>): string {
  const key = type === 'handle' ? payload.handle : type === 'delegation' ? payload.name : (payload.after ?? '');
  if (typeof key !== 'string') throw new IdnsError('verification_failed', `a ${type} record without the key it is stored under`);
  return key;
}

/** True for a type of record the map holds. */
export function isMapped(type: string): boolean {
  return type === 'handle' || type === 'delegation' || type === 'denial';
}

/** A record's key in the map: SHA-256(utf8(type "\n" key)). */
export function mapKey(type: string, key: string): Buffer {
  return hash('sha256', `${type}\n${key}`, 'buffer') as Buffer;
}

/** A record's value in the map: SHA-256 of its JWS (ASCII). */
export function mapValue(jws: string): Buffer {
  return hash('sha256', jws, 'buffer') as Buffer;
}

/** A map leaf's hash: SHA-256(0x00 || key || value). */
export function mapLeafHash(key: Buffer, value: Buffer): Buffer {
  return leafHash(Buffer.concat([key, value], 2 * HASH_BYTES));
}

/** Bit `depth` of a key (0 is the most significant bit of the first byte). */
export function keyBit(key: Buffer, depth: number): 0 | 1 {
  return ((key[depth >> 3]! >> (7 - (depth & 7))) & 1) as 0 | 1;
}

/**
 * Checks that `key` holds `value` in the map whose root is `root`: `proof` lists the sibling of each node
 * on the key's path, from the leaf up (the empty hash for an empty sibling). Throws verification_failed.
 */
export function verifyMapMembership(key: Buffer, value: Buffer, proof: readonly Buffer[], root: Buffer): void {
  if (proof.length > MAX_MAP_PROOF) throw new IdnsError('verification_failed', `a map proof of ${proof.length} hashes (at most ${MAX_MAP_PROOF})`);
  if (proof.some((sibling) => sibling.length !== HASH_BYTES)) throw new IdnsError('verification_failed', 'a map proof hash that is not 32 bytes');
  if (!mapRootFrom(key, mapLeafHash(key, value), proof).equals(root))
    throw new IdnsError('verification_failed', 'the record is not the one the map of the checkpoint holds: not the zone’s current record');
}

/** The root that a leaf's hash and the siblings on its key's path (from the leaf up) make. */
export function mapRootFrom(key: Buffer, leaf: Buffer, siblings: readonly Buffer[]): Buffer {
  const hashes = mapPathFrom(key, leaf, siblings);
  return hashes[hashes.length - 1]!;
}

/**
 * The hashes of the nodes on a key's path that a leaf's hash and its siblings (from the leaf up) make, from
 * the leaf up: the i-th is the node at depth D − i (D: the number of siblings), the last the root.
 */
export function mapPathFrom(key: Buffer, leaf: Buffer, siblings: readonly Buffer[]): Buffer[] {
  const hashes = [leaf];
  let hash = leaf;
  for (let i = 0; i < siblings.length; i++) {
    hash = keyBit(key, siblings.length - 1 - i) === 1 ? nodeHash(siblings[i]!, hash) : nodeHash(hash, siblings[i]!);
    hashes.push(hash);
  }
  return hashes;
}

/** The map's root a checkpoint states in its extension lines, or null when it states none. Throws for a malformed or repeated line. */
export function mapRootOf(extensions: readonly string[]): Buffer | null {
  let root: Buffer | null = null;
  for (const line of extensions) {
    if (!line.startsWith(MAP_LINE)) continue;
    const text = line.slice(MAP_LINE.length);
    const hash = Buffer.from(text, 'base64');
    if (root !== null || hash.length !== HASH_BYTES || hash.toString('base64') !== text)
      throw new IdnsError('verification_failed', 'a checkpoint’s map line is one base64 hash of 32 bytes, once');
    root = hash;
  }
  return root;
}

/** A node as a store keeps it: its hash, and for a leaf its key (null: an interior node). */
export interface MapNode {
  hash: Buffer;
  key: Buffer | null;
}

/** Where a map's nodes are kept, by path (mapPath); an absent path is an empty subtree. */
export interface MapNodes {
  /** The node at `path`; its hash may be a view of the store's memory, valid until the next put or delete: copy what is kept. */
  get(path: Buffer): MapNode | undefined;
  put(path: Buffer, node: MapNode): void;
  delete(path: Buffer): void;
  /** Writes the changes kept in memory, where a store keeps them until then (ZoneMap.commit calls it). */
  flush?(): void;
}

/** The position of the node at `depth` on a key's path: two bytes of depth, then the key's first `depth` bits (the rest of the last byte zero). */
export function mapPath(key: Buffer, depth: number): Buffer {
  const bytes = (depth + 7) >> 3;
  const path = Buffer.allocUnsafe(2 + bytes);
  path.writeUInt16BE(depth, 0);
  key.copy(path, 2, 0, bytes);
  if (depth & 7) path[1 + bytes] = path[1 + bytes]! & (0xff << (8 - (depth & 7)));
  return path;
}

/** The path of the sibling of the node at `depth` (≥ 1) on a key's path. */
export function siblingPath(key: Buffer, depth: number): Buffer {
  const path = mapPath(key, depth);
  const bit = depth - 1;
  path[2 + (bit >> 3)] = path[2 + (bit >> 3)]! ^ (0x80 >> (bit & 7));
  return path;
}

/** The number of leading bits two different keys share. */
function sharedBits(a: Buffer, b: Buffer): number {
  for (let i = 0; i < HASH_BYTES; i++) {
    const x = a[i]! ^ b[i]!;
    if (x !== 0) return i * 8 + Math.clz32(x) - 24;
  }
  throw new Error('two map leaves with the same key');
}

/**
 * A zone's map kept in `nodes`, changed one record at a time (inside the write transaction that changes the
 * record). A change places its leaf at once and marks the interior nodes above it stale; root() hashes
 * each stale node once, bottom-up, so the changes of one commit share the work near the root.
 */
export class ZoneMap {
  /** Interior nodes whose hash is not computed yet, per depth: a key below each, by the node's place. */
  private stale: Map<number | string, Buffer>[] = [];

  constructor(private readonly nodes: MapNodes) {}

  /** Hashes what the changes left stale and has the nodes written (a store's flush); returns the root. Call before the transaction commits. */
  commit(): Buffer {
    const root = this.root();
    this.nodes.flush?.();
    return root;
  }

  /** The map's root hash (hashing the nodes changes left stale). */
  root(): Buffer {
    for (let depth = this.stale.length - 1; depth >= 0; depth--) {
      for (const key of this.stale[depth]?.values() ?? []) {
        const path = mapPath(key, depth);
        const node = this.nodes.get(path);
        // Removed since, or a leaf that rose to its place: nothing to hash.
        if (node === undefined || node.key !== null) continue;
        const child = this.nodes.get(mapPath(key, depth + 1))?.hash ?? EMPTY_MAP;
        const sibling = this.nodes.get(siblingPath(key, depth + 1))?.hash ?? EMPTY_MAP;
        this.nodes.put(path, { hash: keyBit(key, depth) === 1 ? nodeHash(sibling, child) : nodeHash(child, sibling), key: null });
      }
    }
    this.stale = [];
    // A copy: callers keep the root (the checkpoint's, the store's memory of which map it holds).
    return Buffer.from(this.nodes.get(mapPath(EMPTY_MAP, 0))?.hash ?? EMPTY_MAP);
  }

  /** Sets a key's value (adds the key, or replaces its value). */
  set(key: Buffer, value: Buffer): void {
    const leaf: MapNode = { hash: mapLeafHash(key, value), key };
    for (let depth = 0; ; depth++) {
      const path = mapPath(key, depth);
      const node = this.nodes.get(path);
      if (node !== undefined && node.key === null) continue;
      if (node === undefined || node.key!.equals(key)) {
        this.nodes.put(path, leaf);
        return this.staleAbove(key, depth);
      }
      // Another key's leaf: both go down to where they part, the places from the other leaf's down to
      // theirs become interior nodes (hashed by root()).
      const parted = sharedBits(key, node.key!) + 1;
      // A copy: the node's hash may be a view of its old place, which is written below.
      this.nodes.put(mapPath(node.key!, parted), { hash: Buffer.from(node.hash), key: node.key });
      this.nodes.put(mapPath(key, parted), leaf);
      for (let d = depth; d < parted; d++) this.nodes.put(mapPath(key, d), { hash: EMPTY_MAP, key: null });
      return this.staleAbove(key, parted);
    }
  }

  /** Removes a key; false when the map does not hold it. */
  remove(key: Buffer): boolean {
    let depth = 0;
    for (; ; depth++) {
      const node = this.nodes.get(mapPath(key, depth));
      if (node === undefined || (node.key !== null && !node.key.equals(key))) return false;
      if (node.key !== null) break;
    }
    // A subtree left with one key is that key's leaf: a sibling leaf rises while the other side is empty.
    let top = depth;
    let risen: MapNode | null = null;
    while (top > 0) {
      const sibling = this.nodes.get(siblingPath(key, top));
      if (sibling !== undefined && (risen !== null || sibling.key === null)) break;
      if (sibling !== undefined) {
        // A copy, kept across the deletes.
        risen = { hash: Buffer.from(sibling.hash), key: sibling.key };
        this.nodes.delete(siblingPath(key, top));
      }
      top--;
    }
    for (let d = depth; d > top; d--) this.nodes.delete(mapPath(key, d));
    if (risen !== null) this.nodes.put(mapPath(key, top), risen);
    else this.nodes.delete(mapPath(key, top));
    this.staleAbove(key, top);
    return true;
  }

  /** The siblings on a key's path from its leaf up, when the map holds the key; else null. */
  proof(key: Buffer): Buffer[] | null {
    this.root();
    const siblings: Buffer[] = [];
    for (let depth = 0; ; depth++) {
      const node = this.nodes.get(mapPath(key, depth));
      if (node === undefined) return null;
      if (node.key !== null) return node.key.equals(key) ? siblings.reverse() : null;
      siblings.push(Buffer.from(this.nodes.get(siblingPath(key, depth + 1))?.hash ?? EMPTY_MAP));
    }
  }

  /** Marks the nodes above the one at `depth` on a key's path stale, up to the first that is already (whose own are too). */
  private staleAbove(key: Buffer, depth: number): void {
    for (let d = depth - 1; d >= 0; d--) {
      const level = (this.stale[d] ??= new Map());
      // A place's first d bits as a number while they fit, else its path as a string.
      const place = d <= 30 ? (d === 0 ? 0 : key.readUInt32BE(0) >>> (32 - d)) : mapPath(key, d).toString('latin1');
      if (level.has(place)) return;
      level.set(place, key);
    }
  }
}

/** Bits of a key that choose its bucket in MapEntries (1,024 buckets). */
const BUCKET_BITS = 10;
const BUCKETS = 1 << BUCKET_BITS;
/** Entries of a bucket written (or kept) together: 8 KiB. */
const CHUNK_ENTRIES = 128;

/**
 * A map's keys and values (64 bytes each), gathered to be built into the map bottom-up (`build`). They are
 * kept by the first BUCKET_BITS bits of their keys, in chunks of CHUNK_ENTRIES; with a spill directory,
 * each full chunk goes to a temporary file there (unlinked at once: nothing is left behind by a crash),
 * so that building a map of any size holds one bucket and a partial chunk per bucket in memory (8 MiB),
 * not every entry (132 MB for a million handles and their denials). Without one, the chunks stay in
 * memory. Call `close` when done with it.
 */
export class MapEntries {
  /** Per bucket: its partly filled chunk (allocated at its first entry). */
  private readonly open: (Buffer | undefined)[] = new Array<Buffer | undefined>(BUCKETS);
  private readonly filled = new Uint32Array(BUCKETS);
  /** Per bucket: its full chunks, as file offsets (spilled) or buffers. */
  private readonly full: (number | Buffer)[][] = Array.from({ length: BUCKETS }, () => []);
  private readonly counts = new Float64Array(BUCKETS);
  private fd: number | null = null;
  private written = 0;

  constructor(private readonly spillDir?: string) {}

  /** Adds a key and its value (no key twice). */
  add(key: Buffer, value: Buffer): void {
    const b = key.readUInt16BE(0) >>> (16 - BUCKET_BITS);
    let chunk = this.open[b];
    if (chunk === undefined) chunk = this.open[b] = Buffer.allocUnsafe(CHUNK_ENTRIES * ENTRY_BYTES);
    const at = this.filled[b]! * ENTRY_BYTES;
    key.copy(chunk, at, 0, HASH_BYTES);
    value.copy(chunk, at + HASH_BYTES, 0, HASH_BYTES);
    this.counts[b]! += 1;
    if (++this.filled[b]! < CHUNK_ENTRIES) return;
    this.filled[b] = 0;
    if (this.spillDir === undefined) {
      this.full[b]!.push(chunk);
      this.open[b] = undefined;
      return;
    }
    try {
      if (this.fd === null) {
        const path = join(this.spillDir, `.map-entries-${process.pid}-${randomBytes(6).toString('hex')}`);
        this.fd = openSync(path, 'wx+', 0o600);
        unlinkSync(path);
      }
      if (writeSync(this.fd, chunk, 0, chunk.length, this.written) !== chunk.length)
        throw new IdnsError('internal', 'a short write of map entries to their temporary file');
    } catch (err) {
      throw spillFailure(err, this.spillDir);
    }
    this.full[b]!.push(this.written);
    this.written += chunk.length;
  }

  /**
   * Builds the map of the entries bottom-up and returns its root: one hash per node, about 2 n. `keep`
   * receives every node, each after the nodes below it (a store filled from a transfer or a bulk import).
   * Throws for a key added twice.
   */
  build(keep?: MapNodeSink): Buffer {
    const before = new Float64Array(BUCKETS + 1);
    for (let b = 0; b < BUCKETS; b++) before[b + 1] = before[b]! + this.counts[b]!;
    const prefix = Buffer.alloc(HASH_BYTES);
    // The buckets lo..hi-1 hold the keys below one node at `depth` (≤ BUCKET_BITS): as buildSorted does
    // for entries, a node of one key is its leaf, and a node of buckets splits them by the next bit.
    const up = (lo: number, hi: number, depth: number): Buffer => {
      const n = before[hi]! - before[lo]!;
      if (n === 0) return EMPTY_MAP;
      if (n === 1 || depth === BUCKET_BITS) {
        let b = lo;
        while (this.counts[b] === 0) b++;
        return buildSorted(this.bucket(b), depth, keep);
      }
      const mid = (lo + hi) >> 1;
      const hash = nodeHash(up(lo, mid, depth + 1), up(mid, hi, depth + 1));
      prefix.writeUInt16BE(lo << (16 - BUCKET_BITS), 0);
      keep?.(prefix, 0, depth, hash, false);
      return hash;
    };
    return up(0, BUCKETS, 0);
  }

  /** Lets go of the temporary file (the entries cannot be built after). */
  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  /** A bucket's entries, sorted by key. */
  private bucket(b: number): Buffer {
    const packed = Buffer.allocUnsafe(this.counts[b]! * ENTRY_BYTES);
    let at = 0;
    for (const chunk of this.full[b]!) {
      if (typeof chunk !== 'number') at += chunk.copy(packed, at);
      else if (readSync(this.fd!, packed, at, CHUNK_ENTRIES * ENTRY_BYTES, chunk) === CHUNK_ENTRIES * ENTRY_BYTES) at += CHUNK_ENTRIES * ENTRY_BYTES;
      else throw new IdnsError('internal', 'a short read of map entries from their temporary file');
    }
    if (this.filled[b]! > 0) at += this.open[b]!.copy(packed, at, 0, this.filled[b]! * ENTRY_BYTES);
    sortEntries(packed);
    return packed;
  }
}

/** File system errors that mean no room: a full disk, a quota, a file size limit. */
const NO_ROOM = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/** The error to throw for a spill that failed: storage_full when the file system has no room for it (as for the database). */
function spillFailure(err: unknown, dir: string): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && NO_ROOM.has(code))
    return new IdnsError('storage_full', `no room for the map's entries in a temporary file in ${dir} (${code}); nothing was changed`, { cause: err });
  return err;
}

/** Sorts packed entries by key where they are (no second buffer of them). */
function sortEntries(packed: Buffer): void {
  const n = packed.length / ENTRY_BYTES;
  const order = new Uint32Array(n);
  // Keys compared by their first four bytes as numbers, the rest only on a tie (one in about 2^32 / n):
  // Buffer.compare with offsets costs a call into the runtime each, ten times a number comparison.
  const head = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    order[i] = i;
    head[i] = packed.readUInt32BE(i * ENTRY_BYTES);
  }
  order.sort(
    (a, b) =>
      head[a]! - head[b]! || packed.compare(packed, b * ENTRY_BYTES + 4, b * ENTRY_BYTES + HASH_BYTES, a * ENTRY_BYTES + 4, a * ENTRY_BYTES + HASH_BYTES),
  );
  // Place i takes entry order[i]: each cycle of the permutation is followed once, its first entry held
  // aside; a place done is marked by order[j] = j.
  const held = Buffer.allocUnsafe(ENTRY_BYTES);
  for (let i = 0; i < n; i++) {
    if (order[i] === i) continue;
    packed.copy(held, 0, i * ENTRY_BYTES, (i + 1) * ENTRY_BYTES);
    let j = i;
    for (;;) {
      const k = order[j]!;
      order[j] = j;
      if (k === i) {
        held.copy(packed, j * ENTRY_BYTES);
        break;
      }
      packed.copy(packed, j * ENTRY_BYTES, k * ENTRY_BYTES, (k + 1) * ENTRY_BYTES);
      j = k;
    }
  }
}

const ENTRY_BYTES = 2 * HASH_BYTES;

/**
 * The root of the subtree at `depth` of `packed` entries (sorted by key, no key twice, sharing their
 * first `depth` bits), built bottom-up; `keep` receives every node, each after the nodes below it.
 */
function buildSorted(packed: Buffer, depth: number, keep?: MapNodeSink): Buffer {
  const n = packed.length / ENTRY_BYTES;
  for (let i = 1; i < n; i++) {
    if (packed.compare(packed, i * ENTRY_BYTES, i * ENTRY_BYTES + HASH_BYTES, (i - 1) * ENTRY_BYTES, (i - 1) * ENTRY_BYTES + HASH_BYTES) >= 0)
      throw new Error('map entries are not sorted by key, each once');
  }
  const build = (lo: number, hi: number, depth: number): Buffer => {
    if (hi === lo) return EMPTY_MAP;
    if (hi - lo === 1) {
      const hash = leafHashOf(packed, lo * ENTRY_BYTES, (lo + 1) * ENTRY_BYTES);
      keep?.(packed, lo * ENTRY_BYTES, depth, hash, true);
      return hash;
    }
    // The first entry whose bit `depth` is 1 (they are sorted, and share the bits above).
    const byte = depth >> 3;
    const mask = 0x80 >> (depth & 7);
    let a = lo;
    let b = hi;
    while (a < b) {
      const m = (a + b) >> 1;
      if ((packed[m * ENTRY_BYTES + byte]! & mask) !== 0) b = m;
      else a = m + 1;
    }
    const hash = nodeHash(build(lo, a, depth + 1), build(a, hi, depth + 1));
    keep?.(packed, lo * ENTRY_BYTES, depth, hash, false);
    return hash;
  };
  return build(0, n, depth);
}

/**
 * Takes the nodes of a map as it is built (MapEntries.build), each after the nodes below it: the node at
 * `depth` whose path is the first `depth` bits of `bits` from byte `at`, its hash, and whether it is a
 * leaf, whose key is then the 32 bytes at `at`. `bits` is the builder's memory, valid during the call
 * only: what is kept is copied. Offsets rather than views: a million records' map is about 2.5 million
 * nodes, and a view or a path allocated for each was a good part of a build's time.
 */
export type MapNodeSink = (bits: Buffer, at: number, depth: number, hash: Buffer, leaf: boolean) => void;

/** A MapNodeSink handing each node as a path (mapPath) and a MapNode of its own (for tests and stores of nodes by path). */
export function byPath(keep: (path: Buffer, node: MapNode) => void): MapNodeSink {
  return (bits, at, depth, hash, leaf) => {
    const key = bits.subarray(at, at + HASH_BYTES);
    keep(mapPath(key, depth), { hash, key: leaf ? Buffer.from(key) : null });
  };
}
