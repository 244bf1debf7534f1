import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../clock.js';
import { IdnsError } from '../errors.js';
import { ancestors, isAtOrBelow, parseZoneName, ROOT } from '../names/zone.js';
import { GAP_START } from '../records/denial.js';
import { ZoneDigest } from '../records/digest.js';
import type { StoredRecord } from '../store/records.js';
import { thumbprint, type SigningKey } from '../records/keys.js';
import type { Store } from '../store/store.js';
import type { RegistrationPolicy, ZoneRow } from '../store/zones.js';
import { ZoneEditor } from './editor.js';
import type { KeyRing } from './keyring.js';
import { serialOf } from './serial.js';
import { DEFAULT_ZONE_TIMERS, parseSecondarySettings, parseServerUrls, parseZoneSettings, type SecondarySettings, type ZoneSettings } from './settings.js';
import { decodePayload } from './editor.js';
import { RECORD_LIMITS, SHA256_B64U, type ZoneRecord } from '../records/types.js';
import type { HostScriptsLevel } from '../names/host-scripts.js';
import type { Publication } from '../discovery/publication.js';

/** What `idns zone create` takes. */
export interface CreateZoneOptions {
  /** Public URLs of the zone's servers; the first is the primary unless `primary` is given. */
  servers: string[];
  primary?: string;
  policy?: RegistrationPolicy;
  allowLoopbackEndpoints?: boolean;
  /** UTS #39 checks of new hosts; default `strict`. */
  hostScripts?: HostScriptsLevel;
  timers?: Partial<Pick<ZoneSettings, keyof typeof DEFAULT_ZONE_TIMERS>>;
}

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

/** Zones held by this server: creating them, reading them, and opening them for change. */
export class ZoneService {
  private readonly settingsCache = new Map<string, { raw: string; parsed: ZoneSettings }>();
  private readonly recordCache = new Map<string, { raw: string; parsed: ZoneRecord }>();

  constructor(
    private readonly store: Store,
    private readonly keys: KeyRing,
    private readonly clock: Clock,
  ) {}

  /** Creates a primary zone with a new signing key, its zone record and its first denial gap. */
  create(name: string, options: CreateZoneOptions): ZoneInfo {
    if (this.store.zones.get(name)) throw new IdnsError('zone_exists', `zone ${name} already exists here`);
    const partial = {
      primary: options.primary ?? options.servers[0],
      servers: options.servers,
      keyIds: [] as string[],
      ...DEFAULT_ZONE_TIMERS,
      ...options.timers,
      allowLoopbackEndpoints: options.allowLoopbackEndpoints ?? false,
      hostScripts: options.hostScripts ?? 'strict',
    };
    parseZoneSettings(partial); // validate before a key file is written
    const key = this.keys.create(name);
    const settings = parseZoneSettings({ ...partial, keyIds: [key.kid] });
    this.store.write(() => {
      this.store.zones.insert(this.newRow(name, 'primary', options.policy ?? 'open', JSON.stringify(settings), randomBytes(8).toString('hex')));
      const editor = this.editor(name);
      editor.beginChange();
      editor.put('denial', GAP_START, { after: null, next: null, hashes: [], hash: { alg: 'sha256', salt: editor.zone.salt }, ttl: settings.minimum });
      editor.commit();
    });
    return this.info(name);
  }

  /** A new zone's row: version 0, empty content (its id is the zone name), no zone record yet. */
  private newRow(name: string, role: ZoneRow['role'], policy: RegistrationPolicy, settings: string, salt: string): ZoneRow {
    return {
      name,
      role,
      version: 0,
      policy,
      settings,
      salt,
      digestState: ZoneDigest.empty().state(),
      record: '',
      recordExp: 0,
      content: name,
      journalFloor: 0,
      refreshedAt: null,
      createdAt: this.clock.now(),
    };
  }

  /** Loads every primary zone's signing key now, so a missing or exposed key stops start-up, not a later write. */
  assureKeys(): void {
    for (const row of this.list()) {
      if (row.role !== 'primary') continue;
      for (const kid of this.settings(row).keyIds) this.keys.load(row.name, kid);
    }
  }

  /** Adds a secondary zone: no key, no content until its first transfer from `primaries`. */
  createSecondary(name: string, secondary: SecondarySettings): ZoneInfo {
    if (this.store.zones.get(name)) throw new IdnsError('zone_exists', `zone ${name} already exists here`);
    const settings = parseSecondarySettings({ primaries: secondary.primaries, ds: [...new Set(secondary.ds)] });
    // The salt, like everything else of a secondary's copy, comes with its first transfer.
    this.store.write(() => this.store.zones.insert(this.newRow(name, 'secondary', 'closed', JSON.stringify(settings), '')));
    return this.info(name);
  }

  /**
   * Disaster recovery: turns a secondary into the zone's primary, with the zone's private key(s) taken
   * from `keyDir` (the old primary's key directory, from a backup). The key must be one the zone record
   * lists; the copy, its serial and its journal carry on, and the zone record is re-signed at once
   * naming the new primary. The records keep their signatures, re-signed as they come due.
   */
  promote(
    name: string,
    keyDir: string,
    options: { primary: string; servers?: string[]; policy?: RegistrationPolicy; allowLoopbackEndpoints?: boolean },
  ): ZoneInfo {
    const row = this.require(name);
    if (row.role !== 'secondary') throw new IdnsError('invalid_request', `zone ${name} is already a primary here`);
    const record = this.zoneRecord(row);
    if (!record) throw new IdnsError('zone_unavailable', `zone ${name} has no copy to promote yet`);
    const published = new Set(record.keys.map((k) => thumbprint(k)));
    const key = this.keys.importFrom(name, keyDir, published);
    const settings = parseZoneSettings({
      primary: options.primary,
      servers: options.servers ?? record.servers,
      keyIds: [key.kid],
      refresh: record.refresh,
      retry: record.retry,
      expire: record.expire,
      minimum: record.minimum,
      ttl: record.ttl,
      handleTtl: DEFAULT_ZONE_TIMERS.handleTtl,
      signatureValidity: DEFAULT_ZONE_TIMERS.signatureValidity,
      resignBefore: DEFAULT_ZONE_TIMERS.resignBefore,
      allowLoopbackEndpoints: options.allowLoopbackEndpoints ?? false,
    });
    this.store.write(() => {
      this.store.zones.promote(name, JSON.stringify(settings));
      if (options.policy) this.store.zones.setPolicy(name, options.policy);
      // A copy does not keep signature expiries (answers read them from the payloads); the re-signer of a
      // primary needs them, so they are filled in once, here.
      for (
        let page = this.store.records.page(row.content, null, 1000);
        page.length > 0;
        page = this.store.records.page(row.content, page[page.length - 1]!, 1000)
      ) {
        for (const r of page) this.store.records.setExp(row.content, r.type, r.key, Number(decodePayload(r.jws).exp));
      }
      const editor = this.editor(name);
      editor.beginChange();
      editor.commit();
    });
    return this.info(name);
  }

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

  /** Operator's view of a zone. */
  info(name: string): ZoneInfo {
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
      handles: this.store.records.count(row.content, 'handle'),
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

  /** Delegates `child` (strictly below `parent`) to its own servers, vouching for its keys by thumbprint. */
  delegate(parent: string, child: string, delegation: { servers: string[]; ds: string[]; ttl?: number }): string {
    // Held to the bounds verifiers apply to a delegation record (records/types.ts), so none it signs is refused.
    if (parseZoneName(child) !== child) throw new IdnsError('invalid_zone_name', `${child} is not a normalised zone name`);
    if (child === parent || !isAtOrBelow(child, parent)) throw new IdnsError('invalid_request', `${child} is not below zone ${parent}`);
    const servers = parseServerUrls(delegation.servers, 'delegation servers');
    const max = RECORD_LIMITS.maxZoneKeys;
    if (delegation.ds.length === 0 || delegation.ds.length > max)
      throw new IdnsError('invalid_request', `a delegation names 1 to ${max} key thumbprints (--ds)`);
    for (const ds of delegation.ds) {
      if (!SHA256_B64U.test(ds)) throw new IdnsError('invalid_request', `--ds ${ds} is not a key thumbprint (43 base64url characters)`);
    }
    const ttl = delegation.ttl;
    if (ttl !== undefined && (!Number.isInteger(ttl) || ttl < 0 || ttl > RECORD_LIMITS.maxTtl)) {
      throw new IdnsError('invalid_request', `a delegation's ttl is 0 to ${RECORD_LIMITS.maxTtl} seconds`);
    }
    return this.store.write(() => {
      const editor = this.editor(parent);
      const occluded = this.store.records.countHandlesUnder(editor.zone.content, child);
      if (occluded > 0) {
        throw new IdnsError('invalid_request', `zone ${parent} holds ${occluded} handle(s) at or below ${child}; delete them before delegating ${child}`);
      }
      editor.beginChange();
      const existed = this.store.records.get(editor.zone.content, 'delegation', child) !== undefined;
      const jws = editor.put('delegation', child, { name: child, servers, ds: [...new Set(delegation.ds)], ttl: delegation.ttl ?? editor.settings.ttl });
      // The cut's name joins the hashed names, so no denial of this zone can cover it (verify.ts verifyDenial).
      if (!existed) editor.addName(child);
      editor.commit();
      return jws;
    });
  }

  /** Removes the delegation of `child` from `parent`. */
  undelegate(parent: string, child: string): void {
    this.store.write(() => {
      const editor = this.editor(parent);
      if (!this.store.records.get(editor.zone.content, 'delegation', child))
        throw new IdnsError('zone_not_found', `zone ${parent} has no delegation for ${child}`);
      editor.beginChange();
      editor.remove('delegation', child);
      editor.removeName(child);
      editor.commit();
    });
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
    if (row.role !== 'secondary') return null;
    const record = this.zoneRecord(row);
    if (record === null) return `zone ${row.name} has not been transferred yet`;
    const last = row.refreshedAt ?? row.createdAt;
    const silentMs = this.clock.now() - last;
    if (silentMs > record.expire * 1000) {
      return `zone ${row.name} expired: no successful check with its primary for ${Math.floor(silentMs / 1000)} s (expire is ${record.expire} s)`;
    }
    return null;
  }

  /** Settings of a secondary zone. */
  secondarySettings(row: ZoneRow): SecondarySettings {
    if (row.role !== 'secondary') throw new IdnsError('invalid_request', `zone ${row.name} is not a secondary here`);
    return parseSecondarySettings(JSON.parse(row.settings));
  }

  /** Parsed settings of a primary zone row (cached by the raw JSON, which changes rarely). */
  settings(row: ZoneRow): ZoneSettings {
    if (row.role !== 'primary') throw new IdnsError('not_primary', `zone ${row.name} is a secondary here`);
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

  /** Opens a primary zone for change; call inside a write transaction. */
  editor(name: string): ZoneEditor {
    const row = this.require(name);
    if (row.role !== 'primary') throw new IdnsError('not_primary', `zone ${name} is a secondary here; changes go to its primary`);
    const settings = this.settings(row);
    const kid = settings.keyIds[0];
    if (kid === undefined) throw new IdnsError('key_unavailable', `zone ${name} has no signing key configured`);
    return new ZoneEditor(this.store, row, settings, this.keys.load(name, kid), this.clock);
  }

  /** Sets the UTS #39 checks of the hosts of new registrations in a primary zone. */
  setHostScripts(name: string, level: HostScriptsLevel): ZoneSettings {
    const row = this.require(name);
    if (row.role !== 'primary') throw new IdnsError('invalid_request', `zone ${name} is a secondary here; set it on its primary`);
    const settings = parseZoneSettings({ ...this.settings(row), hostScripts: level });
    this.store.write(() => this.store.zones.setSettings(name, JSON.stringify(settings)));
    return settings;
  }

  /** Sets who may register in a zone. */
  setPolicy(name: string, policy: RegistrationPolicy): void {
    this.require(name);
    this.store.write(() => this.store.zones.setPolicy(name, policy));
  }

  /** Makes a single-use invite code for a zone; only its hash is stored, so this is the one time it is seen. */
  createInvite(name: string, validForSeconds: number | null = 30 * 24 * 3600): { code: string; expiresAt: number | null } {
    this.require(name);
    const code = `inv_${randomBytes(18).toString('base64url')}`;
    const now = this.clock.now();
    const expiresAt = validForSeconds === null ? null : now + validForSeconds * 1000;
    this.store.write(() => this.store.invites.insert(inviteHash(code), name, now, expiresAt));
    return { code, expiresAt };
  }
}

/** The stored form of an invite code. */
export function inviteHash(code: string): string {
  return createHash('sha256').update(code).digest('hex');
}
