import { fnv1a } from '../../records/encoding.js';

/** Slots of the table: a power of two, 256 KiB. */
const SLOTS = 65_536;

/**
 * Whether a key was asked for among the last `window` keys marked, in a fixed table (no allocation per
 * key). Each slot holds the generation it was marked in and 16 more bits of the key's hash, so that two
 * keys sharing a slot are taken for one only when their whole 32-bit hashes agree (about once in 65,536
 * such meetings): a slot alone mistook ~8% of keys never asked before for repeats, and each mistake kept
 * an answer that would never be asked for again (old-generation garbage, major collections every second
 * under random queries over a large zone).
 */
export class RecentlyAsked {
  private readonly marks = new Uint32Array(SLOTS);
  private generation = 1;
  private marked = 0;

  constructor(private readonly window: number) {
    if (!(window >= 1 && window <= SLOTS)) throw new Error(`window must be within 1..${SLOTS}`);
  }

  /** Marks the key; true if it was marked within the window already (and a hash collision, rarely). */
  ask(key: string): boolean {
    const h = fnv1a(key);
    const slot = h & (SLOTS - 1);
    const mark = ((this.generation << 16) | (h >>> 16)) >>> 0;
    if (this.marks[slot] === mark) return true;
    this.marks[slot] = mark;
    if (++this.marked >= this.window) this.nextGeneration();
    return false;
  }

  private nextGeneration(): void {
    this.marked = 0;
    this.generation = (this.generation + 1) & 0xffff;
    if (this.generation === 0) {
      // Marks of 65,535 generations ago would read as current: start again.
      this.marks.fill(0);
      this.generation = 1;
    }
  }
}
