import { z } from 'zod';
import { IdnsError } from '../errors.js';
import { isNormalHandle } from '../names/handle.js';
import { isAtOrBelow, isNormalZoneName } from '../names/zone.js';
import { DENIAL_MAX_HASHES } from './denial.js';
import { HANDLE_LINK_LIMITS, handleLinksProblem } from './handle-links.js';
import { MAX_HISTORY_ENTRIES } from './history-key.js';
import { thumbprint } from './keys.js';
import { DENIAL_SALT_HEX, ED25519_X_B64U, NAME_HASH_HEX, RECORD_LIMITS, SHA256_B64U, MAX_HANDLE_KEYS, MAX_RECOVERY_KEYS, type RecordType } from './types.js';
import { endpointProblem, MAX_URL_LENGTH, serverUrlProblem } from './urls.js';

/**
 * The record schemas (zod): what a verifier accepts of each record type's payload. Apart from types.ts so
 * that a thread which only checks the records of a transfer (replication/digest-worker.ts) reads the usual
 * ones through the fast paths (record-fast-paths.ts) without loading zod; verify.ts installs schemaCheck
 * below as the verifier's reader of everything else.
 */

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
const jwk = z.object({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string().regex(ED25519_X_B64U) }).strict();
const sha256 = z.string().regex(SHA256_B64U);
const historySeq = z.number().int().min(1).max(MAX_HISTORY_ENTRIES);
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
      genesis: sha256,
      seq: historySeq,
      ...links,
      recovery: keyList(MAX_RECOVERY_KEYS).optional(),
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
        recoveryWindow: z.number().int().min(0).max(RECORD_LIMITS.maxRecoveryWindow).optional(),
        // The ds set the zone asks its parent for during a key rollover (DNS's CDS, RFC 7344): keys it lists.
        cds: z.array(sha256).min(1).max(RECORD_LIMITS.maxZoneKeys).refine(distinct, 'lists the same thumbprint twice').optional(),
      })
      .strict()
      .refine((r) => r.cds === undefined || r.cds.every((t) => r.keys.some((k) => thumbprint(k) === t)), {
        message: 'asks for a ds naming a key the zone record does not list',
        path: ['cds'],
      })
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

/**
 * Reads a record payload of `type` through its schema (in development mode: loopback endpoints
 * allowed); returns zod's output, or throws verification_failed naming the first problem.
 */
export function schemaCheck(type: RecordType, payload: unknown, allowLoopbackEndpoints: boolean): unknown {
  const parsed = (allowLoopbackEndpoints ? developmentRecordSchemas : recordSchemas)[type].safeParse(payload);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new IdnsError('verification_failed', `the ${type} record is malformed: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim());
}
