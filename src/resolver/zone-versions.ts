import { serialLess } from '../records/serial.js';
import { IdnsError } from '../errors.js';

/** Two signed zone records of one serial with different content: evidence that the zone showed two histories. */
export interface ZoneFork {
  zone: string;
  serial: number;
  /** The zone record seen first, and the other one. */
  seen: string;
  offered: string;
}

/** Zone forks kept as evidence (each two zone records of at most a few KiB). */
export const MAX_ZONE_FORKS = 100;

/**
 * The no-rollback rule of a resolver (issue 18, docs/protocol.md §10.1): for each zone, the newest serial
 * it has verified a zone record of, with that record's digest. A zone record of an older serial (a
 * replayed or restored older version of the zone: a key its owner rotated away, a handle since
 * registered hidden by an old denial) is refused, and so is another record of the same serial with
 * another digest, which is kept as evidence of a fork. Bounded: the least recently seen zones go first.
 */
export class ZoneVersions {
  private readonly zones = new Map<string, { serial: number; digest: string; record: string }>();
  private readonly kept: ZoneFork[] = [];

  constructor(private readonly maxZones: number) {}

  /**
   * Checks a verified zone record of `zone` against the newest seen, and remembers it when it is newer
   * (unless `remember` is false: a resolver requiring witnesses remembers a version only once its
   * checkpoint binding is verified too, or a fork's newer serial would make the genuine zone look old).
   * Throws verification_failed for an older serial (rollback) or a same-serial record with another digest (fork).
   */
  check(zone: string, record: { serial: number; digest: string }, jws: string, remember = true): void {
    const held = this.zones.get(zone);
    if (held !== undefined) {
      if (serialLess(record.serial, held.serial)) {
        throw new IdnsError(
          'verification_failed',
          `zone ${zone} answered at serial ${record.serial}, older than serial ${held.serial} seen before (a rollback, or a server that lags)`,
        );
      }
      if (record.serial === held.serial) {
        if (record.digest !== held.digest) {
          if (this.kept.length >= MAX_ZONE_FORKS) this.kept.shift();
          this.kept.push({ zone, serial: record.serial, seen: held.record, offered: jws });
          throw new IdnsError('verification_failed', `zone ${zone} shows two different contents at serial ${record.serial} (kept as evidence of a fork)`);
        }
        return;
      }
      if (!remember) return;
      this.zones.delete(zone);
    }
    if (!remember) return;
    this.zones.set(zone, { serial: record.serial, digest: record.digest, record: jws });
    while (this.zones.size > this.maxZones) this.zones.delete(this.zones.keys().next().value!);
  }

  /** The newest serial verified for `zone`, or undefined. */
  serial(zone: string): number | undefined {
    return this.zones.get(zone)?.serial;
  }

  /** The forks met, oldest first. */
  forks(): readonly ZoneFork[] {
    return this.kept;
  }
}
