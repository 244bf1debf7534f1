import { IdnsError } from '../errors.js';
import { writeBase64 } from '../records/encoding.js';
import { HASH_BYTES, inclusionProof, nodeHash, peaksOf, type SubtreeHashes } from './merkle.js';

/**
 * A Merkle tree's complete subtrees held in memory, level by level (about 64 bytes a leaf), so that an
 * inclusion proof is a few lookups instead of reads: the read path's answers bound to a zone's log
 * (docs/protocol.md §13.5) carry one each. Grown by appending leaf hashes in order; a proof for any size
 * up to the tree's own.
 */
export class MemoryTree {
  /** Per level (0: the leaves' hashes), its complete subtrees' hashes, HASH_BYTES each, with room to grow. */
  private readonly levels: Buffer[] = [];
  private readonly counts: number[] = [];
  /** The split of the tree size asked last, with the proof suffixes of its peaks as made (see inclusion). */
  private peaks: { size: number; peaks: Peak[] } | null = null;
  /** Per level from ENCODED_FROM: the base64 of its nodes as encoded so far (inclusionBase64), and which are. */
  private readonly encoded: ({ text: Buffer; known: Uint8Array } | undefined)[] = [];

  /** Leaves appended. */
  get size(): number {
    return this.counts[0] ?? 0;
  }

  /** Bytes held. */
  get bytes(): number {
    let n = 0;
    for (const level of this.levels) n += level.length;
    for (const e of this.encoded) if (e !== undefined) n += e.text.length + e.known.length;
    return n;
  }

  /** Appends a leaf hash, and the subtrees it completes. */
  append(leaf: Buffer): void {
    let hash = leaf;
    for (let level = 0; ; level++) {
      const at = this.push(level, hash);
      // An even count: the node just added completes its parent.
      if (at % 2 === 0) return;
      const nodes = this.levels[level]!;
      hash = nodeHash(nodes.subarray((at - 1) * HASH_BYTES, at * HASH_BYTES), nodes.subarray(at * HASH_BYTES, (at + 1) * HASH_BYTES));
    }
  }

  /** The tree's complete subtrees, for merkle.ts; the hash is a view of the tree's memory, not a copy. */
  readonly subtree: SubtreeHashes = (level, index) => {
    const count = this.counts[level] ?? 0;
    if (!(index >= 0 && index < count))
      throw new IdnsError('internal', `no complete subtree at level ${level}, index ${index} in a tree of ${this.size} leaves`);
    return this.levels[level]!.subarray(index * HASH_BYTES, (index + 1) * HASH_BYTES);
  };

  /**
   * merkle.ts `inclusionProof(this.subtree, index, size)`, without its recursion: the proof of a leaf is
   * its siblings inside the largest complete subtree of the size's split that holds it (looked up), then
   * a suffix that every leaf of that subtree shares, made once per size. The hashes are views of the
   * tree's memory.
   */
  inclusion(index: number, size: number): Buffer[] {
    const peak = this.peakOf(index, size);
    const path = new Array<Buffer>(peak.level);
    let at = index;
    for (let level = 0; level < peak.level; level++) {
      path[level] = this.subtree(level, at % 2 === 0 ? at + 1 : at - 1);
      at = Math.floor(at / 2);
    }
    return path.concat(peak.suffix!);
  }

  /**
   * inclusion(), its hashes as base64 one after the other (44 bytes each), as a proof is served. Nodes of
   * the levels from ENCODED_FROM up, which many leaves' proofs share, are encoded once and kept (about a
   * 32nd of the nodes), and so is each peak's suffix.
   */
  inclusionBase64(index: number, size: number): Buffer {
    const peak = this.peakOf(index, size);
    peak.suffixBase64 ??= hashesBase64(peak.suffix!);
    const out = Buffer.allocUnsafe(peak.level * BASE64_HASH + peak.suffixBase64.length);
    let at = 0;
    let i = index;
    for (let level = 0; level < peak.level; level++) {
      at = this.writeNode(level, i % 2 === 0 ? i + 1 : i - 1, out, at);
      i = Math.floor(i / 2);
    }
    peak.suffixBase64.copy(out, at);
    return out;
  }

  /** The peak of the size's split that holds leaf `index`, its suffix made; refuses as merkle.ts does. */
  private peakOf(index: number, size: number): Peak {
    if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size) && index >= 0 && index < size && size <= this.size)) {
      // What merkle.ts refuses (or, past the tree, what it cannot read): the same errors.
      inclusionProof(this.subtree, index, size);
      throw new IdnsError('internal', `leaf ${index} of a tree of ${size} leaves is past the ${this.size} held`);
    }
    if (this.peaks?.size !== size) this.peaks = { size, peaks: peaksOf(size).map((p) => ({ ...p, suffix: null, suffixBase64: null })) };
    let peak = this.peaks.peaks[0]!;
    for (const p of this.peaks.peaks) if (p.start <= index) peak = p;
    peak.suffix ??= inclusionProof(this.subtree, peak.start, size).slice(peak.level);
    return peak;
  }

  /** Writes a complete subtree's hash in base64 at `at`; returns the offset after it. */
  private writeNode(level: number, index: number, out: Buffer, at: number): number {
    const nodes = this.levels[level]!;
    if (!(index >= 0 && index < this.counts[level]!)) throw new IdnsError('internal', `no complete subtree at level ${level}, index ${index}`);
    if (level < ENCODED_FROM) return writeBase64(nodes, out, at, index * HASH_BYTES, (index + 1) * HASH_BYTES);
    let encoded = this.encoded[level];
    if (encoded === undefined || encoded.text.length < (index + 1) * BASE64_HASH) {
      // Room for every node the level has room for, what was encoded kept.
      const grown = { text: Buffer.allocUnsafeSlow((nodes.length / HASH_BYTES) * BASE64_HASH), known: new Uint8Array(nodes.length / HASH_BYTES) };
      if (encoded !== undefined) {
        encoded.text.copy(grown.text);
        grown.known.set(encoded.known);
      }
      this.encoded[level] = encoded = grown;
    }
    if (encoded.known[index] === 0) {
      writeBase64(nodes, encoded.text, index * BASE64_HASH, index * HASH_BYTES, (index + 1) * HASH_BYTES);
      encoded.known[index] = 1;
    }
    return at + encoded.text.copy(out, at, index * BASE64_HASH, (index + 1) * BASE64_HASH);
  }

  /** Adds a node at the end of a level; returns its index. */
  private push(level: number, hash: Buffer): number {
    if (this.levels.length === level) {
      this.levels.push(Buffer.allocUnsafeSlow(HASH_BYTES * 1024));
      this.counts.push(0);
    }
    const at = this.counts[level]!;
    let nodes = this.levels[level]!;
    if ((at + 1) * HASH_BYTES > nodes.length) {
      const grown = Buffer.allocUnsafeSlow(nodes.length * 2);
      nodes.copy(grown);
      this.levels[level] = nodes = grown;
    }
    hash.copy(nodes, at * HASH_BYTES);
    this.counts[level] = at + 1;
    return at;
  }
}

/** One complete subtree of a tree's split, and the proof suffix its leaves share (made when first asked). */
interface Peak {
  start: number;
  level: number;
  suffix: Buffer[] | null;
  suffixBase64: Buffer | null;
}

/** Levels whose nodes' base64 is kept once encoded: a node of level 6 is in the proofs of 64 leaves. */
const ENCODED_FROM = 6;
/** A hash in base64, padded. */
export const BASE64_HASH = 4 * Math.ceil(HASH_BYTES / 3);

/** Hashes as base64 one after the other (BASE64_HASH bytes each), as inclusionBase64 gives them. */
export function hashesBase64(hashes: readonly Buffer[]): Buffer {
  const out = Buffer.allocUnsafe(hashes.length * BASE64_HASH);
  let at = 0;
  for (const h of hashes) at = writeBase64(h, out, at);
  return out;
}
