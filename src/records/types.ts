import { z } from 'zod';
import { isNormalHandle } from '../names/handle.js';
import { isAtOrBelow, isNormalZoneName } from '../names/zone.js';
import type { PublicJwk } from './keys.js';
import { DENIAL_MAX_HASHES } from './denial.js';
import { endpointProblem, MAX_URL_LENGTH, serverUrlProblem } from './urls.js';
import { HANDLE_LINK_LIMITS, handleLinksProblem } from './handle-links.js';

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
  // Owner-set, optional, absent when unset (never empty); checked by handleLinksProblem (handle-links.ts).
  /** The handle's profile page (an endpoint-rule URL). */
  profile?: string;
  /** 1–8 other names of the same person: normalised handles or endpoint-rule URLs. */
  alsoKnownAs?: string[];
  /** The handle this one moved to (normalised, not itself). A resolver reports it, never follows it. */
  movedTo?: string;
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
  /** Server URLs in a zone record or a delegation. */
  maxServers: 16,
  /** Keys of a zone record; thumbprints in a delegation's `ds`. */
  maxZoneKeys: 8,
} as const;

/** Most keys one handle may publish. */
export const MAX_HANDLE_KEYS = 8;

/** An RFC 7638 thumbprint, a record's `op` or a zone digest: base64url of a SHA-256, 43 characters. */
export const SHA256_B64U = /^[A-Za-z0-9_-]{43}$/;

// Schemas for records read from the network: a resolver or secondary trusts nothing it has not parsed.
// Every field is held to what the authority itself would sign (see RECORD_LIMITS and records/urls.ts).
const u32 = z.number().int().min(0).max(0xffffffff);
const seconds = z
  .number()
  .int()
  .min(0)
  .max(2 ** 40);
const ttl = z.number().int().min(0).max(RECORD_LIMITS.maxTtl);
const upTo = (max: number, min = 0) => z.number().int().min(min).max(max);
/** An Ed25519 public key's `x`: 32 bytes in canonical unpadded base64url (the last character carries 2 bits and 4 zero bits). */
export const ED25519_X_B64U = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;
const jwk = z.object({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string().regex(ED25519_X_B64U) }).strict();
const sha256 = z.string().regex(SHA256_B64U);
/** A name hash in a denial: SHA-256, lowercase hex. */
export const NAME_HASH_HEX = /^[0-9a-f]{64}$/;
/** A zone's denial salt: 8 bytes, lowercase hex. */
export const DENIAL_SALT_HEX = /^[0-9a-f]{16}$/;
const hex64 = z.string().regex(NAME_HASH_HEX);
const hashParams = z.object({ alg: z.literal('sha256'), salt: z.string().regex(DENIAL_SALT_HEX) }).strict();
const distinct = (items: readonly string[]) => new Set(items).size === items.length;
// With `x` canonical, equal keys have equal `x`: no thumbprint (a hash) is needed to spot a repeat.
const keyList = (max: number) =>
  z
    .array(jwk)
    .min(1)
    .max(max)
    .refine((ks) => distinct(ks.map((k) => k.x)), 'lists the same key twice');
const serverUrl = z.string().check((ctx) => {
  const problem = serverUrlProblem(ctx.value);
  if (problem !== null) ctx.issues.push({ code: 'custom', message: problem, input: ctx.value });
});
const servers = z.array(serverUrl).min(1).max(RECORD_LIMITS.maxServers);
const zoneName = z.string().min(1).max(253).refine(isNormalZoneName, 'is not a normalised zone name');
const base = { v: z.literal(1), zone: zoneName, serial: u32, iat: seconds, exp: seconds };
/** A signature is valid for a positive time no longer than the authority ever signs for. */
const validity = (r: { iat: number; exp: number }) => r.exp > r.iat && r.exp - r.iat <= RECORD_LIMITS.maxSignatureValidity;
const VALIDITY_MESSAGE = { message: `exp must be after iat, by at most ${RECORD_LIMITS.maxSignatureValidity} s`, path: ['exp'] };

function handleSchema(allowLoopbackEndpoints: boolean) {
  const endpoint = z.string().check((ctx) => {
    const problem = endpointProblem(ctx.value, allowLoopbackEndpoints);
    if (problem !== null) ctx.issues.push({ code: 'custom', message: problem, input: ctx.value });
  });
  // The owner-set links (profile, alsoKnownAs, movedTo): typed and size-bounded here, judged by the shared handleLinksProblem.
  const links = {
    profile: z.string().max(MAX_URL_LENGTH).optional(),
    alsoKnownAs: z.array(z.string().max(HANDLE_LINK_LIMITS.maxEntryLength)).max(HANDLE_LINK_LIMITS.maxAlsoKnownAs).optional(),
    movedTo: z.string().max(320).optional(),
  };
  return z
    .object({
      ...base,
      type: z.literal('handle'),
      handle: z.string().max(320).refine(isNormalHandle, 'is not a normalised handle'),
      endpoint,
      keys: keyList(MAX_HANDLE_KEYS),
      ttl,
      op: sha256,
      ...links,
    })
    .strict()
    .check((ctx) => {
      const problem = handleLinksProblem(ctx.value, allowLoopbackEndpoints);
      if (problem !== null) ctx.issues.push({ code: 'custom', message: problem.message, path: problem.path, input: ctx.value });
    })
    .refine(validity, VALIDITY_MESSAGE);
}

function schemas(allowLoopbackEndpoints: boolean) {
  return {
    handle: handleSchema(allowLoopbackEndpoints),
    delegation: z
      .object({
        ...base,
        type: z.literal('delegation'),
        name: zoneName,
        servers,
        ds: z.array(sha256).min(1).max(RECORD_LIMITS.maxZoneKeys).refine(distinct, 'lists the same thumbprint twice'),
        ttl,
      })
      .strict()
      // Only strictly below the delegating zone: a zone vouches for nothing above or beside itself.
      .refine((d) => d.name !== d.zone && isAtOrBelow(d.name, d.zone), { message: 'names a zone that is not below the delegating zone', path: ['name'] })
      .refine(validity, VALIDITY_MESSAGE),
    denial: z
      .object({
        ...base,
        type: z.literal('denial'),
        after: hex64.nullable(),
        next: hex64.nullable(),
        hashes: z.array(hex64).max(DENIAL_MAX_HASHES),
        hash: hashParams,
        ttl: upTo(RECORD_LIMITS.maxMinimum),
      })
      .strict()
      .refine(validity, VALIDITY_MESSAGE),
    zone: z
      .object({
        ...base,
        type: z.literal('zone'),
        primary: serverUrl,
        servers,
        keys: keyList(RECORD_LIMITS.maxZoneKeys),
        refresh: upTo(RECORD_LIMITS.maxRefresh, 1),
        retry: upTo(RECORD_LIMITS.maxRetry, 1),
        expire: upTo(RECORD_LIMITS.maxExpire, 1),
        minimum: upTo(RECORD_LIMITS.maxMinimum),
        ttl,
        digest: sha256,
        denial: hashParams,
        count: u32.optional(),
        size: z
          .number()
          .int()
          .min(0)
          .max(2 ** 48)
          .optional(),
      })
      .strict()
      .refine(validity, VALIDITY_MESSAGE),
  } as const;
}

/** Record schemas as verifiers apply them: endpoints must be public https URLs. */
export const recordSchemas = schemas(false);

/**
 * The same schemas for a verifier in development mode (a resolver with `allowPrivate`, tests, the demo):
 * handle endpoints may also be loopback URLs, as development zones (`allowLoopbackEndpoints`) sign them.
 */
export const developmentRecordSchemas = schemas(true);
