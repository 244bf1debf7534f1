import type { Dispatcher } from 'undici';
import { request } from '../client/undici.js';
import { serialOf } from '../records/serial.js';
import type { ZoneReader } from '../authority/zone-reader.js';
import { epochSeconds, timersFor, type Clock, type Timers } from '../clock.js';
import type { Logger } from '../log.js';
import type { Credential, CredentialStore } from './credentials.js';
import { authorization } from './credentials.js';
import { pathZone } from './transfer-client.js';

/** Delays between the tries of one notify, ms: the first at once, then backing off. */
const RETRY_DELAYS_MS = [0, 500, 2000, 5000];

/** Where a zone's notifies go, and the credential they are signed with. */
export interface Target {
  url: string;
  credential: Credential | null;
}

/**
 * Tells a zone's secondaries that a new serial exists (like DNS NOTIFY), after every committed change,
 * for changes made by this process and (by polling the zone versions) by the CLI on the same data
 * directory. Per zone and target URL one notify is in flight at a time; changes meanwhile are folded into
 * one more notify after it. A secondary only ever treats a notify as a hint to check.
 *
 * Nothing about a target is remembered from when its notify was queued: every attempt reads the zone's
 * current targets, credentials and serial, so a notify folded or retried after the operator changed them
 * goes where, and signed as, the configuration says now.
 */
export class Notifier {
  private readonly notified = new Map<string, number>();
  private readonly inFlight = new Map<string, { again: boolean }>();
  private pollTimer: unknown = null;
  private running = false;
  /** Notifies sent (including retries), for metrics and tests. */
  sent = 0;
  failed = 0;

  constructor(
    private readonly zones: ZoneReader,
    private readonly credentials: CredentialStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly dispatcher: Dispatcher,
    /** Told each notify's outcome (the operator page shows the last per target). */
    private readonly outcome: (zone: string, target: string, ok: boolean, detail: string | null) => void = () => undefined,
  ) {
    this.timers = timersFor(clock);
  }

  /** The clock's timers: the poll and the retries follow a test's clock. */
  private readonly timers: Timers;

  /** Notifies every zone's targets once (a restarted primary tells its secondaries to check), then polls. */
  start(pollMs = 1000): void {
    this.running = true;
    for (const row of this.zones.list()) this.zoneChanged(row.name);
    this.pollTimer = this.timers.setInterval(() => this.poll(), pollMs);
  }

  /** Stops polling; notifies waiting to be retried are dropped. */
  stop(): void {
    this.running = false;
    if (this.pollTimer !== null) this.timers.clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  /** Notifies queued or being sent (for tests and metrics). */
  get pending(): number {
    return this.inFlight.size;
  }

  /** A zone changed: notify its targets (only while started: a CLI process sends none). */
  zoneChanged(zone: string): void {
    if (!this.running) return;
    const row = this.zones.get(zone);
    if (!row || row.record === '') return;
    this.notified.set(zone, row.version);
    const targets = this.currentTargets(zone);
    if (targets) for (const target of targets) this.send(zone, target.url);
  }

  /**
   * Targets of a zone, one per URL: the secondaries allowed to transfer it that have a notify URL, else
   * (for a primary with open transfers) the zone's other servers. Two names with one notify URL share it:
   * the first in the file signs.
   */
  targets(zone: string): Target[] {
    const row = this.zones.require(zone);
    const acl = this.credentials.allowed(zone);
    const byUrl = new Map<string, Target>();
    for (const [name, a] of Object.entries(acl)) {
      if (a.notify !== null && !byUrl.has(a.notify)) byUrl.set(a.notify, { url: a.notify, credential: { name, secret: a.secret } });
    }
    if (byUrl.size > 0 || Object.keys(acl).length > 0) return [...byUrl.values()];
    if (row.role === 'primary') {
      const settings = this.zones.settings(row);
      return settings.servers.filter((s) => s !== settings.primary).map((url) => ({ url, credential: null }));
    }
    // A secondary with open transfers notifies the zone's other servers once it took a new serial (as
    // BIND's `notify yes`), so a chain primary → secondary → secondary converges in a second a hop: every
    // server the zone record lists but the primary and this secondary's own sources (a server that gets
    // a notify for a zone it copies from elsewhere just checks its own source).
    const record = this.zones.zoneRecord(row);
    if (record === null) return [];
    const sources = new Set(this.zones.secondarySettings(row).primaries);
    return record.servers.filter((s) => s !== record.primary && !sources.has(s)).map((url) => ({ url, credential: null }));
  }

  private poll(): void {
    for (const row of this.zones.list()) {
      const seen = this.notified.get(row.name);
      if (seen !== row.version) this.zoneChanged(row.name);
    }
  }

  /** The zone's targets now, or null (logged) when they cannot be read: a notify is then not sent. */
  private currentTargets(zone: string): Target[] | null {
    try {
      if (!this.zones.get(zone)) return [];
      return this.targets(zone);
    } catch (err) {
      // An unreadable ACL file (wrong mode, bad JSON) is the operator's to fix; it is reported, not guessed around.
      this.log.warn('notify targets unreadable', { zone, err });
      return null;
    }
  }

  private send(zone: string, url: string): void {
    const id = `${zone} ${url}`;
    const flight = this.inFlight.get(id);
    if (flight) {
      flight.again = true;
      return;
    }
    const state = { again: false };
    this.inFlight.set(id, state);
    void this.deliver(zone, url).finally(() => {
      this.inFlight.delete(id);
      if (state.again && this.running) this.send(zone, url);
    });
  }

  private async deliver(zone: string, url: string): Promise<void> {
    for (const delay of RETRY_DELAYS_MS) {
      if (delay > 0) await new Promise<void>((r) => this.timers.setTimeout(r, delay));
      if (!this.running) return;
      const row = this.zones.get(zone);
      if (!row) return;
      // Read at each attempt: the target may have been dropped, or given a credential, since it was queued.
      const target = this.currentTargets(zone)?.find((t) => t.url === url);
      if (!target) {
        this.log.debug('notify dropped: no longer a target', { zone, target: url });
        return;
      }
      const path = `/v1/zones/${pathZone(zone)}/notify`;
      const body = JSON.stringify({ serial: serialOf(row.version) });
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (target.credential) headers.authorization = authorization(target.credential, 'POST', path, body, epochSeconds(this.clock));
      this.sent += 1;
      try {
        const res = await request(`${url.replace(/\/+$/, '')}${path}`, {
          method: 'POST',
          headers,
          body,
          dispatcher: this.dispatcher,
          headersTimeout: 3000,
          bodyTimeout: 3000,
        });
        await res.body.dump();
        if (res.statusCode < 300) {
          this.outcome(zone, url, true, null);
          return;
        }
        this.outcome(zone, url, false, `refused: ${res.statusCode}`);
        this.log.warn('notify refused', { zone, target: url, status: res.statusCode });
        // The target answered and said no (not a secondary of this zone, bad credentials): retrying the same
        // request won't help, but one signed with credentials changed meanwhile may.
        if (res.statusCode < 500 && !this.credentialChanged(zone, target)) break;
      } catch (err) {
        this.outcome(zone, url, false, 'unreachable');
        this.log.debug('notify failed', { zone, target: url, err });
      }
    }
    this.failed += 1;
    this.log.warn('notify gave up', { zone, target: url });
  }

  /** True when the target's credential now differs from the one an attempt was signed with. */
  private credentialChanged(zone: string, used: Target): boolean {
    const now = this.currentTargets(zone)?.find((t) => t.url === used.url);
    if (!now) return false;
    return now.credential?.name !== used.credential?.name || now.credential?.secret !== used.credential?.secret;
  }
}
