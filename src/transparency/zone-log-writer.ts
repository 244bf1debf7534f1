import type { LogStore } from '../store/log-nodes.js';
import { MerkleFrontier, type SubtreeHashes } from './merkle.js';

/**
 * The log of one content id being appended to inside a write transaction: the frontier (the tree's right
 * edge) in memory, the completed subtrees stored as they complete.
 */
export class ZoneLog {
  private constructor(
    private readonly logs: LogStore,
    private readonly content: string,
    private readonly frontier: MerkleFrontier,
  ) {}

  /** The log of `content` at `size` leaves (read from the stored subtrees: O(log n) reads). */
  static at(logs: LogStore, content: string, size: number): ZoneLog {
    return new ZoneLog(logs, content, size === 0 ? new MerkleFrontier() : MerkleFrontier.of(logs.subtrees(content), size));
  }

  /** Appends a leaf hash and stores what it completes; returns the leaf's index. */
  append(leafHash: Buffer): number {
    const index = this.frontier.size;
    this.logs.keep(this.content, this.frontier.append(leafHash));
    return index;
  }

  /** Leaves appended so far. */
  get size(): number {
    return this.frontier.size;
  }

  /** The tree's root (MTH) as it is. */
  root(): Buffer {
    return this.frontier.root();
  }

  /** The stored subtrees, for proofs. */
  subtrees(): SubtreeHashes {
    return this.logs.subtrees(this.content);
  }
}
