import { z } from 'zod';
import { IdnsError } from '../errors.js';
import { HOST_SCRIPTS_LEVELS, type HostScriptsLevel } from '../names/host-scripts.js';
import { RECORD_LIMITS, SHA256_B64U } from '../records/types.js';
import { serverUrlProblem } from '../records/urls.js';

/** Per-zone settings kept in the zones table (JSON) and published, in part, in the zone record. */
export interface ZoneSettings {
  /** URL of the primary server (the zone record's `primary`). */
  primary: string;
  /** URLs of every server that answers for the zone (the zone record's `servers`). */
  servers: string[];
  /** Kids (thumbprints) of the zone's signing keys; the first one signs. */
  keyIds: string[];
  refresh: number;
  retry: number;
  expire: number;
  /** Negative TTL: how long a denial may be cached. */
  minimum: number;
  /** TTL of the zone record. */
  ttl: number;
  /** TTL of handle records. */
  handleTtl: number;
  /** How long a signature is valid, seconds. */
  signatureValidity: number;
  /** Re-sign a record when its signature has less than this left, seconds. */
  resignBefore: number;
  /** Accept http:// endpoints on loopback hosts (development zones such as `localhost` only). */
  allowLoopbackEndpoints: boolean;
  /**
   * UTS #39 checks of the hosts of new registrations (src/names/host-scripts.ts): `strict` (Highly
   * Restrictive, the default, also for zones made before the setting existed), `moderate`, or `off`.
   */
  hostScripts: HostScriptsLevel;
  /**
   * Seconds after a handle's deletion during which only a key it had before may register it again
   * (docs/protocol.md §6.3); 0 frees a deleted handle at once. Default 30 days, also for zones made
   * before the setting existed.
   */
  tombstoneCooldown: number;
  /**
   * Seconds after a change within which a recovery key of the state before it may undo it (docs/protocol.md
   * §6.6), published in the zone record (`recoveryWindow`) for verifiers. Default 72 hours.
   */
  recoveryWindow: number;
  /**
   * Set when this server learned that another server holds a newer zone record, signed by the zone's key,
   * naming another primary (a promotion while this one was away): the zone takes no writes and signs
   * nothing here (fencing), and changes are sent to that primary, until an operator acts.
   */
  fencedBy?: { primary: string; serial: number } | undefined;
  /** A key rollover under way (`idns zone rekey`, src/authority/rollover.ts); absent when none is. */
  rollover?: RolloverState | undefined;
  /**
   * Servers of the parent zone, where a rollover checks that the delegation lists the new key before it
   * signs with it (and no longer lists the old one at its end). Without them, the operator says so
   * (`idns zone rekey ZONE --submitted`), as with Knot's `zone-ksk-submitted`.
   */
  parentServers?: string[] | undefined;
  /**
   * Witnesses of the zone's log besides its secondaries (which witness it anyway): servers that follow the
   * zone's checkpoints without copying it (`idns witness follow`), offered each checkpoint as they are
   * (docs/protocol.md §14.4). Set with `idns zone witnesses`.
   */
  witnesses?: string[] | undefined;
  /** Child zones whose delegation follows the ds set the child asks for in its zone record (`zone delegate --auto-ds`). */
  autoDs?: string[] | undefined;
}

/** The phases of a key rollover (docs/operations.md, "Key rollover"), in order. */
export const ROLLOVER_PHASES = ['publishing', 'signing', 'draining', 'retiring'] as const;
export type RolloverPhase = (typeof ROLLOVER_PHASES)[number];

/** Where a key rollover stands, kept in the zone's settings so a restarted server resumes it. */
export interface RolloverState {
  phase: RolloverPhase;
  /** The key rolled in and the key rolled out (kids). */
  newKey: string;
  oldKey: string;
  /** When the rollover, and its present phase, began (epoch seconds). */
  started: number;
  since: number;
  /**
   * When every delegation was last seen as the phase needs it (the new key listed; at the end, the old
   * one gone), or the operator said so; and the longest TTL of those delegations, which must run out.
   */
  delegationsSeen?: number | undefined;
  delegationTtl?: number | undefined;
  /** The operator said the delegation (or trust anchor) is as the phase needs it (`--submitted`). */
  submitted?: boolean | undefined;
  /** signing: the last record re-signed with the new key, in the content's order; absent before the first. */
  cursor?: { type: string; key: string } | undefined;
  /** What the rollover waits for now, in words (for zone show, the operator page and idns ctl status). */
  waiting?: string | undefined;
  /** Abandoned while publishing (`--cancel`): `newKey` is the key kept, `oldKey` the one abandoned. */
  cancelled?: boolean | undefined;
}

const DAY = 24 * 3600;

/** Defaults modelled on DNS practice, tuned so copies outlive an outage: signatures last 21 days and are
 * renewed with 10 days left, so a secondary's copy stays valid past `expire` (7 days). */
export const DEFAULT_ZONE_TIMERS = {
  refresh: 3600,
  retry: 300,
  expire: 7 * DAY,
  minimum: 300,
  ttl: 3600,
  handleTtl: 3600,
  signatureValidity: 21 * DAY,
  resignBefore: 10 * DAY,
  tombstoneCooldown: 30 * DAY,
  recoveryWindow: 3 * DAY,
} as const;

// The records' own rule (records/urls.ts): what a verifier accepts in `primary` and `servers`.
const serverUrl = z.string().check((ctx) => {
  const problem = serverUrlProblem(ctx.value);
  if (problem !== null) ctx.issues.push({ code: 'custom', message: problem, input: ctx.value });
});
const L = RECORD_LIMITS;

const schema = z
  .object({
    primary: serverUrl,
    servers: z.array(serverUrl).min(1).max(L.maxServers),
    keyIds: z.array(z.string().min(1).max(64)).max(L.maxZoneKeys),
    refresh: z.number().int().min(1).max(L.maxRefresh),
    retry: z.number().int().min(1).max(L.maxRetry),
    expire: z.number().int().min(1).max(L.maxExpire),
    minimum: z.number().int().min(0).max(L.maxMinimum),
    ttl: z.number().int().min(0).max(L.maxTtl),
    handleTtl: z.number().int().min(0).max(L.maxTtl),
    signatureValidity: z.number().int().min(3600).max(L.maxSignatureValidity),
    resignBefore: z
      .number()
      .int()
      .min(60)
      .max(364 * DAY),
    allowLoopbackEndpoints: z.boolean(),
    hostScripts: z.enum(HOST_SCRIPTS_LEVELS).default('strict'),
    tombstoneCooldown: z
      .number()
      .int()
      .min(0)
      .max(365 * DAY)
      .default(DEFAULT_ZONE_TIMERS.tombstoneCooldown),
    recoveryWindow: z.number().int().min(0).max(L.maxRecoveryWindow).default(DEFAULT_ZONE_TIMERS.recoveryWindow),
    fencedBy: z
      .object({
        primary: serverUrl,
        serial: z
          .number()
          .int()
          .min(0)
          .max(2 ** 32 - 1),
      })
      .strict()
      .optional(),
    rollover: z
      .object({
        phase: z.enum(ROLLOVER_PHASES),
        newKey: z.string().regex(SHA256_B64U),
        oldKey: z.string().regex(SHA256_B64U),
        started: z.number().int().min(0),
        since: z.number().int().min(0),
        delegationsSeen: z.number().int().min(0).optional(),
        delegationTtl: z.number().int().min(0).max(L.maxTtl).optional(),
        submitted: z.boolean().optional(),
        cursor: z
          .object({ type: z.string().max(16), key: z.string().max(1024) })
          .strict()
          .optional(),
        waiting: z.string().max(500).optional(),
        cancelled: z.boolean().optional(),
      })
      .strict()
      .optional(),
    parentServers: z.array(serverUrl).min(1).max(L.maxServers).optional(),
    witnesses: z.array(serverUrl).min(1).max(L.maxServers).optional(),
    autoDs: z.array(z.string().min(1).max(253)).max(10_000).optional(),
  })
  .strict()
  .refine((s) => s.resignBefore < s.signatureValidity, { message: 'resignBefore must be shorter than signatureValidity', path: ['resignBefore'] });

/** Validates a list of server URLs (for `--server-url` and delegations); the error names `what`. */
export function parseServerUrls(urls: string[], what: string): string[] {
  const result = z.array(serverUrl).min(1).max(L.maxServers).safeParse(urls);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new IdnsError('invalid_request', `${what}: ${issue?.message ?? 'invalid'}${issue?.path.length ? ` (item ${issue.path.join('.')})` : ''}`);
  }
  return result.data;
}

/** Validates zone settings; the error names the offending key. */
export function parseZoneSettings(input: unknown): ZoneSettings {
  const result = schema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    const path = issue?.path.join('.') || '(settings)';
    throw new IdnsError('invalid_request', `zone setting ${path}: ${issue?.message ?? 'invalid'}`);
  }
  return result.data;
}

/** Settings of a secondary zone: where to copy it from and which zone keys to trust. */
export interface SecondarySettings {
  /** URLs of the servers to transfer from (the primary, or another secondary), in order of preference. */
  primaries: string[];
  /** Thumbprints of the zone keys the zone record must be signed by (like a DS). */
  ds: string[];
}

const secondarySchema = z
  .object({
    primaries: z.array(serverUrl).min(1).max(L.maxServers),
    ds: z.array(z.string().regex(SHA256_B64U, 'a key thumbprint')).min(1).max(L.maxZoneKeys),
  })
  .strict();

/** Validates secondary settings; the error names the offending key. */
export function parseSecondarySettings(input: unknown): SecondarySettings {
  const result = secondarySchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new IdnsError('invalid_request', `secondary setting ${issue?.path.join('.') || '(settings)'}: ${issue?.message ?? 'invalid'}`);
  }
  return result.data;
}
