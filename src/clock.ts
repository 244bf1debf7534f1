/** Time is passed in everywhere so that tests can drive TTLs, expiry and re-signing without sleeping. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** The real wall clock. */
export const systemClock: Clock = { now: () => Date.now() };

/** A clock that only moves when told to (tests, simulations). */
export class ManualClock implements Clock {
  constructor(private t: number = Date.UTC(2026, 0, 1)) {}
  now(): number {
    return this.t;
  }
  /** Moves the clock forward by `ms` milliseconds. */
  advance(ms: number): void {
    this.t += ms;
  }
  /** Sets the clock to an absolute time. */
  set(t: number): void {
    this.t = t;
  }
}

/** Seconds since the epoch, as JWT-style `iat`/`exp` fields use. */
export function epochSeconds(clock: Clock): number {
  return Math.floor(clock.now() / 1000);
}
