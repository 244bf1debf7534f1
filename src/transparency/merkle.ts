import { createHash, hash } from 'node:crypto';
import { IdnsError } from '../errors.js';

/**
 * The Merkle tree hash of RFC 9162 §2.1 (the hashing of Certificate Transparency and of C2SP's
 * tlog-checkpoint): SHA-256, leaves prefixed with 0x00, interior nodes with 0x01. A zone's log
 * (docs/protocol.md, witnessed zones) is such a tree over its changes. Hashes are 32-byte Buffers.
 */
export const HASH_BYTES = 32;

/** Most hashes a proof may hold: a tree of at most 2^63 leaves needs at most 63 (consistency: 63 + 1). */
export const MAX_PROOF_HASHES = 64;

/** The hash of a leaf: SHA-256(0x00 || leaf). */
export function leafHash(leaf: Buffer): Buffer {
  return leafHashOf(leaf, 0, leaf.length);
}

/** leafHash of the bytes `bytes[start, end)`. */
export function leafHashOf(bytes: Buffer, start: number, end: number): Buffer {
  // One-shot hashing of one buffer: a hash object per call costs about as much again as the hashing.
  const length = end - start;
  const input = length === 2 * HASH_BYTES ? SCRATCH_65 : length < SCRATCH.length ? SCRATCH.subarray(0, length + 1) : Buffer.allocUnsafe(length + 1);
  input[0] = 0;
  bytes.copy(input, 1, start, end);
  return hash('sha256', input, 'buffer') as Buffer;
}

/** The hash of an interior node: SHA-256(0x01 || left || right). */
export function nodeHash(left: Buffer, right: Buffer): Buffer {
  const input = left.length + right.length === 2 * HASH_BYTES ? SCRATCH_65 : SCRATCH.subarray(0, 1 + left.length + right.length);
  input[0] = 1;
  left.copy(input, 1);
  right.copy(input, 1 + left.length);
  return hash('sha256', input, 'buffer') as Buffer;
}

/** Where a leaf or node is laid out before it is hashed (hashing is synchronous: never shared by two calls at once). */
const SCRATCH = Buffer.alloc(256);
/** Its first 65 bytes: the input of every interior node and map leaf (a view made once, not per hash). */
const SCRATCH_65 = SCRATCH.subarray(0, 1 + 2 * HASH_BYTES);

/** The root of the empty tree: SHA-256 of nothing. */
export const EMPTY_ROOT = createHash('sha256').digest();

/** True for 1, 2, 4, …: exact for every safe integer (bitwise operators stop at 2^31). */
function isPowerOfTwo(n: number): boolean {
  return n >= 1 && 2 ** Math.round(Math.log2(n)) === n;
}

/** The complete subtrees a tree of `size` leaves splits into (RFC 9162's recursion), largest (leftmost) first: its frontier. */
export function peaksOf(size: number): { start: number; level: number }[] {
  const peaks = [];
  let start = 0;
  for (let level = 52; level >= 0; level--) {
    const n = 2 ** level;
    if (size - start >= n) {
      peaks.push({ start, level });
      start += n;
    }
  }
  return peaks;
}

/** The largest power of two smaller than n (n ≥ 2): where RFC 9162 splits a tree of n leaves. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The tree's hashes, as a store keeps them: the root of each complete subtree aligned to its size, by
 * `level` (its height: 0 for a leaf's hash) and `index` (the subtree covers leaves index·2^level …
 * (index + 1)·2^level − 1). From these every proof and every root is computed in O(log n) reads.
 */
export type SubtreeHashes = (level: number, index: number) => Buffer;

/**
 * MTH(D[start:end]) (RFC 9162 §2.1.1) from the aligned complete subtrees: `start` must be a multiple of
 * the largest power of two not above end − start, as every range of the RFC's recursion is.
 */
export function rangeHash(subtree: SubtreeHashes, start: number, end: number): Buffer {
  const n = end - start;
  if (n <= 0) throw new IdnsError('internal', `an empty range of leaves (${start} … ${end}) has no subtree hash`);
  if (isPowerOfTwo(n) && start % n === 0) return subtree(Math.log2(n), start / n);
  const k = splitPoint(n);
  return nodeHash(rangeHash(subtree, start, start + k), rangeHash(subtree, start + k, end));
}

/** The root of a tree of `size` leaves (MTH, RFC 9162 §2.1.1). */
export function treeRoot(subtree: SubtreeHashes, size: number): Buffer {
  return size === 0 ? EMPTY_ROOT : rangeHash(subtree, 0, size);
}

/** The inclusion proof of leaf `index` in the tree of `size` leaves (PATH, RFC 9162 §2.1.3.1), from the leaf up. */
export function inclusionProof(subtree: SubtreeHashes, index: number, size: number): Buffer[] {
  if (!(index >= 0 && index < size)) throw new IdnsError('invalid_request', `leaf ${index} is not in a tree of ${size} leaves`);
  const path: Buffer[] = [];
  const walk = (m: number, start: number, end: number): void => {
    if (end - start === 1) return;
    const k = splitPoint(end - start);
    if (m < k) {
      walk(m, start, start + k);
      path.push(rangeHash(subtree, start + k, end));
    } else {
      walk(m - k, start + k, end);
      path.push(rangeHash(subtree, start, start + k));
    }
  };
  walk(index, 0, size);
  return path;
}

/** The consistency proof from the tree of `from` leaves to the tree of `to` (PROOF, RFC 9162 §2.1.4.1). */
export function consistencyProof(subtree: SubtreeHashes, from: number, to: number): Buffer[] {
  if (!(from >= 0 && from <= to)) throw new IdnsError('invalid_request', `no consistency proof from a tree of ${from} leaves to one of ${to}`);
  const proof: Buffer[] = [];
  if (from === 0 || from === to) return proof;
  const sub = (m: number, start: number, end: number, whole: boolean): void => {
    if (m === end - start) {
      if (!whole) proof.push(rangeHash(subtree, start, end));
      return;
    }
    const k = splitPoint(end - start);
    if (m <= k) {
      sub(m, start, start + k, whole);
      proof.push(rangeHash(subtree, start + k, end));
    } else {
      sub(m - k, start + k, end, false);
      proof.push(rangeHash(subtree, start, start + k));
    }
  };
  sub(from, 0, to, true);
  return proof;
}

/**
 * Checks an inclusion proof (RFC 9162 §2.1.3.2): that `leaf` (a leaf hash) is leaf `index` of the tree of
 * `size` leaves whose root is `root`. Throws verification_failed otherwise.
 */
export function verifyInclusion(leaf: Buffer, index: number, size: number, proof: readonly Buffer[], root: Buffer): void {
  if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size)) {
    throw fail(`leaf ${index} is not in a tree of ${size} leaves`);
  }
  if (proof.length > MAX_PROOF_HASHES) throw fail('an inclusion proof of more hashes than any tree needs');
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) throw fail('an inclusion proof longer than its tree needs');
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      // RFC 9162: if LSB(fn) is not set, shift both until it is, or fn is 0.
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw fail('an inclusion proof shorter than its tree needs');
  if (!r.equals(root)) throw fail(`leaf ${index} is not in the tree of ${size} leaves with that root`);
}

/**
 * Checks a consistency proof (RFC 9162 §2.1.4.2): that the tree of `from` leaves with root `fromRoot` is
 * a prefix of the tree of `to` leaves with root `toRoot`. Throws verification_failed otherwise.
 */
export function verifyConsistency(from: number, to: number, proof: readonly Buffer[], fromRoot: Buffer, toRoot: Buffer): void {
  if (!(Number.isSafeInteger(from) && Number.isSafeInteger(to) && from >= 0 && from <= to)) {
    throw fail(`no consistency from a tree of ${from} leaves to one of ${to}`);
  }
  if (proof.length > MAX_PROOF_HASHES) throw fail('a consistency proof of more hashes than any tree needs');
  if (from === to) {
    if (proof.length !== 0 || !fromRoot.equals(toRoot)) throw fail(`two trees of ${from} leaves with different roots`);
    return;
  }
  if (from === 0) {
    // Every tree extends the empty one; its root is fixed.
    if (proof.length !== 0 || !fromRoot.equals(EMPTY_ROOT)) throw fail('an empty tree with a root other than the empty one');
    return;
  }
  if (proof.length === 0) throw fail('an empty consistency proof between trees of different sizes');
  const path = [...proof];
  // A first tree that is a complete subtree of the second is its own first proof node.
  if (isPowerOfTwo(from)) path.unshift(fromRoot);
  let fn = from - 1;
  let sn = to - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) throw fail('a consistency proof longer than its trees need');
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      // RFC 9162: if LSB(fn) is not set, shift both until it is, or fn is 0.
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw fail('a consistency proof shorter than its trees need');
  if (!fr.equals(fromRoot) || !sr.equals(toRoot)) throw fail(`the tree of ${from} leaves is not a prefix of the tree of ${to} with that root`);
}

/**
 * The right edge of a growing tree (its complete subtrees' roots, largest first): enough to append a leaf
 * in O(log n) and give the root, never the whole tree. Each append returns the complete subtrees it
 * completes, which a store keeps for proofs (SubtreeHashes).
 */
export class MerkleFrontier {
  private readonly peaks: { level: number; hash: Buffer }[] = [];

  constructor(private count = 0) {}

  /** The frontier of a tree of `size` leaves, from its stored subtree hashes. */
  static of(subtree: SubtreeHashes, size: number): MerkleFrontier {
    const f = new MerkleFrontier(size);
    for (const { start, level } of peaksOf(size)) f.peaks.push({ level, hash: subtree(level, start / 2 ** level) });
    return f;
  }

  /** Leaves appended so far. */
  get size(): number {
    return this.count;
  }

  /** Appends a leaf hash; returns the complete subtrees it completes (the leaf itself first), as (level, index, hash). */
  append(leaf: Buffer): { level: number; index: number; hash: Buffer }[] {
    const made = [{ level: 0, index: this.count, hash: leaf }];
    let node = { level: 0, hash: leaf };
    while (this.peaks.length > 0 && this.peaks.at(-1)!.level === node.level) {
      const left = this.peaks.pop()!;
      node = { level: node.level + 1, hash: nodeHash(left.hash, node.hash) };
      made.push({ level: node.level, index: Math.floor(this.count / 2 ** node.level), hash: node.hash });
    }
    this.peaks.push(node);
    this.count++;
    return made;
  }

  /** The root of the tree as it is (MTH). */
  root(): Buffer {
    if (this.peaks.length === 0) return EMPTY_ROOT;
    let root = this.peaks.at(-1)!.hash;
    for (let i = this.peaks.length - 2; i >= 0; i--) root = nodeHash(this.peaks[i]!.hash, root);
    return root;
  }
}

function fail(why: string): IdnsError {
  return new IdnsError('verification_failed', why);
}
