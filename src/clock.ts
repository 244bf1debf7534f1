/** Time is passed in everywhere so that tests can drive TTLs, expiry and re-signing without sleeping. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/**
 * Timers that follow a clock: the real ones, or a ManualClock's, which fire as it is advanced. Schedules
 * (re-signing, housekeeping, refresh and retry, notify retries, scans) use these, so a test drives them
 * with the clock. Deadlines on I/O (a socket's, a DNS or HTTPS query's, a transfer's time limit, a
 * lookup's budget) are real time: they bound how long a peer can hold us, whatever the clock says.
 */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Calls `fn` every `ms` until cleared. */
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

/** The real wall clock. */
export const systemClock: Clock = { now: () => Date.now() };

/** Real timers, unref'd so that they never keep a process alive on their own. */
export const systemTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

/** The timers that go with a clock: a ManualClock's own, or the real ones. */
export function timersFor(clock: Clock): Timers {
  return clock instanceof ManualClock ? clock : systemTimers;
}

/** A clock that only moves when told to (tests, simulations); its timers fire as it is advanced. */
export class ManualClock implements Clock, Timers {
  private timers: { id: number; at: number; fn: () => void; every: number | null }[] = [];
  private nextId = 1;

  constructor(private t: number = Date.UTC(2026, 0, 1)) {}
  now(): number {
    return this.t;
  }
  /** Moves the clock forward by `ms` milliseconds, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      // An interval is due again `every` later, under the same id (so clearing it stops it for good). The
      // further periods inside one advance are coalesced into one call at its end, as a real interval
      // fires once after the event loop was held: a jump of a day is two calls, not 86,400.
      if (due.every !== null) this.timers.push({ ...due, at: due.at + due.every <= end ? Math.max(end, due.at + 1) : due.at + due.every });
      due.fn();
    }
    this.t = end;
  }
  /** Sets the clock to an absolute time (timers do not fire). */
  set(t: number): void {
    this.t = t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.push({ id, at: this.t + Math.max(0, ms), fn, every: null });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle);
  }
  setInterval(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    // At least 1 ms apart, so that advance() always ends.
    const every = Math.max(1, ms);
    this.timers.push({ id, at: this.t + every, fn, every });
    return id;
  }
  clearInterval(handle: unknown): void {
    this.clearTimeout(handle);
  }
}

/** Seconds since the epoch, as JWT-style `iat`/`exp` fields use. */
export function epochSeconds(clock: Clock): number {
  return Math.floor(clock.now() / 1000);
}
