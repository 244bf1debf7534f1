import { timersFor, type Clock, type Timers } from '../clock.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { TransferClient } from './transfer-client.js';

/** How long the journal is kept: by entries and by age, whichever is reached first. */
export interface JournalLimits {
  maxEntries: number;
  maxAgeSeconds: number;
}

export const DEFAULT_JOURNAL_LIMITS: JournalLimits = { maxEntries: 1_000_000, maxAgeSeconds: 14 * 24 * 3600 };

/**
 * Background upkeep in small steps, so no step holds the database for long: dropping the rows of
 * retired copies (replaced by a full transfer, or left by a transfer that died) and trimming each zone's
 * journal to its limits. A secondary asking for changes older than the trimmed journal gets
 * journal_too_old and takes a full transfer.
 */
export class Housekeeper {
  private timer: unknown = null;
  /** The clock's timers: a test's clock drives the schedule. */
  private readonly timers: Timers;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly journal: JournalLimits = DEFAULT_JOURNAL_LIMITS,
    private readonly rowsPerStep = 5000,
  ) {
    this.timers = timersFor(clock);
  }

  /** Runs one step of each task; returns the rows deleted. */
  runOnce(): number {
    let deleted = 0;
    const retired = this.store.records.nextRetired();
    if (retired !== undefined && !TransferClient.loading.has(retired)) {
      deleted += this.store.write(() => {
        const n = this.store.deleteSomeContent(retired, this.rowsPerStep);
        if (n < this.rowsPerStep) this.store.records.unretire(retired);
        return n;
      });
    }
    for (const zone of this.store.zones.list()) deleted += this.trim(zone.name);
    return deleted;
  }

  /** Trims one zone's journal to the limits; returns the entries dropped. */
  trim(zone: string): number {
    const { entries, oldest } = this.store.journal.bounds(zone);
    const tooMany = entries > this.journal.maxEntries;
    const cutoff = this.clock.now() - this.journal.maxAgeSeconds * 1000;
    const tooOld = oldest !== null && oldest < cutoff;
    if (!tooMany && !tooOld) return 0;
    return this.store.write(() => {
      // Whole versions only: a version is either entirely in the journal or entirely gone.
      const byCount = tooMany ? this.store.journal.versionKeeping(zone, this.journal.maxEntries) : undefined;
      const byAge = tooOld ? this.store.journal.newestBefore(zone, cutoff) : undefined;
      const through = Math.max(byCount ?? -1, byAge ?? -1);
      if (through < 0) return 0;
      const n = this.store.journal.trimThrough(zone, through);
      this.store.zones.setJournalFloor(zone, through);
      return n;
    });
  }

  /** Runs every `intervalMs` until stopped. */
  start(intervalMs: number): void {
    this.timer = this.timers.setInterval(() => {
      try {
        this.runOnce();
      } catch (err) {
        this.log.error('housekeeping failed', { err });
      }
    }, intervalMs);
  }

  /** Stops the timer. */
  stop(): void {
    if (this.timer !== null) this.timers.clearInterval(this.timer);
    this.timer = null;
  }
}
