import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { GAP_START, nameHash } from '../records/denial.js';
import { ZoneDigest } from '../records/digest.js';
import { RECORD_TYP, signCompact } from '../records/jws.js';
import type { SigningKey } from '../records/keys.js';
import type { DenialFields, FieldsOf, RecordType, ZoneFields } from '../records/types.js';
import type { StoredType } from '../store/records.js';
import type { Store } from '../store/store.js';
import type { ZoneRow } from '../store/zones.js';
import { serialOf } from './serial.js';
import type { ZoneSettings } from './settings.js';

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

  constructor(
    private readonly store: Store,
    readonly zone: ZoneRow,
    readonly settings: ZoneSettings,
    private readonly key: SigningKey,
    private readonly clock: Clock,
  ) {
    this.version = zone.version;
    this.digest = ZoneDigest.fromState(zone.digestState);
    this.iat = epochSeconds(clock);
  }

  /** The zone's current version (including uncommitted changes of this editor). */
  get currentVersion(): number {
    return this.version;
  }

  /** Starts the next version of the zone; the puts and deletes that follow belong to it. */
  beginChange(): number {
    this.version += 1;
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
    this.store.records.put(this.zone.content, type, key, this.version, exp, jws);
    this.journal('put', type, key, jws);
  }

  /** Deletes a record; returns false when it was not there. */
  remove(type: StoredType, key: string): boolean {
    const old = this.store.records.get(this.zone.content, type, key);
    if (!old) return false;
    this.digest.remove(type, key, old.jws);
    this.store.records.delete(this.zone.content, type, key);
    this.journal('del', type, key, null);
    return true;
  }

  /**
   * Splits the denial gap that covers a new name's hash (one gap out, two in). Names are handles and the
   * zone's delegated child zones (which have no '@', so the two never collide).
   */
  addName(name: string): void {
    const hash = nameHash(this.zone.salt, name);
    const gap = this.store.records.gapBelow(this.zone.content, hash);
    if (!gap) throw new Error(`zone ${this.zone.name}: no denial gap covers ${hash}; the zone's denial chain is broken`);
    const next = this.gapNext(gap.jws);
    this.put('denial', gap.key, this.denialFields(gap.key === GAP_START ? null : gap.key, hash));
    this.put('denial', hash, this.denialFields(hash, next));
  }

  /** Merges the two gaps around a removed name's hash (two gaps out, one in). */
  removeName(name: string): void {
    const hash = nameHash(this.zone.salt, name);
    const upper = this.store.records.get(this.zone.content, 'denial', hash);
    const lower = this.store.records.gapBelow(this.zone.content, hash);
    if (!upper || !lower) throw new Error(`zone ${this.zone.name}: the denial gaps around ${hash} are missing`);
    const next = this.gapNext(upper.jws);
    this.remove('denial', hash);
    this.put('denial', lower.key, this.denialFields(lower.key === GAP_START ? null : lower.key, next));
  }

  /** Re-signs an existing record with fresh `iat`/`exp` (same content), as part of the current change. */
  resign(type: StoredType, key: string, jws: string): void {
    const payload = decodePayload(jws);
    const { v: _v, type: _t, zone: _z, serial: _s, iat: _i, exp: _e, ...fields } = payload;
    this.put(type, key, fields as unknown as FieldsOf<typeof type>);
  }

  /** Writes the new version, digest and signed zone record. Call once, after the last change, inside the transaction. */
  commit(): { version: number; record: string } {
    const fields: ZoneFields = {
      primary: this.settings.primary,
      servers: this.settings.servers,
      keys: [this.key.publicJwk],
      refresh: this.settings.refresh,
      retry: this.settings.retry,
      expire: this.settings.expire,
      minimum: this.settings.minimum,
      ttl: this.settings.ttl,
      digest: this.digest.value(),
      denial: { alg: 'sha256', salt: this.zone.salt },
    };
    const record = this.sign('zone', fields);
    this.store.zones.updateState(this.zone.name, this.version, this.digest.state(), record, this.iat + this.settings.signatureValidity);
    this.store.markChanged(this.zone.name);
    return { version: this.version, record };
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

  private journal(action: 'put' | 'del', type: StoredType, key: string, jws: string | null): void {
    if (!this.journaling) return;
    this.store.journal.append(this.zone.name, { version: this.version, idx: this.idx++, action, type, key, jws }, this.clock.now());
  }

  private denialFields(after: string | null, next: string | null): DenialFields {
    return { after, next, hash: { alg: 'sha256', salt: this.zone.salt }, ttl: this.settings.minimum };
  }

  private gapNext(jws: string): string | null {
    return (decodePayload(jws) as unknown as DenialFields).next;
  }
}

/** Reads the payload of a JWS this server signed itself (trusted, so no verification). */
export function decodePayload(jws: string): Record<string, unknown> {
  const payload = jws.slice(jws.indexOf('.') + 1, jws.lastIndexOf('.'));
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
}
