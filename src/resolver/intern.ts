/**
 * One shared, frozen copy per distinct array of plain records, so that equal arrays kept by many cache
 * entries cost memory once. The resolver interns two kinds:
 * - proof chains: every handle of a zone is proven by the same zone records and delegations (~3 KiB),
 *   and each reply brings its own copy of them;
 * - traces: which server answered for which zone, in how many (whole) milliseconds, recur too.
 * Arrays are told apart by their exact JSON, so a shared array serialises to the same bytes as the one
 * it replaces (members a forwarding resolver's upstream added included). Only what the caller has
 * verified is interned; frozen, no holder can change what the others see.
 */
export class ArrayInterner<T extends object> {
  private readonly arrays = new Map<string, readonly T[]>();

  /** `max` distinct arrays remembered; the oldest go first (an entry keeps its copy all the same). */
  constructor(private readonly max = 1024) {}

  /** The shared array equal to `items` (made and remembered from them when new). */
  intern(items: readonly T[]): readonly T[] {
    const key = JSON.stringify(items);
    const known = this.arrays.get(key);
    if (known !== undefined) return known;
    if (this.arrays.size >= this.max) this.arrays.delete(this.arrays.keys().next().value as string);
    const shared = Object.freeze(items.map((item) => Object.freeze({ ...item })));
    this.arrays.set(key, shared);
    return shared;
  }

  /** Number of distinct arrays held. */
  get size(): number {
    return this.arrays.size;
  }
}
