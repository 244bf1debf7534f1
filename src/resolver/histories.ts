import type { NumberedEntry, VerifiedHistory } from '../records/history-chain.js';
import type { KnownHistories } from './proof.js';

/** What the book holds of one handle: where its verification stands, and the entries up to there. */
export interface KnownHistory {
  point: VerifiedHistory;
  entries: readonly NumberedEntry[];
}

/**
 * A resolver's book of the handles' histories it has verified (docs/protocol.md §6.5): for each, the
 * point reached (entry number and id, state, genesis) and the entries up to it (whole or compact). A later answer for the
 * handle is checked from that point on, one signature per new change; its proof is made from the entries
 * kept and the new ones the answer carries. It outlives the cached answers (a record's TTL is short, a
 * history's prefix never changes), bounded by handles and characters: the least recently used go first.
 */
export class HistoryBook implements KnownHistories {
  private readonly map = new Map<string, KnownHistory & { chars: number }>();
  private chars = 0;

  constructor(
    private readonly maxHandles: number,
    private readonly maxChars: number,
  ) {}

  /** What is known of a handle's history in a zone, or undefined. */
  get(zone: string, handle: string): KnownHistory | undefined {
    return this.map.get(keyOf(zone, handle));
  }

  point(zone: string, handle: string): VerifiedHistory | undefined {
    return this.get(zone, handle)?.point;
  }

  /** Keeps a verified history, unless an older point of it than one already kept (an answer from a server that lags). */
  verified(zone: string, point: VerifiedHistory, entries: readonly NumberedEntry[]): void {
    const key = keyOf(zone, point.handle);
    const held = this.map.get(key);
    if (held !== undefined) {
      if (held.point.seq > point.seq) return;
      this.map.delete(key);
      this.chars -= held.chars;
    }
    let chars = 0;
    for (const e of entries) chars += e[1].length;
    if (chars > this.maxChars) return;
    this.map.set(key, { point, entries, chars });
    this.chars += chars;
    while (this.map.size > this.maxHandles || this.chars > this.maxChars) {
      const [oldest, value] = this.map.entries().next().value as [string, KnownHistory & { chars: number }];
      this.map.delete(oldest);
      this.chars -= value.chars;
    }
  }

  /** Handles held, and the characters of their entries. */
  get size(): { handles: number; chars: number } {
    return { handles: this.map.size, chars: this.chars };
  }
}

function keyOf(zone: string, handle: string): string {
  return `${zone} ${handle}`;
}
