import type { PublicJwk } from './keys.js';

/** The fields every signed record carries (DESIGN.md "Signed records"). */
export interface RecordBase {
  v: 1;
  type: RecordType;
  zone: string;
  /** The zone serial at which this version of the record was signed. */
  serial: number;
  /** Signing time and signature expiry, seconds since the epoch. */
  iat: number;
  exp: number;
}

export type RecordType = 'zone' | 'handle' | 'delegation' | 'denial';

/** Where a handle lives and which keys are hers. */
export interface HandleFields {
  handle: string;
  endpoint: string;
  keys: PublicJwk[];
  ttl: number;
  /** The id (cid) of the signed change request that produced this state; the next change names it as `prev`. */
  op: string;
  /** The id of the entry that began the handle's current registration (its owner's register, or an operator's import or transfer). */
  genesis: string;
  /** The number of the history entry `op` names (from 1): the record follows from entries 1 … seq. */
  seq: number;
  // Owner-set, optional, absent when unset (never empty); checked by handleLinksProblem (handle-links.ts).
  /** The handle's profile page (an endpoint-rule URL). */
  profile?: string;
  /** 1–8 other names of the same person: normalised handles or endpoint-rule URLs. */
  alsoKnownAs?: string[];
  /** The handle this one moved to (normalised, not itself). A resolver reports it, never follows it. */
  movedTo?: string;
  /** 1–4 recovery keys of the owner (docs/protocol.md §6.6): they may undo a change within the zone's recovery window. */
  recovery?: PublicJwk[];
}

/** A delegation (referral) of a child zone. */
export interface DelegationFields {
  name: string;
  servers: string[];
  ds: string[];
  ttl: number;
}

/** A signed run of gaps between hashed names: the range (after, next) and every name hash inside it (see denial.ts). */
export interface DenialFields {
  after: string | null;
  next: string | null;
  /** The zone's name hashes strictly between `after` and `next`, ascending. */
  hashes: string[];
  /** Hash parameters, repeated from the zone record so a denial can be checked on its own. */
  hash: DenialHashParams;
  ttl: number;
}

export interface DenialHashParams {
  alg: 'sha256';
  salt: string;
}

/** The apex record: SOA + DNSKEY + NS in one. */
export interface ZoneFields {
  primary: string;
  servers: string[];
  keys: PublicJwk[];
  refresh: number;
  retry: number;
  expire: number;
  minimum: number;
  ttl: number;
  /** The LtHash digest of every other record of the zone at this serial (digest.ts). */
  digest: string;
  denial: DenialHashParams;
  /**
   * How many records the zone holds at this serial and their size (the sum of their digest elements'
   * lengths, docs/protocol.md §3.2): what a secondary lets a transfer bring. Absent from records signed
   * before idns knew them.
   */
  count?: number;
  size?: number;
  /** Seconds after a change within which a recovery key may undo it (docs/protocol.md §6.6); absent: 259,200 (72 hours). */
  recoveryWindow?: number;
  /**
   * During a key rollover, the ds set the zone asks its parent to publish (docs/protocol.md §3.2, as DNS's
   * CDS): thumbprints of keys this record lists. A parent following the child (`--auto-ds`) adopts it.
   */
  cds?: string[];
}

export type HandleRecord = RecordBase & { type: 'handle' } & HandleFields;
export type DelegationRecord = RecordBase & { type: 'delegation' } & DelegationFields;
export type DenialRecord = RecordBase & { type: 'denial' } & DenialFields;
export type ZoneRecord = RecordBase & { type: 'zone' } & ZoneFields;
export type AnyRecord = HandleRecord | DelegationRecord | DenialRecord | ZoneRecord;

/** Fields a record type carries besides the base, used when signing. */
export type FieldsOf<T extends RecordType> = T extends 'handle'
  ? HandleFields
  : T extends 'delegation'
    ? DelegationFields
    : T extends 'denial'
      ? DenialFields
      : ZoneFields;

const DAY = 24 * 3600;

/**
 * Bounds of record fields, one set for both sides: the authority refuses settings and requests outside
 * them (settings.ts, zones.ts, requests.ts) and verifiers refuse records outside them (recordSchemas), so
 * a verifier is never looser than what an honest zone signs, and never refuses what it signs.
 */
export const RECORD_LIMITS = {
  /** `ttl` of zone, handle and delegation records, seconds. */
  maxTtl: 7 * DAY,
  /** The zone's `minimum` (negative TTL), which is also every denial's `ttl`. */
  maxMinimum: DAY,
  maxRefresh: 30 * DAY,
  maxRetry: 30 * DAY,
  maxExpire: 90 * DAY,
  /** Longest `exp − iat` of any record. */
  maxSignatureValidity: 365 * DAY,
  /** A zone's `recoveryWindow` (docs/protocol.md §6.6). */
  maxRecoveryWindow: 30 * DAY,
  /** Server URLs in a zone record or a delegation. */
  maxServers: 16,
  /** Keys of a zone record; thumbprints in a delegation's `ds`. */
  maxZoneKeys: 8,
} as const;

/** Most keys one handle may publish. */
export const MAX_HANDLE_KEYS = 8;

/** Most recovery keys one handle may name (docs/protocol.md §6.6). */
export const MAX_RECOVERY_KEYS = 4;

/**
 * An RFC 7638 thumbprint, a record's `op` or a zone digest: base64url of a SHA-256, 43 characters, in its
 * one canonical form (the last character carries 4 bits and 2 zero bits), so a placeholder of the right
 * length ("REPLACE-ME…____") is not taken for one.
 */
export const SHA256_B64U = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

/** An Ed25519 public key's `x`: 32 bytes in canonical unpadded base64url (the last character carries 2 bits and 4 zero bits). */
export const ED25519_X_B64U = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;
/** A name hash in a denial: SHA-256, lowercase hex. */
export const NAME_HASH_HEX = /^[0-9a-f]{64}$/;
/** A zone's denial salt: 8 bytes, lowercase hex. */
export const DENIAL_SALT_HEX = /^[0-9a-f]{16}$/;
