import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { IdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import { isAtOrBelow } from '../names/zone.js';
import { namesBetween } from '../records/verify.js';
import type { StoredRecord } from '../store/records.js';
import type { ZoneRow } from '../store/zones.js';
import { nameHash } from '../records/denial.js';
import type { Store } from '../store/store.js';
import { decodePayload } from './editor.js';
import { serialOf } from './serial.js';
import type { ZoneService } from './zones.js';

/** An authoritative answer for one handle. */
export interface AuthoritativeAnswer {
  /** answer: the handle record; denial: proof it does not exist; referral: the delegation of the child zone that holds it. */
  status: 'answer' | 'denial' | 'referral';
  zone: string;
  serial: number;
  /** The signed handle record (answer), the signed gap covering the name's hash (denial), or the signed delegation (referral). */
  record: string;
  /** The signed zone record, so a client can check `record` without a second request. */
  zoneRecord: string;
  /** Seconds a cache may keep this: the record's TTL (the zone's minimum for a denial), capped by `exp`. */
  ttl: number;
  /** Denial only, when the host is below the zone: gaps proving that no name in between is a delegated zone. */
  noCut?: string[];
}

/** Answers queries for the zones this server holds, from stored signed records only: no signing here. */
export class Authority {
  constructor(
    private readonly store: Store,
    private readonly zones: ZoneService,
    private readonly clock: Clock,
  ) {}

  /**
   * Answers for a handle from the closest zone held here, or from `fromZone` when the asker names the zone
   * it believes it is talking to (a resolver walking down from a parent does, so that a server holding both
   * a parent and its child still gives the parent's referral). Throws not_authoritative when no zone here
   * holds the handle (or `fromZone` is not held here or does not contain it).
   */
  resolve(input: string, fromZone?: string): AuthoritativeAnswer {
    const { handle, host } = parseHandle(input);
    const zone = fromZone === undefined ? this.zones.closestHosted(host) : this.zones.cachedZone(fromZone);
    if (!zone) throw new IdnsError('not_authoritative', `this server is not authoritative for ${fromZone ?? host}`);
    if (fromZone !== undefined && !isAtOrBelow(host, fromZone)) {
      throw new IdnsError('not_authoritative', `${handle} is not in zone ${fromZone}`);
    }
    const zoneRecord = this.zones.zoneRecord(zone);
    if (zoneRecord === null) throw new IdnsError('zone_unavailable', `zone ${zone.name} has not been loaded yet`);
    const unavailable = this.zones.unavailable(zone);
    if (unavailable) throw new IdnsError('zone_unavailable', unavailable);
    const now = epochSeconds(this.clock);
    const cut = this.zones.cutFor(zone, host);
    // TTL and expiry come from the signed payload itself, not from the stored columns: a secondary's copy
    // does not keep the expiry column (it would have to trust the transfer for it).
    if (cut) {
      const p = decodePayload(cut.jws);
      return this.answer('referral', zone.name, zone.version, cut.jws, zone.record, Number(p.ttl), Number(p.exp), now);
    }
    const found = this.store.records.get(zone.content, 'handle', handle);
    if (found) {
      const p = decodePayload(found.jws);
      return this.answer('answer', zone.name, zone.version, found.jws, zone.record, Number(p.ttl), Number(p.exp), now);
    }
    const gap = this.gap(zone, handle);
    const answer = this.answer('denial', zone.name, zone.version, gap.jws, zone.record, zoneRecord.minimum, Number(decodePayload(gap.jws).exp), now);
    const between = namesBetween(host, zone.name);
    if (between.length > 0) {
      const noCut = new Set(between.map((name) => this.gap(zone, name).jws));
      noCut.delete(gap.jws);
      answer.noCut = [...noCut];
    }
    return answer;
  }

  private gap(zone: ZoneRow, name: string): StoredRecord {
    const gap = this.store.records.gapBelow(zone.content, nameHash(zone.salt, name));
    if (!gap) throw new IdnsError('internal', `zone ${zone.name} has no denial covering the name`);
    return gap;
  }

  private answer(
    status: AuthoritativeAnswer['status'],
    zone: string,
    version: number,
    record: string,
    zoneRecord: string,
    ttl: number,
    exp: number,
    now: number,
  ): AuthoritativeAnswer {
    return { status, zone, serial: serialOf(version), record, zoneRecord, ttl: Math.max(0, Math.min(ttl, exp - now)) };
  }
}
