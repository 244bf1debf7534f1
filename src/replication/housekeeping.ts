import { timersFor, type Clock, type Timers } from '../clock.js';
import type { Logger } from '../log.js';
import type { JournalPlace } from '../store/journal.js';
import type { Store } from '../store/store.js';
import { TransferClient } from './transfer-client.js';

/** How long the journal is kept: by entries and by age, whichever is reached first. */
export interface JournalLimits {
  maxEntries: number;
  maxAgeSeconds: number;
}

export const DEFAULT_JOURNAL_LIMITS: JournalLimits = { maxEntries: 1_000_000, maxAgeSeconds: 14 * 24 * 3600 };

/**
 * Entries of a journal counted a step at most until its count first reaches the newest entry (a
 * million-entry journal is counted in 50 steps of about 10 ms, not in one of half a second); after
 * that, each step counts the entries appended since the last, however many. Until then it is not
 * trimmed by count (its limit is a bound, not a size).
 */
const COUNT_STEP = 20_000;

/** What is counted of a zone's journal: from `oldest` up to `cursor` (null: nothing yet), `entries`; complete once the count reached the newest entry. */
interface JournalTally {
  oldest: JournalPlace;
  cursor: JournalPlace | null;
  entries: number;
  complete: boolean;
}

function samePlace(a: JournalPlace | undefined, b: JournalPlace): boolean {
  return a !== undefined && a.version === b.version && a.idx === b.idx && a.createdAt === b.createdAt;
}

/**
 * Background upkeep in small steps, so no step holds the database for long: dropping the rows of
 * retired copies (replaced by a full transfer, or left by a transfer that died) and trimming each zone's
 * journal to its limits. A secondary asking for changes older than the trimmed journal gets
 * journal_too_old and takes a full transfer.
 */
export class Housekeeper {
  private timer: unknown = null;
  /** Per zone, the journal's entries counted so far (tallyOf). */
  private readonly tallies = new Map<string, JournalTally>();
  /** The clock's timers: a test's clock drives the schedule. */
  private readonly timers: Timers;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly journal: JournalLimits = DEFAULT_JOURNAL_LIMITS,
    private readonly rowsPerStep = 5000,
    /** Journal entries counted a step at most (COUNT_STEP; tests make it small). */
    private readonly countStep = COUNT_STEP,
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
    const zones = this.store.zones.list();
    for (const zone of zones) deleted += this.trim(zone.name);
    // The counts of zones gone go with them.
    for (const name of this.tallies.keys()) if (!zones.some((z) => z.name === name)) this.tallies.delete(name);
    return deleted;
  }

  /**
   * Trims one zone's journal toward its limits, at most about rowsPerStep entries a step (whole versions:
   * a version is either entirely in the journal or entirely gone); returns the entries dropped. Reads
   * only the entries it counts or drops: the count is kept here and follows the journal a step at a time.
   */
  trim(zone: string): number {
    const oldest = this.store.journal.oldest(zone);
    if (oldest === undefined) {
      this.tallies.delete(zone);
      return 0;
    }
    const tally = this.tallyOf(zone, oldest);
    const cutoff = this.clock.now() - this.journal.maxAgeSeconds * 1000;
    const tooOld = oldest.createdAt < cutoff;
    // Over the limit by count only once the count has reached the newest entry.
    const excess = tally.complete ? tally.entries - this.journal.maxEntries : 0;
    if (excess <= 0 && !tooOld) return 0;
    return this.store.write(() => {
      // The version of the entry `excess` places from the oldest is the oldest to keep, the one before it
      // the last to drop (the original rule: at most maxEntries left), in steps.
      const byCount = excess > 0 ? this.store.journal.versionAt(zone, Math.min(excess, this.rowsPerStep) - 1) : undefined;
      const byAge = tooOld ? this.store.journal.newestBefore(zone, cutoff, this.rowsPerStep) : undefined;
      const through = Math.max(byCount ?? -1, byAge ?? -1);
      if (through < 0) return 0;
      const n = this.store.journal.trimThrough(zone, through);
      this.store.zones.setJournalFloor(zone, through);
      const next = this.store.journal.oldest(zone);
      // What was counted from the front is gone; past the cursor nothing was (a version is below it or not).
      if (next === undefined || tally.cursor === null || next.version > tally.cursor.version) this.tallies.delete(zone);
      else {
        tally.entries -= n;
        tally.oldest = next;
      }
      return n;
    });
  }

  /**
   * The count of a zone's journal, carried on (by up to countStep entries until it is complete): started
   * again when the journal no longer begins where it did or no longer holds the entry counted last as it
   * was (a copy replaced by a full transfer starts a new journal; a secondary drops entries past its
   * version).
   */
  private tallyOf(zone: string, oldest: JournalPlace): JournalTally {
    let tally = this.tallies.get(zone);
    const journal = this.store.journal;
    if (
      tally !== undefined &&
      !(samePlace(tally.oldest, oldest) && (tally.cursor === null || samePlace(journal.at(zone, tally.cursor.version, tally.cursor.idx), tally.cursor)))
    ) {
      tally = undefined;
    }
    if (tally === undefined) {
      tally = { oldest, cursor: null, entries: 0, complete: false };
      this.tallies.set(zone, tally);
    }
    const limit = tally.complete ? Number.MAX_SAFE_INTEGER : this.countStep;
    const { entries, last } = journal.countAfter(zone, tally.cursor, limit);
    tally.entries += entries;
    tally.cursor = last;
    tally.complete = entries < limit;
    return tally;
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
