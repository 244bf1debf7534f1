import type { Dispatcher } from 'undici';
import { epochSeconds, type Clock } from '../clock.js';
import { IdnsError } from '../errors.js';
import type { Logger } from '../log.js';
import { serialLess, serialOf } from '../records/serial.js';
import type { ZoneService } from '../authority/zones.js';
import { peerZoneRecord } from './peer-zone-record.js';

/** Least time between two background checks of one zone. */
const CHECK_EVERY_MS = 10_000;

/**
 * Fencing (docs/operations.md, "Fencing"): a primary that comes back after its zone was promoted on
 * another server must not sign serials beside the new primary's. It asks the zone's other servers for
 * their zone record; one signed by a key of the zone, of a newer serial, naming another primary, fences
 * the zone here (ZoneService.fence): no writes (307 to that primary), no signing, until an operator acts.
 */
export class Fencer {
  /** Checks made, and zones fenced, for metrics and tests. */
  checks = 0;

  constructor(
    private readonly zones: ZoneService,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly dispatcher: Dispatcher,
  ) {}

  private readonly lastCheck = new Map<string, number>();
  private running = true;

  /** Stops checks started later (a closing server). */
  stop(): void {
    this.running = false;
  }

  /** Checks a zone in the background unless it was checked in the last CHECK_EVERY_MS (called at each change). */
  checkSoon(zone: string): void {
    const now = this.clock.now();
    if (!this.running || now - (this.lastCheck.get(zone) ?? -Infinity) < CHECK_EVERY_MS) return;
    if (this.lastCheck.size >= 10_000) this.lastCheck.clear();
    this.lastCheck.set(zone, now);
    void this.check(zone).catch((err: unknown) => this.log.error('fencing check failed', { zone, err }));
  }

  /** Checks every primary zone held here (at start-up); resolves when all are checked. */
  async checkAll(): Promise<void> {
    await Promise.all(this.zones.list().map((row) => this.check(row.name)));
  }

  /** Checks one primary zone against its other servers; true when it is fenced now. */
  async check(zone: string): Promise<boolean> {
    const row = this.zones.get(zone);
    if (!this.running || !row || row.role !== 'primary' || row.record === '') return false;
    const settings = this.zones.settings(row);
    if (settings.fencedBy !== undefined) return true;
    this.checks += 1;
    const ours = serialOf(row.version);
    const others = settings.servers.filter((url) => url !== settings.primary);
    const newer = await Promise.all(others.map((url) => this.newerElsewhere(zone, url, settings.keyIds, ours, settings.primary)));
    const found = newer.find((n) => n !== null);
    if (found === undefined || found === null || !this.running) return false;
    this.zones.fence(zone, found);
    this.log.warn('zone fenced: another server holds a newer zone record naming another primary; this server takes no writes for it', {
      zone,
      primary: found.primary,
      serial: found.serial,
      ours,
    });
    return true;
  }

  /** The newer primary that `url`'s zone record names, or null (none, or not one this zone's keys signed). */
  private async newerElsewhere(
    zone: string,
    url: string,
    keyIds: readonly string[],
    ours: number,
    primary: string,
  ): Promise<{ primary: string; serial: number } | null> {
    try {
      // Only a record signed by a key this zone lists counts: anyone can run a server that claims the zone.
      const theirs = (await peerZoneRecord(url, zone, keyIds, epochSeconds(this.clock), this.dispatcher)).record;
      return serialLess(ours, theirs.serial) && theirs.primary !== primary ? { primary: theirs.primary, serial: theirs.serial } : null;
    } catch (err) {
      if (!(err instanceof IdnsError)) throw err;
      this.log.debug('fencing check: no zone record from a server of the zone', { zone, server: url, err });
      return null;
    }
  }
}
