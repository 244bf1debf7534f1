/**
 * One shared, frozen copy per distinct array of plain records, so that equal arrays kept by many cache
 * entries cost memory once. The resolver interns two kinds:
 * - proof chains: every handle of a zone is proven by the same zone records and delegations (~3 KiB),
 *   and each reply brings its own copy of them;
 * - traces: which server answered for which zone, in how many (whole) milliseconds, recur too.
 * Arrays are told apart by their exact JSON, so a shared array serialises to the same bytes as the one
 * it replaces. Only what the caller has verified is interned (verifyProof keeps only the members it
 * checked); frozen, no holder can change what the others see.
 */
export class ArrayInterner<T extends object> {
  private readonly arrays = new Map<string, readonly T[]>();
  /** Characters of JSON held as keys (about the size of the arrays themselves, which are held besides). */
  private chars = 0;

  /**
   * `max` distinct arrays remembered, `maxChars` characters of them together (a zone's server can make
   * its records big); the oldest go first (an entry keeps its copy all the same). An array longer than
   * `maxOneChars` is frozen but not remembered.
   */
  constructor(
    private readonly max = 1024,
    private readonly maxChars = 8 * 1024 * 1024,
    private readonly maxOneChars = Infinity,
  ) {}

  /** The shared array equal to `items` (made and remembered from them when new). */
  intern(items: readonly T[]): readonly T[] {
    const key = JSON.stringify(items);
    const known = this.arrays.get(key);
    if (known !== undefined) return known;
    const shared = Object.freeze(items.map((item) => Object.freeze({ ...item })));
    if (key.length > Math.min(this.maxOneChars, this.maxChars)) return shared;
    while (this.arrays.size >= this.max || this.chars + key.length > this.maxChars) {
      const oldest = this.arrays.keys().next().value as string;
      this.arrays.delete(oldest);
      this.chars -= oldest.length;
    }
    this.arrays.set(key, shared);
    this.chars += key.length;
    return shared;
  }

  /** Number of distinct arrays held. */
  get size(): number {
    return this.arrays.size;
  }
}
