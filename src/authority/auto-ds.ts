import type { Dispatcher } from 'undici';
import { epochSeconds, type Clock } from '../clock.js';
import { IdnsError } from '../errors.js';
import type { Logger } from '../log.js';
import { thumbprint } from '../records/keys.js';
import { serialLess } from '../records/serial.js';
import { peerZoneRecord } from '../replication/peer-zone-record.js';
import type { ZoneService } from './zones.js';

/** Longest a followed child goes unchecked, however long its zone record's TTL, ms. */
const MAX_CHECK_EVERY_MS = 3600_000;

/**
 * The parent follows the child (`idns zone delegate … --auto-ds`, DNS's CDS/CDNSKEY of RFC 7344 and
 * RFC 8078): a parent's primary reads the zone record of each child it follows from the child's servers
 * and, when the record asks for another ds set (`cds`), re-signs the delegation with it. Only a record
 * signed by a key the delegation already lists counts, and the set must name keys that record lists, so
 * the child's present key holder alone can move it, and never to a key the child does not publish.
 */
export class DelegationFollower {
  /** The newest serial of each child's zone record acted on: an older record (a replay) is not. */
  private readonly seen = new Map<string, number>();
  /**
   * When each child is next checked (ms): every zone record TTL of the child (a new one cannot be seen
   * sooner by resolvers anyway), at least the run interval and at most an hour, so a parent following
   * many children asks each about as often as a resolver would.
   */
  private readonly nextCheck = new Map<string, number>();
  /** Children checked, and delegations changed, for tests and metrics. */
  checks = 0;
  followed = 0;

  constructor(
    private readonly zones: ZoneService,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly dispatcher: Dispatcher | undefined,
  ) {}

  private running: Promise<void> | null = null;

  /** Checks every child followed by a primary zone held here; one run at a time (a slow child's servers can outlast a tick). */
  async runOnce(): Promise<void> {
    this.running ??= this.followAll().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async followAll(): Promise<void> {
    for (const row of this.zones.list()) {
      if (row.role !== 'primary') continue;
      const settings = this.zones.settings(row);
      if (settings.fencedBy !== undefined) continue;
      for (const child of settings.autoDs ?? []) await this.follow(row.name, child);
    }
  }

  private async follow(parent: string, child: string): Promise<void> {
    const delegation = this.zones.delegationOf(parent, child);
    if (delegation === null) return;
    const key = `${parent} ${child}`;
    const now = this.clock.now();
    if (now < (this.nextCheck.get(key) ?? 0)) return;
    this.checks += 1;
    const record = await this.newestRecord(child, delegation.servers, delegation.ds);
    // Without an answer, again after the delegation's TTL (the child's servers may be down a while).
    const ttl = record?.ttl ?? delegation.ttl;
    if (this.nextCheck.size >= 100_000) this.nextCheck.clear();
    this.nextCheck.set(key, now + Math.min(MAX_CHECK_EVERY_MS, ttl * 1000));
    if (record === null || record.cds === undefined) return;
    const last = this.seen.get(key);
    if (last !== undefined && serialLess(record.serial, last)) return;
    this.seen.set(key, record.serial);
    const asked = record.cds;
    if (asked.length === delegation.ds.length && asked.every((t) => delegation.ds.includes(t))) return;
    // The schema holds a cds to keys the record lists; checked again here, where it decides a delegation.
    const listed = new Set(record.keys.map((k) => thumbprint(k)));
    if (!asked.every((t) => listed.has(t))) return;
    this.zones.delegate(parent, child, { servers: delegation.servers, ds: asked, ttl: delegation.ttl });
    this.followed += 1;
    this.log.info('delegation follows the child: new ds set', { zone: parent, child, ds: asked, was: delegation.ds });
  }

  /** The newest zone record of `child` among its servers' that a key of `ds` signed, or null. */
  private async newestRecord(child: string, servers: string[], ds: string[]) {
    const now = epochSeconds(this.clock);
    const records = await Promise.all(
      servers.map(async (server) => {
        try {
          return (await peerZoneRecord(server, child, ds, now, this.dispatcher)).record;
        } catch (err) {
          if (!(err instanceof IdnsError)) throw err;
          this.log.debug('auto-ds: no zone record from a server of the child', { zone: child, server, err });
          return null;
        }
      }),
    );
    let newest = null;
    for (const r of records) if (r !== null && (newest === null || serialLess(newest.serial, r.serial))) newest = r;
    return newest;
  }
}
