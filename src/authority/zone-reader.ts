import type { Clock } from '../clock.js';
import { IdnsError } from '../errors.js';
import { ancestors, ROOT } from '../names/zone.js';
import { ZoneDigest } from '../records/digest.js';
import { thumbprint, type SigningKey } from '../records/keys.js';
import type { ZoneRecord } from '../records/types.js';
import type { StoredRecord } from '../store/records.js';
import type { Store } from '../store/store.js';
import type { RegistrationPolicy, ZoneRow } from '../store/zones.js';
import type { Publication } from '../discovery/publication.js';
import { decodePayload } from './editor.js';
import type { KeyRing } from './keyring.js';
import { serialOf } from '../records/serial.js';
import { parseSecondarySettings, parseZoneSettings, type SecondarySettings, type ZoneSettings } from './settings.js';

/** A zone as operators see it. */
export interface ZoneInfo {
  name: string;
  role: ZoneRow['role'];
  serial: number;
  version: number;
  policy: RegistrationPolicy;
  /** Primary settings (null on a secondary). */
  settings: ZoneSettings | null;
  /** Secondary settings (null on a primary). */
  secondary: SecondarySettings | null;
  /** Servers listed in the zone record. */
  servers: string[];
  record: string;
  keyThumbprints: string[];
  digest: string;
  handles: number;
}

/**
 * The zones this server holds, read: rows (cached on the read path), zone records, settings, keys, the
 * hosted zone and zone cut for a host, and whether a secondary's copy may be answered from. Nothing here
 * writes; administering zones is ZoneService's (zones.ts), which extends this.
 */
export class ZoneReader {
  private readonly settingsCache = new Map<string, { raw: string; parsed: ZoneSettings }>();
  private readonly recordCache = new Map<string, { raw: string; parsed: ZoneRecord }>();

  constructor(
    protected readonly store: Store,
    protected readonly keys: KeyRing,
    protected readonly clock: Clock,
  ) {}

  /** The zone row, or undefined when this server does not hold the zone. */
  get(name: string): ZoneRow | undefined {
    return this.store.zones.get(name);
  }

  /** The zone row, or zone_not_found. */
  require(name: string): ZoneRow {
    const row = this.store.zones.get(name);
    if (!row) throw new IdnsError('zone_not_found', `zone ${name} is not held by this server`);
    return row;
  }

  /** Operator's view of a zone. Counting its handles reads every handle record (half a second at a million): see summary(). */
  info(name: string): ZoneInfo {
    const summary = this.summary(name);
    return { ...summary, handles: this.store.records.count(this.require(name).content, 'handle') };
  }

  /** info() without the count of handles: what a request anyone may send can ask for, whatever the zone's size. */
  summary(name: string): Omit<ZoneInfo, 'handles'> {
    const row = this.require(name);
    const settings = row.role === 'primary' ? this.settings(row) : null;
    const zoneRecord = this.zoneRecord(row);
    return {
      name: row.name,
      role: row.role,
      serial: serialOf(row.version),
      version: row.version,
      policy: row.policy,
      settings,
      secondary: row.role === 'secondary' ? this.secondarySettings(row) : null,
      servers: zoneRecord?.servers ?? settings?.servers ?? [],
      record: row.record,
      keyThumbprints: settings ? settings.keyIds : (zoneRecord?.keys ?? []).map((k) => thumbprint(k)),
      digest: ZoneDigest.fromState(row.digestState).value(),
    };
  }

  /**
   * What `idns zone publish` puts in DNS and at /.well-known/idns: the thumbprints of every key the
   * current zone record lists (during a key rollover both, so resolvers that read either publication
   * accept records signed by the old or the new key) and the record's servers.
   */
  publication(name: string): Publication & { ttl: number } {
    if (name === ROOT) throw new IdnsError('invalid_zone_name', 'the root zone is not published: resolvers are configured with its key (--anchor)');
    const row = this.require(name);
    const record = this.zoneRecord(row);
    if (record === null) throw new IdnsError('zone_not_found', `zone ${name} has no zone record yet (a secondary that has not copied it): nothing to publish`);
    return { zone: row.name, ds: record.keys.map((k) => thumbprint(k)), servers: [...record.servers], ttl: record.ttl };
  }

  /** Every zone held here. */
  list(): ZoneRow[] {
    return this.store.zones.list();
  }

  /**
   * The hosted zone that holds `host`: the longest of its ancestors that this server holds. Uses the
   * cached rows, so it is cheap on the read path.
   */
  closestHosted(host: string): ZoneRow | undefined {
    const zones = this.store.zones.snapshot();
    for (const candidate of ancestors(host)) {
      const row = zones.get(candidate);
      if (row) return row;
    }
    return undefined;
  }

  /**
   * The delegation in `zone` that cuts `host` away from it, if any: the topmost delegated name between
   * the zone and the host (as in DNS, below the first cut the parent has no authority at all).
   */
  cutFor(zone: ZoneRow, host: string): StoredRecord | undefined {
    const below = ancestors(host);
    const at = below.indexOf(zone.name);
    if (at <= 0) return undefined;
    for (let i = at - 1; i >= 0; i--) {
      const found = this.store.records.get(zone.content, 'delegation', below[i]!);
      if (found) return found;
    }
    return undefined;
  }

  /** A zone row from the read-path cache. */
  cachedZone(name: string): ZoneRow | undefined {
    return this.store.zones.cached(name);
  }

  /** The payload of a zone's current signed zone record (its timers, keys, servers), cached per record. */
  zoneRecord(row: ZoneRow): ZoneRecord | null {
    if (row.record === '') return null;
    const hit = this.recordCache.get(row.name);
    if (hit && hit.raw === row.record) return hit.parsed;
    const parsed = decodePayload(row.record) as unknown as ZoneRecord;
    this.recordCache.set(row.name, { raw: row.record, parsed });
    return parsed;
  }

  /**
   * Why a zone cannot be answered from, or null when it can: a secondary stops answering once `expire`
   * seconds (from the zone record) have passed without a successful check against a primary, as a DNS
   * secondary does, rather than serve data that may be long out of date.
   */
  unavailable(row: ZoneRow): string | null {
    if (row.role === 'primary') {
      // A fenced primary knows a newer version is served elsewhere: its copy is stale, so it sends
      // resolvers on to the zone's other servers rather than answer from it (a fresh resolver would accept it).
      const fence = row.record === '' ? undefined : this.settings(row).fencedBy;
      return fence === undefined
        ? null
        : `zone ${row.name} is fenced here: ${fence.primary} holds serial ${fence.serial}, newer; ask another server of the zone`;
    }
    const record = this.zoneRecord(row);
    if (record === null) return `zone ${row.name} has not been transferred yet`;
    const last = row.refreshedAt ?? row.createdAt;
    const silentMs = this.clock.now() - last;
    if (silentMs > record.expire * 1000) {
      return `zone ${row.name} expired: no successful check with its primary for ${Math.floor(silentMs / 1000)} s (expire is ${record.expire} s)`;
    }
    return null;
  }

  /**
   * The refusal of a change to a zone this server holds as a secondary. It names where changes go (the
   * signed zone record's primary, or before the first copy the server copied from), so the HTTP layer can
   * redirect the request there.
   */
  notPrimary(row: ZoneRow, message: string): IdnsError {
    const primary = this.zoneRecord(row)?.primary ?? this.secondarySettings(row).primaries[0];
    return new IdnsError('not_primary', primary ? `${message} ${primary}` : message, { details: { zone: row.name, ...(primary ? { primary } : {}) } });
  }

  /**
   * Throws not_primary (307 to the new primary) for a primary zone fenced by a newer zone record elsewhere
   * naming another primary (ZoneSettings.fencedBy): it takes no writes and signs nothing.
   */
  assureNotFenced(row: ZoneRow): void {
    if (row.role !== 'primary') return;
    const fence = this.settings(row).fencedBy;
    if (fence === undefined) return;
    throw new IdnsError(
      'not_primary',
      `zone ${row.name} was promoted elsewhere: ${fence.primary} holds serial ${fence.serial}, newer than this server's; changes go there`,
      { details: { zone: row.name, primary: fence.primary } },
    );
  }

  /** Settings of a secondary zone. */
  secondarySettings(row: ZoneRow): SecondarySettings {
    if (row.role !== 'secondary') throw new IdnsError('invalid_request', `zone ${row.name} is not a secondary here`);
    return parseSecondarySettings(JSON.parse(row.settings));
  }

  /** Parsed settings of a primary zone row (cached by the raw JSON, which changes rarely). */
  settings(row: ZoneRow): ZoneSettings {
    if (row.role !== 'primary') throw this.notPrimary(row, `zone ${row.name} is a secondary here; changes go to its primary`);
    const hit = this.settingsCache.get(row.name);
    if (hit && hit.raw === row.settings) return hit.parsed;
    const parsed = parseZoneSettings(JSON.parse(row.settings));
    this.settingsCache.set(row.name, { raw: row.settings, parsed });
    return parsed;
  }

  /** A primary zone's current signing key. */
  signingKey(row: ZoneRow): SigningKey {
    const kid = this.settings(row).keyIds[0];
    if (kid === undefined) throw new IdnsError('key_unavailable', `zone ${row.name} has no signing key configured`);
    return this.keys.load(row.name, kid);
  }
}
