import type { Dispatcher } from 'undici';
import { request } from 'undici';
import { serialOf } from '../authority/serial.js';
import type { ZoneService } from '../authority/zones.js';
import { epochSeconds, type Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { CredentialStore } from './credentials.js';
import { authorization } from './credentials.js';
import { pathZone } from './transfer-client.js';

/** Delays between the tries of one notify, ms: the first at once, then backing off. */
const RETRY_DELAYS_MS = [0, 500, 2000, 5000];

interface Target {
  url: string;
  credential: { name: string; secret: string } | null;
}

/**
 * Tells a zone's secondaries that a new serial exists (like DNS NOTIFY), after every committed change,
 * for changes made by this process and (by polling the zone versions) by the CLI on the same data
 * directory. Per zone and target one notify is in flight at a time; changes meanwhile are folded into one
 * more notify after it. A secondary only ever treats a notify as a hint to check.
 */
export class Notifier {
  private readonly notified = new Map<string, number>();
  private readonly inFlight = new Map<string, { again: boolean }>();
  private pollTimer: NodeJS.Timeout | null = null;
  private running = false;
  /** Notifies sent (including retries), for metrics and tests. */
  sent = 0;
  failed = 0;

  constructor(
    private readonly zones: ZoneService,
    private readonly credentials: CredentialStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly dispatcher: Dispatcher,
  ) {}

  /** Notifies every zone's targets once (a restarted primary tells its secondaries to check), then polls. */
  start(pollMs = 1000): void {
    this.running = true;
    for (const row of this.zones.list()) this.zoneChanged(row.name);
    this.pollTimer = setInterval(() => this.poll(), pollMs);
    this.pollTimer.unref();
  }

  /** Stops polling; notifies waiting to be retried are dropped. */
  stop(): void {
    this.running = false;
    if (this.pollTimer) clearInterval(this.pollTimer);
  }

  /** A zone changed: notify its targets (only while started: a CLI process sends none). */
  zoneChanged(zone: string): void {
    if (!this.running) return;
    const row = this.zones.get(zone);
    if (!row || row.record === '') return;
    this.notified.set(zone, row.version);
    for (const target of this.targets(zone)) this.send(zone, target);
  }

  /** Targets of a zone: the secondaries allowed to transfer it that have a notify URL, else (for a primary with open transfers) the zone's other servers. */
  targets(zone: string): Target[] {
    const row = this.zones.require(zone);
    const acl = this.credentials.allowed(zone);
    const named = Object.entries(acl)
      .filter(([, a]) => a.notify !== null)
      .map(([name, a]) => ({ url: a.notify!, credential: { name, secret: a.secret } }));
    if (named.length > 0 || Object.keys(acl).length > 0 || row.role !== 'primary') return named;
    const settings = this.zones.settings(row);
    return settings.servers.filter((s) => s !== settings.primary).map((url) => ({ url, credential: null }));
  }

  private poll(): void {
    for (const row of this.zones.list()) {
      const seen = this.notified.get(row.name);
      if (seen !== row.version) this.zoneChanged(row.name);
    }
  }

  private send(zone: string, target: Target): void {
    const id = `${zone} ${target.url}`;
    const flight = this.inFlight.get(id);
    if (flight) {
      flight.again = true;
      return;
    }
    const state = { again: false };
    this.inFlight.set(id, state);
    void this.deliver(zone, target).finally(() => {
      this.inFlight.delete(id);
      if (state.again) this.send(zone, target);
    });
  }

  private async deliver(zone: string, target: Target): Promise<void> {
    for (const delay of RETRY_DELAYS_MS) {
      if (delay > 0) await new Promise((r) => setTimeout(r, delay).unref());
      if (!this.running) return;
      const row = this.zones.get(zone);
      if (!row) return;
      const path = `/v1/zones/${pathZone(zone)}/notify`;
      const body = JSON.stringify({ serial: serialOf(row.version) });
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (target.credential) headers.authorization = authorization(target.credential, 'POST', path, body, epochSeconds(this.clock));
      this.sent += 1;
      try {
        const res = await request(`${target.url.replace(/\/+$/, '')}${path}`, {
          method: 'POST',
          headers,
          body,
          dispatcher: this.dispatcher,
          headersTimeout: 3000,
          bodyTimeout: 3000,
        });
        await res.body.dump();
        if (res.statusCode < 300) return;
        this.log.warn('notify refused', { zone, target: target.url, status: res.statusCode });
        // The target answered and said no (not a secondary of this zone, bad credentials): retrying won't help.
        if (res.statusCode < 500) break;
      } catch (err) {
        this.log.debug('notify failed', { zone, target: target.url, err });
      }
    }
    this.failed += 1;
    this.log.warn('notify gave up', { zone, target: target.url });
  }
}
