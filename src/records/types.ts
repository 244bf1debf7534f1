import { z } from 'zod';
import type { PublicJwk } from './keys.js';
import { DENIAL_MAX_HASHES } from './denial.js';

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

// Schemas for records read from the network: a resolver or secondary trusts nothing it has not parsed.
const u32 = z.number().int().min(0).max(0xffffffff);
const seconds = z.number().int().min(0).max(2 ** 40);
const ttl = z.number().int().min(0).max(7 * 24 * 3600 * 4);
const jwk = z.object({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string().length(43) }).strict();
const url = z.string().min(1).max(2048);
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const hashParams = z.object({ alg: z.literal('sha256'), salt: z.string().max(64) }).strict();
const base = { v: z.literal(1), zone: z.string().min(1).max(253), serial: u32, iat: seconds, exp: seconds };

export const recordSchemas = {
  handle: z
    .object({ ...base, type: z.literal('handle'), handle: z.string().max(320), endpoint: url, keys: z.array(jwk).min(1).max(16), ttl, op: z.string().max(64) })
    .strict(),
  delegation: z
    .object({ ...base, type: z.literal('delegation'), name: z.string().min(1).max(253), servers: z.array(url).min(1).max(16), ds: z.array(z.string().max(64)).min(1).max(16), ttl })
    .strict(),
  denial: z
    .object({ ...base, type: z.literal('denial'), after: hex64.nullable(), next: hex64.nullable(), hashes: z.array(hex64).max(DENIAL_MAX_HASHES), hash: hashParams, ttl })
    .strict(),
  zone: z
    .object({
      ...base,
      type: z.literal('zone'),
      primary: url,
      servers: z.array(url).min(1).max(16),
      keys: z.array(jwk).min(1).max(8),
      refresh: ttl,
      retry: ttl,
      expire: seconds,
      minimum: ttl,
      ttl,
      digest: z.string().max(64),
      denial: hashParams,
      count: u32.optional(),
      size: z.number().int().min(0).max(2 ** 48).optional(),
    })
    .strict(),
} as const;
