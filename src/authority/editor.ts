import type { Clock } from '../clock.js';
import { IdnsError } from '../errors.js';
import { signOperatorEntry, type OperatorEntryFields } from '../records/operator-entry.js';
import { epochSeconds } from '../clock.js';
import { DENIAL_MAX_HASHES, nameHash } from '../records/denial.js';
import { ZoneDigest } from '../records/digest.js';
import { parseIJson } from '../records/ijson.js';
import { RECORD_TYP, signCompact } from '../records/jws.js';
import type { PublicJwk, SigningKey } from '../records/keys.js';
import type { DenialFields, FieldsOf, RecordType, ZoneFields } from '../records/types.js';
import { historyKey, MAX_HISTORY_CHARS, MAX_HISTORY_ENTRIES } from '../records/history-key.js';
import { HISTORY_EXP, type StoredType } from '../store/records.js';
import type { JournaledType } from '../store/journal.js';
import type { Store } from '../store/store.js';
import type { ZoneRow } from '../store/zones.js';
import { serialOf } from '../records/serial.js';
import type { ZoneSettings } from './settings.js';
import { changeLeafHash, checkpointMapRoot, checkpointSize, signCheckpoint, zoneRecordLeafHash } from '../transparency/zone-log.js';
import { isMapped, mapKey, mapValue, ZoneMap } from '../transparency/zone-map.js';
import { ZoneLog } from '../transparency/zone-log-writer.js';

/**
 * Changes one zone inside a write transaction: signs the records it puts, keeps the denial gaps, the
 * journal and the digest in step, and signs the new zone record on commit. Each `beginChange()` is one
 * new version (serial) of the zone; a batch of changes is signed and committed together.
 *
 * Callers validate a change completely before touching the editor, so a refused change writes nothing.
 */
export class ZoneEditor {
  private version: number;
  private idx = 0;
  private readonly digest: ZoneDigest;
  private readonly iat: number;
  private changed = false;
  /** When false, changes are not journaled (a bulk import, after which secondaries take a full transfer). */
  journaling = true;
  /** The zone's log, opened at the first change it records. */
  private log: ZoneLog | null = null;
  /** True when this editor built the log from the content (the zone had none: created by an older idns). */
  private seeded = false;
  /**
   * The zone's map, changed with each record (docs/protocol.md §13.6), opened at the first change of a
   * record it holds; null until then, or when it is to be built whole at commit (`rebuildMap`).
   */
  private map: ZoneMap | null = null;
  /** True when commit() builds the map from the records: the zone has none yet, or a bulk import changed most of it. */
  private rebuildMap = false;

  constructor(
    private readonly store: Store,
    readonly zone: ZoneRow,
    readonly settings: ZoneSettings,
    private readonly key: SigningKey,
    private readonly clock: Clock,
    /** Every key the zone record lists (the signing key first; during a rollover, both), and the ds set it asks its parent for. */
    private readonly published: { keys: PublicJwk[]; cds?: string[] } = { keys: [key.publicJwk] },
  ) {
    this.version = zone.version;
    this.digest = ZoneDigest.fromState(zone.digestState);
    this.iat = epochSeconds(clock);
    this.totals = contentTotals(zone.record);
  }

  /**
   * The zone's record count and size, kept with every change as the digest is, from the last zone record
   * (signed here, or checked against the content when copied); null when that record does not say (signed
   * by an older idns): commit() then counts them once.
   */
  private totals: { count: number; size: number } | null;

  /** The zone's current version (including uncommitted changes of this editor). */
  get currentVersion(): number {
    return this.version;
  }

  /**
   * Starts the next version of the zone; the puts and deletes that follow belong to it. `skipped` versions
   * are passed over first (zone bump-serial: the serial moves past ones published before a restore).
   */
  beginChange(skipped = 0): number {
    this.version += 1 + skipped;
    this.idx = 0;
    this.changed = true;
    return this.version;
  }

  /** Signs and stores a record, replacing any record with the same type and key. */
  put<T extends Exclude<RecordType, 'zone'>>(type: T, key: string, fields: FieldsOf<T>): string {
    const jws = this.sign(type, fields);
    this.putSigned(type, key, jws, this.iat + this.settings.signatureValidity);
    return jws;
  }

  /**
   * Stores a record signed ahead of the transaction (bulk import signs on every core first): `jws` must
   * carry this editor's zone and the serial of the change begun last.
   */
  putSigned(type: StoredType, key: string, jws: string, exp: number): void {
    const old = this.store.records.get(this.zone.content, type, key);
    if (old) this.digest.remove(type, key, old.jws);
    this.digest.add(type, key, jws);
    this.count(old ? 0 : 1, elementSize(type, key, jws) - (old ? elementSize(type, key, old.jws) : 0));
    const leaf = this.logged('put', type, key, jws);
    this.mapped(type, key, jws);
    this.store.records.put(this.zone.content, type, key, this.version, exp, jws, leaf);
    this.journal('put', type, key, jws);
  }

  /**
   * Stores new records signed and digested elsewhere (a bulk import signs on worker threads): `digest` is
   * the digest of exactly these records, none of which exists yet, so no old version is looked up. For a
   * type the log records, `leaves` may give each record's leaf hash (changeLeafHash, 32 bytes each, in
   * order), computed where it was signed.
   */
  putNew(type: StoredType, records: readonly { key: string; jws: string }[], exp: number, digest: ZoneDigest, leaves?: Uint8Array): void {
    // Many records at once: the map is built whole at commit, two rows a record, rather than changed
    // node by node (about 2 log2 n reads and writes each).
    if (isMapped(type)) this.rebuildMap = true;
    // History entries get their leaves in the order they are stored (the import's, by key).
    const leafOf = (r: { key: string; jws: string }, i: number): number | null =>
      leaves === undefined ? this.logged('put', type, r.key, r.jws) : this.zoneLog().append(Buffer.from(leaves.buffer, leaves.byteOffset + 32 * i, 32));
    const logged = type === 'op' || type === 'delegation' ? records.map((r, i) => ({ ...r, leaf: leafOf(r, i) })) : records;
    this.store.records.insertNew(this.zone.content, type, this.version, exp, logged);
    let size = 0;
    for (const r of records) {
      this.journal('put', type, r.key, r.jws);
      size += elementSize(type, r.key, r.jws);
    }
    this.count(records.length, size);
    this.digest.merge(digest.state());
  }

  /**
   * The number the next entry of a handle's history gets; throws history_full when the history has no
   * room. Callers ask before they begin the change, so a refused change writes nothing.
   */
  nextHistorySeq(handle: string, entryChars: number): number {
    const { entries, chars } = this.store.records.historySize(this.zone.content, handle);
    if (entries + 1 > MAX_HISTORY_ENTRIES || chars + entryChars > MAX_HISTORY_CHARS) {
      throw new IdnsError(
        'history_full',
        `${handle} has ${entries} changes of ${chars} characters: one more would pass the most a handle's history holds (${MAX_HISTORY_ENTRIES} changes, ${MAX_HISTORY_CHARS} characters)`,
      );
    }
    return entries + 1;
  }

  /**
   * Appends a signed request (the owner's, or an operator entry) to a handle's history as entry `seq`
   * (from nextHistorySeq), as zone content of the current change: stored, digested and journaled like a
   * record, never re-signed or replaced.
   */
  appendHistory(handle: string, jws: string, seq: number): void {
    this.putSigned('op', historyKey(handle, seq), jws, HISTORY_EXP);
  }

  /** Signs an operator entry of this zone (a statement of the zone, not of a handle's owner), dated now. */
  operatorEntry(fields: Omit<OperatorEntryFields, 'zone' | 'iat'>): string {
    return signOperatorEntry({ ...fields, zone: this.zone.name, iat: this.iat }, this.key);
  }

  /**
   * Takes a record that is stored under the zone's content already but not yet in its digest (the
   * schema-3 migration moved the history there) into the digest, the totals and the journal, as a `put`
   * of the current change, so that secondaries receive it by incremental transfer.
   */
  adoptStored(type: StoredType, key: string, jws: string): void {
    // A log this editor built from the content holds the record already.
    this.zoneLog();
    if (!this.seeded) {
      const leaf = this.logged('put', type, key, jws);
      if (leaf !== null && type === 'op') this.store.records.setLeaf(this.zone.content, key, leaf);
    }
    this.digest.add(type, key, jws);
    this.count(1, elementSize(type, key, jws));
    this.mapped(type, key, jws);
    this.journal('put', type, key, jws);
  }

  /** Deletes a record; returns false when it was not there. */
  remove(type: StoredType, key: string): boolean {
    const old = this.store.records.get(this.zone.content, type, key);
    if (!old) return false;
    this.digest.remove(type, key, old.jws);
    this.count(-1, -elementSize(type, key, old.jws));
    this.store.records.delete(this.zone.content, type, key);
    this.logged('del', type, key, null);
    this.mapped(type, key, null);
    this.journal('del', type, key, null);
    return true;
  }

  /**
   * Adds a new name's hash to the denial whose range holds it, splitting that denial in two when its list
   * grows past the limit. Names are handles and the zone's delegated child zones (which have no '@', so
   * the two never collide).
   */
  addName(name: string): void {
    const hash = nameHash(this.zone.salt, name);
    const stored = this.store.records.gapBelow(this.zone.content, hash);
    if (!stored) throw new Error(`zone ${this.zone.name}: no denial covers ${hash}; the zone's denial chain is broken`);
    const denial = denialOf(stored.jws);
    const at = denial.hashes.findIndex((h) => h >= hash);
    if (denial.hashes[at] === hash) throw new Error(`zone ${this.zone.name}: ${hash} is already a name of the zone`);
    const hashes = at < 0 ? [...denial.hashes, hash] : [...denial.hashes.slice(0, at), hash, ...denial.hashes.slice(at)];
    this.putDenials(stored.key, denial.after, denial.next, hashes);
  }

  /**
   * Drops a removed name's hash: from the list of the denial that holds it, or, when the hash bounds two
   * denials, by merging them (and splitting the result again if it is too long).
   */
  removeName(name: string): void {
    const hash = nameHash(this.zone.salt, name);
    const lower = this.store.records.gapBelow(this.zone.content, hash);
    if (!lower) throw new Error(`zone ${this.zone.name}: no denial lies below ${hash}; the zone's denial chain is broken`);
    const low = denialOf(lower.jws);
    const upper = this.store.records.get(this.zone.content, 'denial', hash);
    if (upper) {
      const up = denialOf(upper.jws);
      this.remove('denial', hash);
      this.putDenials(lower.key, low.after, up.next, [...low.hashes, ...up.hashes]);
      return;
    }
    if (!low.hashes.includes(hash)) throw new Error(`zone ${this.zone.name}: ${hash} is not among the zone's name hashes`);
    this.putDenials(
      lower.key,
      low.after,
      low.next,
      low.hashes.filter((h) => h !== hash),
    );
  }

  /** Signs the denial (after, next) listing `hashes`, as two denials split at the middle hash when the list is too long. */
  private putDenials(key: string, after: string | null, next: string | null, hashes: string[]): void {
    if (hashes.length <= DENIAL_MAX_HASHES) {
      this.put('denial', key, this.denialFields(after, next, hashes));
      return;
    }
    const mid = hashes.length >> 1;
    const bound = hashes[mid]!;
    this.put('denial', key, this.denialFields(after, bound, hashes.slice(0, mid)));
    this.put('denial', bound, this.denialFields(bound, next, hashes.slice(mid + 1)));
  }

  /** Re-signs an existing record with fresh `iat`/`exp` (same content), as part of the current change. History entries are never re-signed. */
  resign(type: StoredType, key: string, jws: string): void {
    if (type === 'op') throw new Error(`history entry ${key} cannot be re-signed: it is its owner's signature`);
    const payload = decodePayload(jws);
    const { v: _v, type: _t, zone: _z, serial: _s, iat: _i, exp: _e, ...fields } = payload;
    this.put(type, key, fields as unknown as FieldsOf<typeof type>);
  }

  /** Writes the new version, digest and signed zone record. Call once, after the last change, inside the transaction. */
  commit(): { version: number; record: string } {
    const fields: ZoneFields = {
      primary: this.settings.primary,
      servers: this.settings.servers,
      keys: this.published.keys,
      refresh: this.settings.refresh,
      retry: this.settings.retry,
      expire: this.settings.expire,
      minimum: this.settings.minimum,
      ttl: this.settings.ttl,
      digest: this.digest.value(),
      denial: { alg: 'sha256', salt: this.zone.salt },
      ...(this.totals ?? this.store.records.totals(this.zone.content)),
      recoveryWindow: this.settings.recoveryWindow,
      ...(this.published.cds === undefined ? {} : { cds: this.published.cds }),
    };
    const record = this.sign('zone', fields);
    this.store.zones.updateState(this.zone.name, this.version, this.digest.state(), record, this.iat + this.settings.signatureValidity);
    // The zone record is the version's last change: journaled (secondaries append the same leaf) and
    // logged, then the checkpoint of the tree that ends with it.
    this.journal('put', 'zone', '', record);
    const log = this.zoneLog();
    log.append(zoneRecordLeafHash(record));
    // Built whole, or changed node by node (each tile written once, now); what was changed before a bulk
    // change made the editor build it whole is dropped with the rest.
    const rebuilt = this.rebuildMap || this.zoneMap() === null;
    const mapRoot = rebuilt ? this.store.maps.rebuild(this.zone.content) : this.map!.commit();
    this.store.maps.committed(this.zone.content, mapRoot);
    this.store.zones.setCheckpoint(this.zone.name, signCheckpoint(this.zone.name, log.size, log.root(), mapRoot, this.key));
    this.store.markChanged(this.zone.name);
    return { version: this.version, record };
  }

  private count(records: number, size: number): void {
    if (this.totals === null) return;
    this.totals = { count: this.totals.count + records, size: this.totals.size + size };
  }

  /** True when a change was begun since this editor was made. */
  get dirty(): boolean {
    return this.changed;
  }

  private sign<T extends RecordType>(type: T, fields: FieldsOf<T>): string {
    const payload = {
      v: 1,
      type,
      zone: this.zone.name,
      serial: serialOf(this.version),
      iat: this.iat,
      exp: this.iat + this.settings.signatureValidity,
      ...fields,
    };
    return signCompact(payload, this.key, RECORD_TYP);
  }

  /** Appends the change's leaf to the zone's log when the log records such changes; returns the leaf's index, or null. */
  private logged(action: 'put' | 'del', type: StoredType, key: string, jws: string | null): number | null {
    const hash = changeLeafHash(action, type, key, jws);
    return hash === null ? null : this.zoneLog().append(hash);
  }

  /** Changes the record's value in the zone's map (a put's JWS; null: removed), unless the map is built at commit. */
  private mapped(type: StoredType, key: string, jws: string | null): void {
    if (!isMapped(type)) return;
    const map = this.zoneMap();
    if (map === null) return;
    if (jws === null) map.remove(mapKey(type, key));
    else map.set(mapKey(type, key), mapValue(jws));
  }

  /**
   * The zone's map, or null when commit() builds it whole: when the stored map is not the one the last
   * checkpoint names (a zone of an older idns, whose checkpoint names none; a database upgraded to keep
   * maps).
   */
  private zoneMap(): ZoneMap | null {
    if (this.map === null && !this.rebuildMap) {
      const named = checkpointMapRoot(this.zone.checkpoint);
      const stored = new ZoneMap(this.store.maps.nodes(this.zone.content, named));
      if (named !== null && stored.root().equals(named)) this.map = stored;
      else this.rebuildMap = true;
    }
    return this.rebuildMap ? null : this.map;
  }

  /**
   * The zone's log. A zone without a checkpoint (made by an older idns) gets its log here, built from its
   * content: its history entries, then its delegations, each in key order.
   */
  private zoneLog(): ZoneLog {
    if (this.log !== null) return this.log;
    const { content, checkpoint } = this.zone;
    this.log = ZoneLog.at(this.store.logs, content, checkpointSize(checkpoint));
    if (checkpoint !== '') return this.log;
    this.seeded = true;
    for (const type of ['op', 'delegation'] as const) {
      for (
        let page = this.store.records.keyPage(content, type, null, 1000);
        page.length > 0;
        page = this.store.records.keyPage(content, type, page.at(-1)!.key, 1000)
      ) {
        for (const r of page) {
          const leaf = this.log.append(changeLeafHash('put', type, r.key, r.jws)!);
          if (type === 'op') this.store.records.setLeaf(content, r.key, leaf);
        }
      }
    }
    return this.log;
  }

  private journal(action: 'put' | 'del', type: JournaledType, key: string, jws: string | null): void {
    if (!this.journaling) return;
    this.store.journal.append(this.zone.name, { version: this.version, idx: this.idx++, action, type, key, jws }, this.clock.now());
  }

  private denialFields(after: string | null, next: string | null, hashes: string[]): DenialFields {
    return { after, next, hashes, hash: { alg: 'sha256', salt: this.zone.salt }, ttl: this.settings.minimum };
  }
}

/** The length of a record's digest element `type "\n" key "\n" jws` (all ASCII): what it adds to the zone record's `size`. */
export function elementSize(type: string, key: string, jws: string): number {
  return type.length + key.length + jws.length + 2;
}

/** The `count` and `size` a zone record (checked or signed here) states, or null when it states none. */
export function contentTotals(zoneRecord: string): { count: number; size: number } | null {
  if (zoneRecord === '') return null;
  const { count, size } = decodePayload(zoneRecord);
  return typeof count === 'number' && typeof size === 'number' ? { count, size } : null;
}

/** The range and hashes of a denial this server signed itself. */
function denialOf(jws: string): Pick<DenialFields, 'after' | 'next' | 'hashes'> {
  return decodePayload(jws) as unknown as DenialFields;
}

/**
 * Reads the payload of a stored record (signed here, or copied by a secondary), without verifying the
 * signature. Still I-JSON: a copied record with a member twice must not be read (or re-signed after a
 * promotion) as whichever value JSON.parse keeps.
 */
export function decodePayload(jws: string): Record<string, unknown> {
  const payload = jws.slice(jws.indexOf('.') + 1, jws.lastIndexOf('.'));
  return parseIJson(Buffer.from(payload, 'base64url'), 'a stored record payload', 'internal') as Record<string, unknown>;
}
