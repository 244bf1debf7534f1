import type { Dispatcher } from 'undici';
import { epochSeconds, type Clock } from '../clock.js';
import { jsonRequest } from '../client/http.js';
import { IdnsError } from '../errors.js';
import type { Logger } from '../log.js';
import { ancestors } from '../names/zone.js';
import { decodeCompact } from '../records/jws.js';
import { verifyDelegation, verifyZoneRecord } from '../records/verify.js';
import type { Store } from '../store/store.js';
import { thumbprint } from '../records/keys.js';
import { peerRequest, peerZoneRecord } from '../replication/peer-zone-record.js';
import type { RolloverState, ZoneSettings } from './settings.js';
import { iso } from './rollover-state.js';
import type { ZoneService } from './zones.js';

/** Ancestors of a zone tried when a parent's server also holds the zone itself (each is one request). */
const MAX_PARENT_TRIES = 8;
/** The handle asked for at a parent's servers: any name below the zone gets its referral. */
const PROBE = 'rollover-check';

/** The longest a resolver or cache may hold a record the zone signed: its TTLs (zone record, handles, denials). */
function longestTtl(settings: ZoneSettings): number {
  return Math.max(settings.ttl, settings.handleTtl, settings.minimum);
}

/** What the parent's servers said of the zone's delegation. */
interface DelegationView {
  server: string;
  ds: string[];
  ttl: number;
}

/**
 * Starts a rollover of a primary zone (`idns zone rekey`; no network needed: the running server takes the
 * next steps, KeyRollovers): a new key, listed in a new version of the zone record. `parentServers` (kept
 * in the zone's settings) are where the delegation is checked; without them, the operator confirms with
 * submitRollover.
 */
export function startRollover(zones: ZoneService, clock: Clock, zone: string, parentServers?: string[]): RolloverState {
  const settings = zones.settings(zones.require(zone));
  if (settings.fencedBy !== undefined) throw new IdnsError('invalid_request', `zone ${zone} is fenced: it signs nothing here`);
  if (settings.rollover !== undefined) {
    throw new IdnsError('invalid_request', `zone ${zone} is already rolling its key (${settings.rollover.phase}); see idns zone show ${zone}`);
  }
  const oldKey = settings.keyIds[0]!;
  const newKey = zones.newKey(zone);
  const now = epochSeconds(clock);
  const rollover: RolloverState = {
    phase: 'publishing',
    newKey,
    oldKey,
    started: now,
    since: now,
    waiting: waitingFor(parentServers ?? settings.parentServers, 'lists the new key'),
  };
  zones.changeKeys(zone, { keyIds: [oldKey, newKey], rollover, ...(parentServers ? { parentServers } : {}) }, true);
  return rollover;
}

/** The operator says the delegation (or trust anchor) is as the present phase needs it (publishing, retiring: `--submitted`). */
export function submitRollover(zones: ZoneService, zone: string): RolloverState {
  const rollover = zones.settings(zones.require(zone)).rollover;
  if (rollover === undefined) throw new IdnsError('invalid_request', `zone ${zone} is not rolling its key`);
  if (rollover.phase !== 'publishing' && rollover.phase !== 'retiring') {
    throw new IdnsError('invalid_request', `zone ${zone}'s rollover is ${rollover.phase}: nothing to submit until it retires the old key`);
  }
  const next = { ...rollover, submitted: true };
  zones.changeKeys(zone, { rollover: next }, false);
  return next;
}

/**
 * Abandons a rollover still publishing (nothing is signed by the new key yet): the zone record lists the
 * old key alone again and asks the parent for it alone, and the rollover ends, as a retiring one does,
 * once the parent no longer lists the abandoned key (a parent that follows the child may have added it).
 */
export function cancelRollover(zones: ZoneService, clock: Clock, zone: string): RolloverState {
  const settings = zones.settings(zones.require(zone));
  const r = settings.rollover;
  if (r === undefined) throw new IdnsError('invalid_request', `zone ${zone} is not rolling its key`);
  if (r.phase !== 'publishing') {
    throw new IdnsError('invalid_request', `zone ${zone}'s new key signs already (${r.phase}): let the rollover finish, then roll again if needed`);
  }
  const now = epochSeconds(clock);
  const back: RolloverState = {
    phase: 'retiring',
    newKey: r.oldKey,
    oldKey: r.newKey,
    started: r.started,
    since: now,
    waiting: waitingFor(settings.parentServers, 'no longer lists the abandoned key'),
    cancelled: true,
  };
  zones.changeKeys(zone, { keyIds: [r.oldKey], rollover: back }, true);
  return back;
}

function waitingFor(parentServers: string[] | undefined, what: string): string {
  return parentServers === undefined
    ? `the operator to confirm that the parent's delegation (or the resolvers' trust anchor) ${what}: idns zone rekey ZONE --submitted`
    : `every server of the parent zone to answer a delegation that ${what}`;
}

/**
 * Key rollovers of primary zones (`idns zone rekey`, docs/operations.md "Key rollover"), a pre-publish
 * rollover as RFC 6781 §4.1.2 and RFC 7583 time it, which keeps every answer verifiable for every resolver
 * and cache at every moment:
 *
 * 1. **publishing**: the new key is listed in the zone record beside the old one, which still signs; the
 *    zone record asks for both in the delegation (`cds`). It waits until every server of the parent zone
 *    answers a delegation listing the new key (or the operator says the delegation or trust anchor does:
 *    `--submitted`), and then for that delegation's TTL, so no cached delegation lacks the new key.
 * 2. **signing**: the new key signs the zone record and every new record; the records the old key signed
 *    are re-signed in bounded batches, one version each, resumed from a cursor after a restart.
 * 3. **draining**: every record is signed by the new key; the zone waits for its longest TTL, so no cache
 *    holds an answer whose zone record the parent will no longer vouch for.
 * 4. **retiring**: the old key leaves the zone record, which asks for the new key alone; the rollover
 *    ends when every server of the parent answers a delegation without the old key (or `--submitted`).
 *
 * The state lives in the zone's settings, so the server that is restarted resumes where it stopped.
 */
export class KeyRollovers {
  private running: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly zones: ZoneService,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly dispatcher: Dispatcher | undefined,
    private readonly batchSize = 1000,
  ) {}

  /** Takes the next step of every rollover under way; one run at a time. */
  async runOnce(): Promise<void> {
    this.running ??= this.stepAll().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async stepAll(): Promise<void> {
    for (const row of this.zones.list()) {
      if (row.role !== 'primary') continue;
      const settings = this.zones.settings(row);
      if (settings.rollover === undefined || settings.fencedBy !== undefined) continue;
      try {
        await this.step(row.name, settings, settings.rollover);
      } catch (err) {
        if (!(err instanceof IdnsError)) throw err;
        this.log.warn('key rollover step failed; it is tried again', { zone: row.name, err });
      }
    }
  }

  private async step(zone: string, settings: ZoneSettings, r: RolloverState): Promise<void> {
    const now = epochSeconds(this.clock);
    switch (r.phase) {
      case 'publishing': {
        const seen = await this.delegationsSeen(zone, settings, r, (ds) => ds.includes(r.newKey), 'lists the new key');
        // Also the zone record's own TTL since the new key was published: no cached zone record lacks it.
        if (seen.at === undefined || now < Math.max(seen.at + seen.ttl, r.since + settings.ttl)) {
          this.update(zone, r, { delegationsSeen: seen.at, delegationTtl: seen.ttl, waiting: seen.waiting });
          return;
        }
        // And every server of the zone copied a zone record listing it: a secondary trusts the keys of the
        // record it holds, so one that missed it would refuse every version the new key signs.
        const lagging = await this.serverWithout(zone, settings, r.newKey);
        if (lagging !== null) {
          this.update(zone, r, { waiting: `every server of the zone to hold the zone record listing the new key (${lagging})` });
          return;
        }
        this.zones.changeKeys(
          zone,
          { keyIds: [r.newKey, r.oldKey], rollover: { ...this.next(r, 'signing', now), waiting: 're-signing the records with the new key' } },
          true,
        );
        this.log.info('key rollover: the new key signs the zone now', { zone, newKey: r.newKey });
        return;
      }
      case 'signing': {
        const done = this.resignBatch(zone, r);
        if (!done) return;
        const until = now + longestTtl(settings);
        this.zones.changeKeys(
          zone,
          { rollover: { ...this.next(r, 'draining', now), waiting: `the zone's longest TTL to run out (until ${iso(until)})` } },
          false,
        );
        this.log.info('key rollover: every record is signed by the new key', { zone });
        return;
      }
      case 'draining': {
        if (now < r.since + longestTtl(settings)) return;
        const waiting = waitingFor(settings.parentServers, 'no longer lists the old key');
        this.zones.changeKeys(zone, { keyIds: [r.newKey], rollover: { ...this.next(r, 'retiring', now), waiting } }, true);
        this.log.info('key rollover: the old key is retired from the zone record', { zone, oldKey: r.oldKey });
        return;
      }
      case 'retiring': {
        const what = r.cancelled === true ? 'no longer lists the abandoned key' : 'no longer lists the old key';
        const seen = await this.delegationsSeen(zone, settings, r, (ds) => !ds.includes(r.oldKey) && ds.includes(r.newKey), what);
        if (seen.at === undefined) {
          this.update(zone, r, { waiting: seen.waiting });
          return;
        }
        this.zones.changeKeys(zone, { rollover: undefined }, true);
        this.log.info(
          r.cancelled === true ? 'key rollover abandoned: the old key alone signs the zone' : 'key rollover done: the new key alone signs the zone',
          {
            zone,
            newKey: r.newKey,
            oldKey: r.oldKey,
          },
        );
        return;
      }
    }
  }

  /** The state of the next phase, begun now. */
  private next(r: RolloverState, phase: RolloverState['phase'], now: number): RolloverState {
    return { phase, newKey: r.newKey, oldKey: r.oldKey, started: r.started, since: now };
  }

  /**
   * Keeps what a step learned, without signing (the zone record does not change), merged into the state
   * as stored now: the step awaited the network, and meanwhile the operator may have confirmed a step
   * (`--submitted`, another process), which a write of the state read before would undo.
   */
  private update(zone: string, r: RolloverState, change: Partial<RolloverState>): void {
    const current = this.zones.settings(this.zones.require(zone)).rollover;
    if (current === undefined || current.phase !== r.phase || current.newKey !== r.newKey) return;
    const next = { ...current, ...change };
    if (JSON.stringify(next) !== JSON.stringify(current)) this.zones.changeKeys(zone, { rollover: next }, false);
  }

  /**
   * Since when every delegation is as `wanted` says (kept from the last step while it stays so), and
   * their longest TTL; `at` undefined while one is not (then `waiting` says which).
   */
  private async delegationsSeen(
    zone: string,
    settings: ZoneSettings,
    r: RolloverState,
    wanted: (ds: string[]) => boolean,
    what: string,
  ): Promise<{ at: number | undefined; ttl: number; waiting: string }> {
    const now = epochSeconds(this.clock);
    if (settings.parentServers === undefined) {
      // The operator's word; the parent's TTL is not known here, so the zone's own stands for it.
      if (r.submitted !== true) return { at: undefined, ttl: 0, waiting: waitingFor(undefined, what) };
      return { at: r.delegationsSeen ?? now, ttl: settings.ttl, waiting: `the delegation's TTL to run out` };
    }
    const views = await this.delegations(zone, settings.parentServers);
    const wrong = views.find((v) => 'error' in v || !wanted(v.ds));
    if (wrong !== undefined) {
      const why = 'error' in wrong ? wrong.error : `its delegation lists ${wrong.ds.join(', ')}`;
      return { at: undefined, ttl: 0, waiting: `every server of the parent zone to answer a delegation that ${what} (${wrong.server}: ${why})` };
    }
    const ttl = Math.max(...views.map((v) => ('ttl' in v ? v.ttl : 0)));
    const at = r.delegationsSeen ?? now;
    return { at, ttl, waiting: `the old delegation's TTL to run out (until ${iso(at + ttl)})` };
  }

  /**
   * The zone's delegation as each server of its parent answers it: the servers given, and every server
   * the parent's zone record lists. Each answer's parent zone record and delegation are checked against
   * each other (the parent's servers are the operator's choice; a server that lies can only delay).
   */
  private async delegations(zone: string, parentServers: string[]): Promise<(DelegationView | { server: string; error: string })[]> {
    const first = await this.delegationAt(zone, parentServers[0]!, undefined);
    const parent = 'error' in first ? undefined : first.parent;
    const listed = 'error' in first ? [] : first.parentServers;
    const servers = [...new Set([...parentServers, ...listed])];
    return Promise.all(
      servers.map(async (server) => {
        const view = server === parentServers[0] ? first : await this.delegationAt(zone, server, parent);
        return 'error' in view ? { server, error: view.error } : { server, ds: view.ds, ttl: view.ttl };
      }),
    );
  }

  private async delegationAt(
    zone: string,
    server: string,
    parent: string | undefined,
  ): Promise<{ ds: string[]; ttl: number; parent: string; parentServers: string[] } | { error: string }> {
    // The parent zone is not known beforehand: a server holding the zone too answers from it, so each
    // ancestor is asked for by name (?zone=) until one answers with the referral.
    const candidates: (string | undefined)[] = parent !== undefined ? [parent] : [undefined, ...ancestors(zone).slice(1, MAX_PARENT_TRIES)];
    let last = 'no referral to the zone';
    for (const candidate of candidates) {
      try {
        const query = candidate === undefined ? '' : `?zone=${encodeURIComponent(candidate)}`;
        const res = await jsonRequest(`${server.replace(/\/+$/, '')}/v1/resolve/${PROBE}@${zone}${query}`, peerRequest(this.dispatcher));
        const body = res.body as { status?: unknown; zone?: unknown; record?: unknown; zoneRecord?: unknown } | null;
        if (res.status !== 200 || body?.status !== 'referral' || typeof body.zone !== 'string') {
          last = `answered ${res.status}${typeof body?.status === 'string' ? ` (${body.status} from zone ${String(body.zone)})` : ''}, not a referral`;
          continue;
        }
        const now = epochSeconds(this.clock);
        const parentZone = verifyZoneRecord(body.zoneRecord, body.zone, now);
        const delegation = verifyDelegation(body.record, parentZone, now);
        if (delegation.name !== zone) {
          last = `its referral is to ${delegation.name}, not ${zone}`;
          continue;
        }
        return { ds: delegation.ds, ttl: delegation.ttl, parent: body.zone, parentServers: parentZone.record.servers };
      } catch (err) {
        if (!(err instanceof IdnsError)) throw err;
        last = err.message;
      }
    }
    return { error: last };
  }

  /** A server of the zone (other than this primary) whose zone record does not list `kid` yet, with why; null when none. */
  private async serverWithout(zone: string, settings: ZoneSettings, kid: string): Promise<string | null> {
    const others = settings.servers.filter((url) => url !== settings.primary);
    const views = await Promise.all(
      others.map(async (server) => {
        try {
          const { record } = await peerZoneRecord(server, zone, settings.keyIds, epochSeconds(this.clock), this.dispatcher);
          return record.keys.some((k) => thumbprint(k) === kid) ? null : `${server}: at serial ${record.serial}, without it`;
        } catch (err) {
          if (!(err instanceof IdnsError)) throw err;
          return `${server}: ${err.message}`;
        }
      }),
    );
    return views.find((v) => v !== null) ?? null;
  }

  /** Re-signs one batch of the records the old key signed, in one version; true once none is left. */
  private resignBatch(zone: string, r: RolloverState): boolean {
    const row = this.zones.require(zone);
    const page = this.store.records.page(row.content, r.cursor ?? null, this.batchSize);
    const old = page.filter((rec) => rec.type !== 'op' && decodeCompact(rec.jws).header.kid === r.oldKey);
    const last = page.at(-1);
    this.store.write(() => {
      if (old.length > 0) {
        const editor = this.zones.editor(zone);
        editor.beginChange();
        for (const rec of old) editor.resign(rec.type, rec.key, rec.jws);
        editor.commit();
      }
      if (last !== undefined) this.zones.changeKeys(zone, { rollover: { ...r, cursor: { type: last.type, key: last.key } } }, false);
    });
    return page.length < this.batchSize;
  }
}
