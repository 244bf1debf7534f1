import type { NumberedEntry, VerifiedHistory } from '../records/history-chain.js';
import type { RecordPacker } from './packed-records.js';
import type { KnownHistories } from './proof.js';

/**
 * What the book keeps of one handle, in one object: the point its verification reached (this object is
 * that point), the zone it was verified in, and the entries up to there (whole or compact), packed.
 */
export interface KnownHistory extends VerifiedHistory {
  zone: string;
  /** The entries as one packed string (RecordPacker.packHistory). */
  packed: string;
}

/**
 * A resolver's book of the handles' histories it has verified (docs/protocol.md §6.5): for each, the
 * point reached (entry number and id, state, genesis) and the entries up to it (whole or compact). A later answer for the
 * handle is checked from that point on, one signature per new change; its proof is made from the entries
 * kept and the new ones the answer carries. It outlives the cached answers (a record's TTL is short, a
 * history's prefix never changes), bounded by handles and characters: the least recently used go first.
 *
 * Memory (bench target 8): a resolver keeps a point for every handle it has cached, so each costs one
 * map entry and one object. The map is keyed by the handle alone, with the point's own `handle` string
 * (the resolver passes its cache key), not by a string made of zone and handle; the entries are packed
 * into the same string the cached answer's proof holds (the packer gives one string for one array). A handle is answered for by one zone at a time: a point verified
 * in another zone (a delegation changed) replaces the one kept.
 */
export class HistoryBook implements KnownHistories {
  private readonly map = new Map<string, KnownHistory>();
  private chars = 0;

  constructor(
    private readonly maxHandles: number,
    private readonly maxChars: number,
    private readonly packer: RecordPacker,
  ) {}

  /** What is known of a handle's history in a zone, or undefined. */
  get(zone: string, handle: string): KnownHistory | undefined {
    const kept = this.map.get(handle);
    return kept !== undefined && kept.zone === zone ? kept : undefined;
  }

  point(zone: string, handle: string): VerifiedHistory | undefined {
    return this.get(zone, handle);
  }

  /** The entries kept for a handle in a zone, unpacked, or undefined. */
  entries(zone: string, handle: string): NumberedEntry[] | undefined {
    const kept = this.get(zone, handle);
    return kept === undefined ? undefined : this.packer.unpackHistory(kept.packed);
  }

  /** Keeps a verified history, unless an older point of it than one already kept (an answer from a server that lags). */
  verified(zone: string, point: VerifiedHistory, entries: readonly NumberedEntry[]): void {
    const key = point.handle;
    const held = this.map.get(key);
    if (held !== undefined) {
      if (held.zone === zone && held.seq > point.seq) return;
      this.map.delete(key);
      this.chars -= held.packed.length;
    }
    const packed = this.packer.packHistory(entries);
    if (packed.length > this.maxChars) return;
    this.map.set(key, kept(zone, point, packed));
    this.chars += packed.length;
    while (this.map.size > this.maxHandles || this.chars > this.maxChars) {
      const oldest = this.map.values().next().value as KnownHistory;
      this.map.delete(oldest.handle);
      this.chars -= oldest.packed.length;
    }
  }

  /** Handles held, and the characters of their packed entries. */
  get size(): { handles: number; chars: number } {
    return { handles: this.map.size, chars: this.chars };
  }
}

/**
 * The object kept: one literal of every member, so that every kept point has one shape with its members
 * in the object itself (a spread of the point made a second, out-of-object array of them).
 */
function kept(zone: string, p: VerifiedHistory, packed: string): KnownHistory {
  return {
    handle: p.handle,
    seq: p.seq,
    op: p.op,
    genesis: p.genesis,
    state: p.state,
    operatorAsserted: p.operatorAsserted,
    legacyOp: p.legacyOp,
    latestIat: p.latestIat,
    recoverable: p.recoverable,
    recoveries: p.recoveries,
    zone,
    packed,
  };
}
