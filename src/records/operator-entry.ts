import { z } from 'zod';
import { IdnsError } from '../errors.js';
import { isNormalHandle, parseHandle } from '../names/handle.js';
import { decodeCompact, signCompactText, type DecodedJws } from './jws.js';
import { parseKeyList } from './change-request.js';
import type { PublicJwk, SigningKey } from './keys.js';
import { HANDLE_LINK_LIMITS, handleLinksProblem } from './handle-links.js';
import { MAX_HANDLE_KEYS, SHA256_B64U } from './types.js';
import { MAX_URL_LENGTH, parseEndpoint } from './urls.js';

/**
 * An operator entry of a handle's history (docs/protocol.md §6.2): a statement signed by a key of the
 * zone, not by the handle's owner, such as the first entry of a handle that a bulk import created. It is
 * told apart from an owner's change request by its `typ`, so that one can never pass as the other, and
 * answers resting on it are operator-asserted.
 */
export const OPERATOR_TYP = 'idns-operator';

/**
 * The operator's acts on a handle: `import` creates it (a bulk import), `transfer` gives it a new state
 * and owner (a court order), `takedown` deletes it.
 */
export const OPERATOR_ACTIONS = ['import', 'transfer', 'takedown'] as const;

/** What an operator entry says: for `import` and `transfer`, the state the operator gave the handle. */
export interface OperatorEntry {
  jws: string;
  decoded: DecodedJws;
  action: (typeof OPERATOR_ACTIONS)[number];
  zone: string;
  handle: string;
  /** The id of the entry before (`transfer`, `takedown`); absent from `import`. */
  prev?: string;
  /** The new state (`import`, `transfer`); absent from `takedown`. */
  endpoint?: string;
  keys?: PublicJwk[];
  /** Why, in the operator's words (`transfer`, `takedown`): at most 1,000 characters. */
  reason?: string;
  iat: number;
  profile?: string;
  alsoKnownAs?: string[];
  movedTo?: string;
  /**
   * Only in entries made by the upgrade to schema 3 from an import line of an older idns, which was not
   * signed: the id that line gave the handle, which the owner's next request may name as `prev`.
   */
  legacyOp?: string;
}

/** The fields an operator signs. */
export type OperatorEntryFields = Omit<OperatorEntry, 'jws' | 'decoded'>;

const payloadSchema = z
  .object({
    v: z.literal(1),
    action: z.enum(OPERATOR_ACTIONS),
    zone: z.string().max(253),
    handle: z.string().max(400),
    prev: z.string().regex(SHA256_B64U).optional(),
    endpoint: z.string().max(MAX_URL_LENGTH).optional(),
    keys: z.array(z.unknown()).min(1).max(MAX_HANDLE_KEYS).optional(),
    reason: z.string().max(1000).optional(),
    iat: z.number().int(),
    profile: z.string().max(MAX_URL_LENGTH).optional(),
    alsoKnownAs: z.array(z.string().max(HANDLE_LINK_LIMITS.maxEntryLength)).max(HANDLE_LINK_LIMITS.maxAlsoKnownAs).optional(),
    movedTo: z.string().max(400).optional(),
    legacyOp: z.string().regex(SHA256_B64U).optional(),
  })
  .strict();

/** Signs an operator entry with a zone key. The payload's members are written in one fixed order. */
export function signOperatorEntry(fields: OperatorEntryFields, key: Pick<SigningKey, 'kid' | 'privateKey'>): string {
  const payload: Record<string, unknown> = { v: 1, action: fields.action, zone: fields.zone, handle: fields.handle };
  if (fields.prev !== undefined) payload.prev = fields.prev;
  if (fields.endpoint !== undefined) payload.endpoint = fields.endpoint;
  if (fields.keys !== undefined) payload.keys = fields.keys;
  if (fields.reason !== undefined) payload.reason = fields.reason;
  payload.iat = fields.iat;
  if (fields.profile !== undefined) payload.profile = fields.profile;
  if (fields.alsoKnownAs !== undefined) payload.alsoKnownAs = fields.alsoKnownAs;
  if (fields.movedTo !== undefined) payload.movedTo = fields.movedTo;
  if (fields.legacyOp !== undefined) payload.legacyOp = fields.legacyOp;
  return signCompactText(JSON.stringify(payload), key, OPERATOR_TYP);
}

/**
 * Decodes and validates an operator entry's form (its signature is the caller's to check, with the zone's
 * keys): the same checks for the authority that writes it and every server or resolver that reads it.
 * `decoded`: `jws` as the caller decoded it already (decodeCompact), so it is not decoded twice.
 */
export function parseOperatorEntry(jws: unknown, allowLoopbackEndpoints = false, decoded: DecodedJws = decodeCompact(jws)): OperatorEntry {
  if (decoded.header.typ !== OPERATOR_TYP) throw new IdnsError('invalid_jws', `an operator entry has header typ "${OPERATOR_TYP}"`);
  if (decoded.header.kid === undefined || decoded.header.jwk !== undefined)
    throw new IdnsError('invalid_jws', 'an operator entry names its zone key by "kid" and carries no "jwk"');
  const parsed = payloadSchema.safeParse(decoded.payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new IdnsError('invalid_request', `operator entry ${issue?.path.join('.') || ''}: ${issue?.message ?? 'invalid'}`.trim());
  }
  const p = parsed.data;
  // isNormalHandle(h) is parseHandle(h).handle === h (record-schema.test.ts fuzzes the two), without the parse.
  if (!isNormalHandle(p.handle)) throw new IdnsError('invalid_request', `an operator entry names its handle in normal form (${parseHandle(p.handle).handle})`);
  const handle = p.handle;
  const setsState = p.action !== 'takedown';
  if (setsState !== (p.endpoint !== undefined && p.keys !== undefined) || (!setsState && (p.profile ?? p.alsoKnownAs ?? p.movedTo) !== undefined))
    throw new IdnsError('invalid_request', `an operator ${p.action} ${setsState ? 'states the new "endpoint" and "keys"' : 'states no new state'}`);
  if ((p.action === 'import') !== (p.prev === undefined))
    throw new IdnsError('invalid_request', `an operator ${p.action} ${p.action === 'import' ? 'has no "prev"' : 'names the entry before it in "prev"'}`);
  if (p.legacyOp !== undefined && p.action !== 'import') throw new IdnsError('invalid_request', 'only an operator import has "legacyOp"');
  if (p.endpoint !== undefined) parseEndpoint(p.endpoint, allowLoopbackEndpoints);
  const keys = p.keys === undefined ? undefined : parseKeyList(p.keys);
  const linkProblem = handleLinksProblem({ handle, profile: p.profile, alsoKnownAs: p.alsoKnownAs, movedTo: p.movedTo }, allowLoopbackEndpoints);
  if (linkProblem !== null) throw new IdnsError('invalid_request', `operator entry ${linkProblem.path.join('.')}: ${linkProblem.message}`);
  return { ...p, jws: jws as string, decoded, keys };
}
