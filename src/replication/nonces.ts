import { epochSeconds, type Clock } from '../clock.js';
import { IdnsError } from '../errors.js';

/** Most nonces of transfer credentials remembered at once (docs/security.md). */
export const AUTH_NONCE_CAPACITY = 100_000;

/**
 * The nonces of the transfer credentials this server accepted, each kept until its request's time window
 * closes, so that a header is accepted once. Only genuine requests (mac already checked) get here, so only
 * a credential holder can fill it.
 *
 * Memory is bounded by count. When full, the entry whose window closes first is dropped and the window
 * shrinks behind it: `floor` rises to its expiry, and any request whose window closes at or before the
 * floor is refused. A forgotten nonce therefore can never be replayed (refusing new requests instead
 * would let one credential holder lock every other secondary out for ten minutes); the cost falls on
 * clients whose clocks lag, never on a request signed just now unless the store turns over within a
 * second.
 *
 * Nothing is persisted: a restarted server starts with the floor at its start time, so a request signed
 * before the restart (whose nonce it no longer knows) is refused, and only the second of the restart
 * itself is shared with the previous process.
 */
export class NonceStore {
  private readonly seen = new Set<string>();
  /** Min-heap on expiry of what `seen` holds. */
  private readonly heap: { exp: number; key: string }[] = [];
  /** Requests whose window closes at or before this second are refused (their nonces may be forgotten). */
  private floor: number;

  constructor(
    private readonly clock: Clock,
    private readonly window: number,
    private readonly capacity: number = AUTH_NONCE_CAPACITY,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('the nonce store needs room for at least one nonce');
    this.floor = epochSeconds(clock) - 1 + window;
  }

  /** Nonces remembered now. */
  get size(): number {
    return this.seen.size;
  }

  /**
   * Records the nonce of an authenticated request signed at `ts`, which the caller checked is within the
   * window of `now` (the same reading of the clock); throws auth_failed when it was used before, or when
   * its window closes at or before the floor.
   */
  use(name: string, nonce: string, ts: number, now: number = epochSeconds(this.clock)): void {
    // A request of ts < now - window is refused by the time check, so its nonce need not be kept.
    while (this.heap.length > 0 && this.heap[0]!.exp < now) this.seen.delete(this.pop().key);
    const exp = ts + this.window;
    const key = `${name}\n${nonce}`;
    if (this.seen.has(key)) throw new IdnsError('auth_failed', 'these transfer credentials were used before; each request needs a new nonce');
    if (this.seen.size >= this.capacity) {
      // Forget the entry that expires first and refuse from then on anything that old.
      if (exp <= this.heap[0]!.exp) throw tooOld();
      const dropped = this.pop();
      this.seen.delete(dropped.key);
      this.floor = Math.max(this.floor, dropped.exp);
    }
    if (exp <= this.floor) throw tooOld();
    this.seen.add(key);
    this.push({ exp, key });
  }

  private push(item: { exp: number; key: string }): void {
    const h = this.heap;
    h.push(item);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (h[parent]!.exp <= item.exp) break;
      h[i] = h[parent]!;
      i = parent;
    }
    h[i] = item;
  }

  private pop(): { exp: number; key: string } {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const child = r < h.length && h[r]!.exp < h[l]!.exp ? r : l;
        if (h[child]!.exp >= last.exp) break;
        h[i] = h[child]!;
        i = child;
      }
      h[i] = last;
    }
    return top;
  }
}

function tooOld(): IdnsError {
  return new IdnsError(
    'auth_failed',
    'the transfer credentials were signed too long ago for this server to know they are new (it restarted since, or is under load); sign the request again',
  );
}
