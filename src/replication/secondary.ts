import type { Dispatcher } from 'undici';
import { serialLess, serialOf } from '../records/serial.js';
import type { ZoneReader } from '../authority/zone-reader.js';
import { timersFor, type Clock, type Timers } from '../clock.js';
import { IdnsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { parsePublicJwk, thumbprint } from '../records/keys.js';
import { witnessName } from '../transparency/witness-name.js';
import { parseSecondarySettings } from '../authority/settings.js';
import type { ZoneRecord } from '../records/types.js';
import { parseNote } from '../transparency/note.js';
import { checkpointSize, openCheckpoint } from '../transparency/zone-log.js';
import type { CredentialStore } from './credentials.js';
import { TransferClient, type Source, type TransferLimits, DEFAULT_TRANSFER_LIMITS } from './transfer-client.js';

/** What a secondary zone's loop knows, for /readyz, metrics and the operator. */
export interface SecondaryStatus {
  zone: string;
  serial: number | null;
  lastSuccess: number | null;
  lastAttempt: number | null;
  lastError: string | null;
  /** Serial the primary announced at the last successful check. */
  primarySerial: number | null;
  transfers: { full: number; incremental: number; failed: number };
}

interface ZoneLoop {
  timer: unknown;
  /** When the scheduled check is due (ms, wall clock). */
  dueAt: number;
  /** When the last check started (ms, wall clock). */
  lastStarted: number;
  running: Promise<void> | null;
  again: boolean;
  status: SecondaryStatus;
  /** The zone's settings (JSON) the loop last saw: a change (a re-pointed source) is checked at once. */
  settings: string;
  /** The next check takes a full transfer whatever the serials say (idns ctl retransfer). */
  forceFull: boolean;
}

/** Least time between two checks triggered by notifies, ms. */
const NOTIFY_INTERVAL_MS = 250;

/** Defaults when the zone record is not known yet (before the first transfer), seconds. */
const INITIAL_RETRY_S = 5;

/**
 * The secondary's refresh/retry loop, one per secondary zone held here: check the zone record's serial
 * every `refresh` seconds (at once on a notify), transfer incrementally when the source's journal reaches
 * back, fully otherwise, and retry every `retry` seconds after a failure. Expiry needs no timer: the
 * answer path compares the last success with `expire` (ZoneReader.unavailable).
 */
export class Replicator {
  private readonly loops = new Map<string, ZoneLoop>();
  private readonly client: TransferClient;
  private scanTimer: unknown = null;
  private stopped = false;
  private readonly timers: Timers;

  constructor(
    private readonly store: Store,
    private readonly zones: ZoneReader,
    private readonly credentials: CredentialStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    dispatcher: Dispatcher,
    limits: TransferLimits = DEFAULT_TRANSFER_LIMITS,
  ) {
    this.client = new TransferClient(store, zones, clock, dispatcher, limits);
    // Refresh and retry follow the clock, so a virtual clock drives them in tests without sleeping.
    this.timers = timersFor(clock);
  }

  /** Starts a loop for every secondary zone, and looks for zones added later (by the CLI) every few seconds. */
  start(scanIntervalMs = 2000): void {
    this.stopped = false;
    this.scan();
    this.scanTimer = this.timers.setInterval(() => this.scan(), scanIntervalMs);
  }

  /** Stops every timer; transfers in progress finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.scanTimer !== null) this.timers.clearInterval(this.scanTimer);
    for (const loop of this.loops.values()) if (loop.timer !== null) this.timers.clearTimeout(loop.timer);
    await Promise.allSettled([...this.loops.values()].map((l) => l.running));
  }

  /**
   * A notify arrived: check soon. Notifies only ever trigger a check; nothing in them is trusted. A flood
   * of notifies costs at most one check per NOTIFY_INTERVAL_MS: the first after a quiet spell runs at
   * once, the rest fold into one check at the end of the interval.
   */
  notify(zone: string): boolean {
    const loop = this.loops.get(zone);
    if (!loop) return false;
    if (loop.running) {
      loop.again = true;
      return true;
    }
    const since = this.clock.now() - loop.lastStarted;
    const delay = Math.max(0, NOTIFY_INTERVAL_MS - since);
    if (loop.timer === null || delay === 0 || loop.dueAt > this.clock.now() + delay) this.schedule(zone, delay);
    return true;
  }

  /** Checks a zone now and waits for the outcome (tests, the CLI). */
  async checkNow(zone: string): Promise<SecondaryStatus> {
    this.ensureLoop(zone);
    const loop = this.loops.get(zone)!;
    if (loop.running) await loop.running;
    await this.run(zone);
    return loop.status;
  }

  /** Takes a full transfer of a secondary zone now, whatever the serials say, and waits for the outcome (idns ctl retransfer). */
  async retransfer(zone: string): Promise<SecondaryStatus> {
    this.ensureLoop(zone);
    const loop = this.loops.get(zone)!;
    if (loop.running) await loop.running;
    loop.forceFull = true;
    await this.run(zone);
    return loop.status;
  }

  /** True while a check of the zone is running. */
  busy(zone: string): boolean {
    return this.loops.get(zone)?.running != null;
  }

  /** The state of every secondary zone's loop. */
  statuses(): SecondaryStatus[] {
    return [...this.loops.values()].map((l) => l.status);
  }

  /** Starts loops for secondary zones added (or re-pointed, or demoted) since, and ends those of zones deleted or promoted. */
  private scan(): void {
    const secondaries = new Map(this.zones.list().flatMap((row) => (row.role === 'secondary' ? [[row.name, row.settings] as const] : [])));
    for (const [zone, loop] of this.loops) {
      if (secondaries.has(zone) || loop.running !== null) continue;
      if (loop.timer !== null) this.timers.clearTimeout(loop.timer);
      this.loops.delete(zone);
    }
    for (const [zone, settings] of secondaries) {
      const loop = this.loops.get(zone);
      if (loop === undefined) this.ensureLoop(zone, true);
      else if (loop.settings !== settings) {
        loop.settings = settings;
        this.schedule(zone, 0);
      }
    }
  }

  private ensureLoop(zone: string, startNow = false): void {
    if (this.loops.has(zone)) return;
    const row = this.zones.require(zone);
    this.loops.set(zone, {
      timer: null,
      dueAt: 0,
      lastStarted: 0,
      running: null,
      again: false,
      forceFull: false,
      settings: row.settings,
      status: {
        zone,
        serial: row.record === '' ? null : serialOf(row.version),
        lastSuccess: row.refreshedAt,
        lastAttempt: null,
        lastError: null,
        primarySerial: null,
        transfers: { full: 0, incremental: 0, failed: 0 },
      },
    });
    if (startNow) this.schedule(zone, 0);
  }

  private schedule(zone: string, delayMs: number): void {
    const loop = this.loops.get(zone);
    if (!loop || this.stopped) return;
    if (loop.timer !== null) this.timers.clearTimeout(loop.timer);
    loop.dueAt = this.clock.now() + delayMs;
    loop.timer = this.timers.setTimeout(() => {
      loop.timer = null;
      void this.run(zone);
    }, delayMs);
  }

  private run(zone: string): Promise<void> {
    const loop = this.loops.get(zone)!;
    if (loop.running) {
      loop.again = true;
      return loop.running;
    }
    loop.again = false;
    loop.lastStarted = this.clock.now();
    loop.running = this.check(zone, loop).finally(() => {
      loop.running = null;
      // Notified during the check: check again as soon as the interval since this one started allows (a
      // check that took longer than the interval is followed at once, so a busy zone's copy keeps up).
      if (loop.again) this.schedule(zone, Math.max(0, NOTIFY_INTERVAL_MS - (this.clock.now() - loop.lastStarted)));
    });
    return loop.running;
  }

  private async check(zone: string, loop: ZoneLoop): Promise<void> {
    const row = this.zones.get(zone);
    if (!row || row.role !== 'secondary') {
      this.loops.delete(zone);
      return;
    }
    const settings = this.zones.secondarySettings(row);
    const credentials = this.credentials;
    const credentialAtStart = this.credentialVersion(zone);
    loop.status.lastAttempt = this.clock.now();
    let lastError = 'no source configured';
    for (const server of settings.primaries) {
      const src: Source = {
        server,
        zone,
        trusted: settings.ds,
        // Read when each request is signed, not when the check began: a credential the operator set during
        // a long check (a full transfer, a source that times out) is used by the very next request.
        get credential() {
          return credentials.own(zone);
        },
      };
      try {
        const { record, jws, checkpoint, witnesses } = await this.client.zoneRecord(src);
        loop.status.primarySerial = record.serial;
        const current = this.zones.require(zone);
        const ours = current.record === '' ? null : serialOf(current.version);
        if (loop.forceFull || ours === null || serialLess(ours, record.serial)) {
          let serial: number | false = false;
          if (ours !== null && !loop.forceFull) serial = await this.incrementalOrNothing(src, loop);
          if (serial === false) {
            serial = await this.client.full(src, loop.forceFull);
            loop.status.transfers.full += 1;
          } else {
            loop.status.transfers.incremental += 1;
          }
          loop.forceFull = false;
          this.log.info('zone transferred', { zone, serial, from: server });
          this.followCopyKeys(zone);
        } else if (ours !== record.serial) {
          throw new Error(`the source's serial ${record.serial} is behind ours (${ours})`);
        } else {
          this.store.write(() => {
            this.store.zones.setRefreshed(zone, this.clock.now());
            this.adoptCosignatures(zone, record, jws, checkpoint, witnesses);
          });
        }
        const fresh = this.zones.require(zone);
        loop.status.serial = serialOf(fresh.version);
        loop.status.lastSuccess = fresh.refreshedAt;
        loop.status.lastError = null;
        this.schedule(zone, this.timer(fresh, 'refresh'));
        return;
      } catch (err) {
        lastError = `${server}: ${(err as Error).message}`;
        loop.status.transfers.failed += 1;
        this.log.warn('zone check failed', { zone, server, err });
      }
    }
    loop.status.lastError = lastError;
    // A credential changed during a failed check may be what it was missing (a request signed before the
    // change was refused): check again soon with it rather than wait the zone's retry interval.
    const changed = this.credentialVersion(zone) !== credentialAtStart;
    this.schedule(zone, changed ? NOTIFY_INTERVAL_MS : this.timer(this.zones.require(zone), 'retry'));
  }

  /**
   * The source's checkpoint of the serial held here, when it is the same tree's with other cosignatures
   * (its witnesses cosigned it after the transfer, or again since): served from now on, so that the zone's
   * every server carries fresh cosignatures (docs/protocol.md §14). The zone's own signature is checked;
   * cosignatures are the resolver's to check.
   */
  private adoptCosignatures(zone: string, record: ZoneRecord, jws: string, offered: unknown, witnesses: unknown): void {
    const row = this.zones.require(zone);
    if (typeof offered !== 'string' || row.checkpoint === '' || jws !== row.record) return;
    try {
      const note = parseNote(offered);
      if (offered !== row.checkpoint) {
        const theirs = openCheckpoint(zone, offered, record.keys);
        if (note.text !== parseNote(row.checkpoint).text || theirs.size !== checkpointSize(row.checkpoint)) return;
        this.store.zones.setCheckpoint(zone, offered);
      }
      // The keys of the witnesses whose lines it carries, each under the name its own thumbprint gives.
      const named = typeof witnesses === 'object' && witnesses !== null ? (witnesses as Record<string, unknown>) : {};
      for (const { name } of note.signatures) {
        if (!Object.hasOwn(named, name)) continue;
        const key = parsePublicJwk(named[name], 'a witness key');
        if (witnessName(thumbprint(key)) === name) this.store.witness.putKey(name, key);
      }
    } catch (err) {
      if (!(err instanceof IdnsError)) throw err;
      this.log.warn("the source's checkpoint or its witnesses' keys do not verify; keeping ours", { zone, err });
    }
  }

  /**
   * A secondary trusts the keys its copy's zone record lists (a record signed by a key it trusted vouched
   * for them): its ds follows them, so a key rollover of the zone (src/authority/rollover.ts) needs no step
   * on its secondaries, and a retired key stops being trusted.
   */
  private followCopyKeys(zone: string): void {
    const row = this.zones.require(zone);
    // Just transferred: the copy has its zone record, verified and parsed (and kept parsed) by the reader.
    const keys = this.zones.zoneRecord(row)!.keys.map((k) => thumbprint(k));
    const settings = this.zones.secondarySettings(row);
    if (keys.length === settings.ds.length && keys.every((k) => settings.ds.includes(k))) return;
    this.store.write(() => this.store.zones.setSettings(zone, JSON.stringify(parseSecondarySettings({ ...settings, ds: keys }))));
    this.log.info('zone keys followed: the copy trusts the keys its zone record lists', { zone, ds: keys });
  }

  /** The zone's own credential as text, to tell whether it changed (an unreadable file is a state of its own). */
  private credentialVersion(zone: string): string {
    try {
      return JSON.stringify(this.credentials.own(zone));
    } catch (err) {
      return `unreadable: ${(err as Error).message}`;
    }
  }

  /**
   * An incremental transfer, or false when a full one should follow: as BIND and Knot do, a refused
   * incremental transfer (a bad stream, a change set that does not fit what is held here) falls back to a
   * full one from the same source, so no stored state can keep a secondary from following its source.
   * A source that cannot be reached or refuses the request (network_error, transfer_refused) sent no
   * stream to refuse: that fails the check, as a full transfer would fail too.
   */
  private async incrementalOrNothing(src: Source, loop: ZoneLoop): Promise<number | false> {
    try {
      return await this.client.incremental(src);
    } catch (err) {
      if (!(err instanceof IdnsError) || (err.code !== 'transfer_failed' && err.code !== 'verification_failed')) throw err;
      loop.status.transfers.failed += 1;
      this.log.warn('incremental transfer refused; taking a full transfer', { zone: src.zone, server: src.server, err });
      return false;
    }
  }

  private timer(row: ReturnType<ZoneReader['require']>, which: 'refresh' | 'retry'): number {
    const record = this.zones.zoneRecord(row);
    return (record ? record[which] : INITIAL_RETRY_S) * 1000;
  }
}
