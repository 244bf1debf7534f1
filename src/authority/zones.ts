import { serialLess, serialOf, serialsFrom } from '../records/serial.js';
import { createHash, randomBytes } from 'node:crypto';
import { IdnsError } from '../errors.js';
import { isAtOrBelow, parseZoneName } from '../names/zone.js';
import { GAP_START } from '../records/denial.js';
import { ZoneDigest } from '../records/digest.js';
import { thumbprint } from '../records/keys.js';
import type { RegistrationPolicy, ZoneRow } from '../store/zones.js';
import { ZoneEditor } from './editor.js';
import { requestedDs } from './rollover-state.js';
import { ZoneReader, type ZoneInfo } from './zone-reader.js';
import { DEFAULT_ZONE_TIMERS, parseSecondarySettings, parseServerUrls, parseZoneSettings, type SecondarySettings, type ZoneSettings } from './settings.js';
import { HISTORY_EXP } from '../store/records.js';
import { historyKey, MAX_HISTORY_SEQ, parseHistoryKey } from '../records/history-key.js';
import { beginsRegistration } from '../records/history-entries.js';
import { requestId } from '../records/change-request.js';
import type { HandleFields } from '../records/types.js';
import { definedLinks } from '../records/handle-links.js';
import { decodePayload } from './editor.js';
import { RECORD_LIMITS, SHA256_B64U } from '../records/types.js';
import type { HostScriptsLevel } from '../names/host-scripts.js';

export type { ZoneInfo } from './zone-reader.js';

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

/**
 * Zones held by this server, administered: creating, promoting, delegating, setting policies, and opening
 * a zone for change (the ZoneEditor). Reading them is the ZoneReader's (zone-reader.ts), which the parts
 * that only read (answers, replication, the operator page) are given.
 */
export class ZoneService extends ZoneReader {
  /** Creates a primary zone with a new signing key, its zone record and its first denial gap. */
  create(name: string, options: CreateZoneOptions): ZoneInfo {
    if (this.store.zones.get(name)) throw new IdnsError('zone_exists', `zone ${name} already exists here`);
    // A primary's content id is its name: a deleted zone's records must be gone before it is made again.
    if (this.store.records.isRetired(name))
      throw new IdnsError('zone_exists', `zone ${name} was deleted here and its records are still being removed; try again shortly`);
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
      checkpoint: '',
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
   * Re-points a zone held here (`idns zone secondary` on a zone already held): a secondary copies from
   * `primaries` from its next check on (trusting `ds`, or the keys it trusted); its copy, serial and
   * journal carry on, so an incremental transfer continues when the new source's journal reaches back.
   * A fenced primary (promoted elsewhere) becomes a secondary of the new primary this way, trusting the
   * keys of its zone record; a primary that is not fenced is refused (it is the zone's primary).
   */
  repoint(name: string, source: { primaries: string[]; ds?: string[] | undefined }): ZoneInfo {
    const row = this.require(name);
    let ds = source.ds;
    if (row.role === 'primary') {
      if (this.settings(row).fencedBy === undefined) {
        throw new IdnsError('invalid_request', `zone ${name} is the primary here; only a fenced one (promoted elsewhere) may become a secondary`);
      }
      ds ??= (this.zoneRecord(row)?.keys ?? []).map((k) => thumbprint(k));
    } else {
      ds ??= this.secondarySettings(row).ds;
    }
    const settings = JSON.stringify(parseSecondarySettings({ primaries: source.primaries, ds: [...new Set(ds)] }));
    this.store.write(() => (row.role === 'primary' ? this.store.zones.demote(name, settings) : this.store.zones.setSettings(name, settings)));
    return this.info(name);
  }

  /**
   * Removes a zone held here, primary or secondary: its row, journal and invites at once, its content in
   * the background (retired). Its key files stay in DIR/keys (deleting keys is the operator's own act).
   */
  deleteZone(name: string): void {
    const row = this.require(name);
    this.store.write(() => {
      this.store.zones.delete(name);
      if (row.content !== '') this.store.records.retire(row.content, this.clock.now());
    });
    if (row.content === '') return;
    // In bounded transactions (a running server goes on between them); the housekeeper finishes it if
    // this process stops first.
    while (this.store.write(() => this.store.deleteSomeContent(row.content, 5000)) === 5000);
    this.store.write(() => this.store.records.unretire(row.content));
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
    // The zone goes on as its signed records say it was run: timers and TTLs from the zone record, the
    // handles' TTL from a handle record, the signatures' validity from the zone record's. What no record
    // publishes (the registration policy, the tombstone cool-down, the host-script checks) takes the
    // defaults, or what the operator says.
    const handle = this.store.records.firstOfType(row.content, 'handle');
    const validity = record.exp - record.iat;
    const signatureValidity = validity >= 3600 && validity <= RECORD_LIMITS.maxSignatureValidity ? validity : DEFAULT_ZONE_TIMERS.signatureValidity;
    const settings = parseZoneSettings({
      primary: options.primary,
      servers: options.servers ?? record.servers,
      keyIds: [key.kid],
      refresh: record.refresh,
      retry: record.retry,
      expire: record.expire,
      minimum: record.minimum,
      ttl: record.ttl,
      handleTtl: handle !== undefined ? Number(decodePayload(handle).ttl) : DEFAULT_ZONE_TIMERS.handleTtl,
      signatureValidity,
      resignBefore: Math.min(DEFAULT_ZONE_TIMERS.resignBefore, Math.floor(signatureValidity / 2)),
      allowLoopbackEndpoints: options.allowLoopbackEndpoints ?? false,
      ...(record.recoveryWindow !== undefined ? { recoveryWindow: record.recoveryWindow } : {}),
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
        for (const r of page) this.store.records.setExp(row.content, r.type, r.key, r.type === 'op' ? HISTORY_EXP : Number(decodePayload(r.jws).exp));
      }
      const editor = this.editor(name);
      editor.beginChange();
      editor.commit();
    });
    return this.info(name);
  }

  /** Delegates `child` (strictly below `parent`) to its own servers, vouching for its keys by thumbprint. */
  delegate(parent: string, child: string, delegation: { servers: string[]; ds: string[]; ttl?: number; autoDs?: boolean }): string {
    // Held to the bounds verifiers apply to a delegation record (records/schemas.ts), so none it signs is refused.
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
      if (delegation.autoDs !== undefined) this.followChild(parent, child, delegation.autoDs);
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
      this.followChild(parent, child, false);
    });
  }

  /** Whether the delegation of `child` follows the ds set the child asks for (`--auto-ds`, src/authority/auto-ds.ts). */
  private followChild(parent: string, child: string, follow: boolean): void {
    const others = (this.settings(this.require(parent)).autoDs ?? []).filter((c) => c !== child);
    const autoDs = follow ? [...others, child] : others;
    this.changeSettings(parent, { autoDs: autoDs.length === 0 ? undefined : autoDs });
  }

  /** The delegation of `child` held in primary zone `parent`, as signed (null when there is none). */
  delegationOf(parent: string, child: string): { jws: string; servers: string[]; ds: string[]; ttl: number } | null {
    const jws = this.store.records.jws(this.require(parent).content, 'delegation', child);
    if (jws === undefined) return null;
    const { servers, ds, ttl } = decodePayload(jws) as { servers: string[]; ds: string[]; ttl: number };
    return { jws, servers, ds, ttl };
  }

  /** A new signing key for a zone, in its key directory (not used until its settings name it); returns its kid. */
  newKey(name: string): string {
    return this.keys.create(name).kid;
  }

  /**
   * Changes a primary zone's key settings (keyIds, rollover) and, when `sign`, signs a new version in the
   * same transaction, whose zone record lists the keys and the ds set asked for (src/authority/rollover.ts).
   */
  changeKeys(name: string, change: Partial<ZoneSettings>, sign: boolean): ZoneSettings {
    return this.store.write(() => {
      const settings = this.changeSettings(name, change);
      if (sign) {
        const editor = this.editor(name);
        editor.beginChange();
        editor.commit();
      }
      return settings;
    });
  }

  /** Opens a primary zone for change (not a fenced one: nothing is signed there); call inside a write transaction. */
  editor(name: string): ZoneEditor {
    this.assureNotFenced(this.require(name));
    if (this.store.zones.historyUpgrade(name) !== 0) this.addMigratedHistory(name);
    return this.newEditor(name);
  }

  /**
   * Adds what the upgrade to schema 3 moved into their content to the digests of the primary zones that
   * wait for it, each in a version of its own (called at start-up; editor() does it before any change).
   * Returns the zones it could not upgrade yet, with the reason (their key is not here).
   */
  addMigratedHistories(): { zone: string; reason: string }[] {
    const failed: { zone: string; reason: string }[] = [];
    for (const name of this.store.zones.historyPending()) {
      try {
        this.addMigratedHistory(name);
      } catch (err) {
        if (!(err instanceof IdnsError)) throw err;
        failed.push({ zone: name, reason: err.message });
      }
    }
    return failed;
  }

  /**
   * One version that upgrades a zone's content. After schema 3 (history_pending 1), it takes the migrated
   * history into the digest and journal (so secondaries get it by incremental transfer), and gives every
   * handle without a signed first entry one: an operator entry (`import`) signed by the zone key, stating
   * the import line's state (`legacyOp`: the id the line gave the handle) or, when no line was kept, the
   * record's. After schema 3 and 4 alike, every handle record that does not name its `genesis` and `seq`
   * yet is re-signed with them, read from its history.
   */
  private addMigratedHistory(name: string): void {
    const row = this.require(name);
    this.store.write(() => {
      if (row.role !== 'primary') {
        this.store.zones.clearHistoryPending(name);
        return;
      }
      const editor = this.newEditor(name);
      editor.beginChange();
      if (this.store.zones.historyUpgrade(name) === 1) this.adoptMigratedHistory(editor, row.content);
      this.addGenesisAndSeq(editor, row.content);
      editor.commit();
      this.store.zones.clearHistoryPending(name);
    });
  }

  private adoptMigratedHistory(editor: ZoneEditor, content: string): void {
    const first = new Set<string>();
    for (const key of this.store.records.keys(content, 'op')) {
      editor.adoptStored('op', key, this.store.records.jws(content, 'op', key)!);
      const at = parseHistoryKey(key)!;
      if (at.seq === 1) first.add(at.handle);
    }
    const lines = new Map(this.store.zones.migratedImports(editor.zone.name).map((m) => [m.handle, m]));
    const firstless = new Set([...lines.keys(), ...this.store.records.keys(content, 'handle').filter((h) => !first.has(h))]);
    for (const handle of [...firstless].sort()) {
      const stored = this.store.records.jws(content, 'handle', handle);
      const record = stored === undefined ? null : (decodePayload(stored) as unknown as HandleFields);
      const line = lines.get(handle);
      // An import line states the imported state; without one (none was kept), the record's is all there is.
      const state = line ? (JSON.parse(line.line) as Pick<HandleFields, 'endpoint' | 'keys'>) : record!;
      const entry = editor.operatorEntry({
        action: 'import',
        handle,
        endpoint: state.endpoint,
        keys: state.keys,
        ...(line ? { legacyOp: line.cid } : definedLinks(record!)),
      });
      editor.putSigned('op', historyKey(handle, line?.seq ?? 1), entry, HISTORY_EXP);
      if (record !== null && (!line || record.op === line.cid)) {
        const { endpoint, keys, ttl } = record;
        const op = requestId(entry);
        editor.put('handle', handle, { handle, endpoint, keys, ttl, op, genesis: op, seq: line?.seq ?? 1, ...definedLinks(record) });
      }
    }
  }

  /**
   * Re-signs each handle record that does not name its `genesis` and `seq` (signed before schema 4)
   * with them: `seq` is the number of the history entry its `op` names, `genesis` the id of the last
   * entry up to it that began a registration (an owner's register, an operator's import or transfer).
   */
  private addGenesisAndSeq(editor: ZoneEditor, content: string): void {
    for (const handle of this.store.records.keys(content, 'handle')) {
      const stored = this.store.records.jws(content, 'handle', handle)!;
      const record = decodePayload(stored) as unknown as HandleFields;
      if (typeof record.genesis === 'string') continue;
      let genesis: string | null = null;
      let seq = 0;
      for (const [entrySeq, jws] of this.store.records.history(content, handle, 0, MAX_HISTORY_SEQ)) {
        const id = requestId(jws);
        if (beginsRegistration(jws)) genesis = id;
        if (id === record.op) {
          seq = entrySeq;
          break;
        }
      }
      if (genesis === null || seq === 0) {
        throw new IdnsError('internal', `zone ${editor.zone.name}: the history of ${handle} does not hold the entry ${record.op} its record names`);
      }
      const { endpoint, keys, ttl, op } = record;
      editor.put('handle', handle, { handle, endpoint, keys, ttl, op, genesis, seq, ...definedLinks(record) });
    }
  }

  private newEditor(name: string): ZoneEditor {
    const row = this.require(name);
    // settings() refuses a secondary (notPrimary, naming where changes go).
    const settings = this.settings(row);
    const kid = settings.keyIds[0];
    if (kid === undefined) throw new IdnsError('key_unavailable', `zone ${name} has no signing key configured`);
    const key = this.keys.load(name, kid);
    const keys = [key.publicJwk, ...settings.keyIds.slice(1).map((other) => this.keys.load(name, other).publicJwk)];
    return new ZoneEditor(this.store, row, settings, key, this.clock, { keys, cds: requestedDs(settings) });
  }

  /** Sets the witnesses a primary zone offers its checkpoints to besides its secondaries (none: only they). */
  setWitnesses(name: string, urls: readonly string[]): ZoneSettings {
    return this.changeSettings(name, { witnesses: urls.length === 0 ? undefined : [...new Set(parseServerUrls([...urls], 'witnesses'))] });
  }

  /** Sets the UTS #39 checks of the hosts of new registrations in a primary zone. */
  setHostScripts(name: string, level: HostScriptsLevel): ZoneSettings {
    return this.changeSettings(name, { hostScripts: level });
  }

  /** Sets how long a deleted handle of a primary zone stays reserved to the keys it had (seconds). */
  setTombstoneCooldown(name: string, seconds: number): ZoneSettings {
    return this.changeSettings(name, { tombstoneCooldown: seconds });
  }

  /**
   * Sets the recovery window of a primary zone (seconds, docs/protocol.md §6.6) and signs a new version:
   * verifiers read the window from the zone record.
   */
  setRecoveryWindow(name: string, seconds: number): ZoneSettings {
    return this.store.write(() => {
      const settings = this.changeSettings(name, { recoveryWindow: seconds });
      const editor = this.editor(name);
      editor.beginChange();
      editor.commit();
      return settings;
    });
  }

  /**
   * Moves a primary zone's serial forward to `serial` in one new version (RFC 1982: at most 2^31 − 1
   * ahead). After a restore from a backup, resolvers that saw a newer serial refuse the older versions
   * (a rollback); the operator moves the serial past the newest one published. Returns the new serial.
   */
  bumpSerial(name: string, serial: number): number {
    const row = this.require(name);
    if (row.role !== 'primary') throw new IdnsError('invalid_request', `zone ${name} is a secondary here; its serial follows its primary's`);
    if (!Number.isSafeInteger(serial) || serial < 0 || serial >= 2 ** 32) throw new IdnsError('invalid_request', 'a serial is 0 to 4294967295');
    const ahead = serialsFrom(serialOf(row.version), serial);
    if (ahead === 0 || ahead >= 2 ** 31) {
      throw new IdnsError('invalid_request', `serial ${serial} is not after zone ${name}'s serial ${serialOf(row.version)} (RFC 1982: 1 to 2^31 - 1 ahead)`);
    }
    return this.store.write(() => {
      const editor = this.editor(name);
      editor.beginChange(ahead - 1);
      return serialOf(editor.commit().version);
    });
  }

  /**
   * Fences a primary zone (docs/operations.md, "Fencing"): another server holds a newer zone record, signed
   * by the zone's key, naming another primary. From now on it takes no writes and signs nothing.
   */
  fence(name: string, by: { primary: string; serial: number }): void {
    this.changeSettings(name, { fencedBy: by });
  }

  /**
   * Lifts a fence (the other primary was retired): the zone takes writes again, and its serial moves past
   * the one it was fenced by, so no serial is signed twice. Returns the new serial.
   */
  unfence(name: string): number {
    const fence = this.settings(this.require(name)).fencedBy;
    if (fence === undefined) throw new IdnsError('invalid_request', `zone ${name} is not fenced`);
    return this.store.write(() => {
      const row = this.require(name);
      const { fencedBy: _gone, ...settings } = this.settings(row);
      this.store.zones.setSettings(name, JSON.stringify(parseZoneSettings(settings)));
      const ours = serialOf(row.version);
      const past = serialOf(fence.serial + 1);
      return this.bumpSerial(name, serialLess(ours, past) ? past : serialOf(ours + 1));
    });
  }

  private changeSettings(name: string, change: Partial<ZoneSettings>): ZoneSettings {
    const row = this.require(name);
    if (row.role !== 'primary') throw new IdnsError('invalid_request', `zone ${name} is a secondary here; set it on its primary`);
    const settings = parseZoneSettings({ ...this.settings(row), ...change });
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
