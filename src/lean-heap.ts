import { setFlagsFromString } from 'node:v8';

/**
 * V8 lets the old generation grow to up to four times what survived the last full collection before it
 * collects again. While a full transfer loads, most of a secondary's heap is garbage of that kind (the
 * records it parsed and stored: a live heap of ~20 MB under a committed heap of 150 MB): its peak RSS
 * for a million handles was 340-365 MB, 270-285 MB with growth held to half again. Reads are left
 * alone (their few survivors would only bring more full collections). V8 reads the flag at each
 * collection, so setting it while running takes effect; 0 is V8's own choice.
 */
const LEAN = '--heap-growing-percent=50';
const DEFAULT = '--heap-growing-percent=0';

/** Holders of the lean policy, counted: several transfers may load at once. */
export class LeanHeap {
  private holders = 0;

  constructor(private readonly set: (flag: string) => void = setFlagsFromString) {}

  /** Holds the heap lean until the returned function is called (once; later calls do nothing). */
  hold(): () => void {
    if (this.holders++ === 0) this.set(LEAN);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.holders === 0) this.set(DEFAULT);
    };
  }
}

/** The process's one policy (V8's flags are the process's). */
export const leanHeap = new LeanHeap();
