import { epochSeconds, timersFor, type Clock, type Timers } from '../clock.js';
import type { Store } from '../store/store.js';
import type { ZoneService } from './zones.js';

/**
 * Keeps signatures fresh: records whose signature has less than the zone's `resignBefore` left are
 * re-signed in bounded batches, each batch one new zone version, so the work per tick is bounded however
 * large the zone, and secondaries receive the new signatures through the journal like any change.
 */
export class Resigner {
  private timer: unknown = null;
  /** The clock's timers: a test's clock drives the schedule. */
  private readonly timers: Timers;

  constructor(
    private readonly store: Store,
    private readonly zones: ZoneService,
    private readonly clock: Clock,
    private readonly batchSize = 1000,
  ) {
    this.timers = timersFor(clock);
  }

  /** Re-signs at most one batch per primary zone; returns how many records were re-signed. */
  runOnce(): number {
    let total = 0;
    for (const row of this.zones.list()) {
      if (row.role !== 'primary') continue;
      const settings = this.zones.settings(row);
      // A fenced zone signs nothing (another server is its primary now): its copy here ages until an operator acts.
      if (settings.fencedBy !== undefined) continue;
      const threshold = epochSeconds(this.clock) + settings.resignBefore;
      const due = this.store.records.expiringBefore(row.content, threshold, this.batchSize);
      if (due.length === 0 && row.recordExp >= threshold) continue;
      this.store.write(() => {
        const editor = this.zones.editor(row.name);
        editor.beginChange();
        for (const record of due) editor.resign(record.type, record.key, record.jws);
        editor.commit();
      });
      total += due.length;
    }
    return total;
  }

  /** Runs every `intervalMs` until stopped; catching up on a large backlog takes several ticks. */
  start(intervalMs: number, onError: (err: unknown) => void): void {
    this.stop();
    this.timer = this.timers.setInterval(() => {
      try {
        this.runOnce();
      } catch (err) {
        onError(err);
      }
    }, intervalMs);
  }

  /** Stops the timer. */
  stop(): void {
    if (this.timer !== null) this.timers.clearInterval(this.timer);
    this.timer = null;
  }
}
