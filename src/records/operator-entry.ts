import { z } from 'zod';
import { IdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import { decodeCompact, signCompactText, type DecodedJws } from './jws.js';
import { parsePublicJwk, thumbprint, type PublicJwk, type SigningKey } from './keys.js';
import { HANDLE_LINK_LIMITS, handleLinksProblem } from './handle-links.js';
import { MAX_HANDLE_KEYS } from './types.js';
import { MAX_URL_LENGTH, parseEndpoint } from './urls.js';

/**
 * An operator entry of a handle's history (docs/protocol.md §6.2): a statement signed by a key of the
 * zone, not by the handle's owner, such as the first entry of a handle that a bulk import created. It is
 * told apart from an owner's change request by its `typ`, so that one can never pass as the other, and
 * answers resting on it are operator-asserted.
 */
export const OPERATOR_TYP = 'idns-operator';

/** What an operator entry says: for `import`, the state the operator gave the handle. */
export interface OperatorEntry {
  jws: string;
  decoded: DecodedJws;
  action: 'import';
  zone: string;
  handle: string;
  endpoint: string;
  keys: PublicJwk[];
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
    action: z.literal('import'),
    zone: z.string().max(253),
    handle: z.string().max(400),
    endpoint: z.string().max(MAX_URL_LENGTH),
    keys: z.array(z.unknown()).min(1).max(MAX_HANDLE_KEYS),
    iat: z.number().int(),
    profile: z.string().max(MAX_URL_LENGTH).optional(),
    alsoKnownAs: z.array(z.string().max(HANDLE_LINK_LIMITS.maxEntryLength)).max(HANDLE_LINK_LIMITS.maxAlsoKnownAs).optional(),
    movedTo: z.string().max(400).optional(),
    legacyOp: z
      .string()
      .regex(/^[A-Za-z0-9_-]{43}$/)
      .optional(),
  })
  .strict();

/** Signs an operator entry with a zone key. The payload's members are written in one fixed order. */
export function signOperatorEntry(fields: OperatorEntryFields, key: Pick<SigningKey, 'kid' | 'privateKey'>): string {
  const payload: Record<string, unknown> = {
    v: 1,
    action: fields.action,
    zone: fields.zone,
    handle: fields.handle,
    endpoint: fields.endpoint,
    keys: fields.keys,
    iat: fields.iat,
  };
  if (fields.profile !== undefined) payload.profile = fields.profile;
  if (fields.alsoKnownAs !== undefined) payload.alsoKnownAs = fields.alsoKnownAs;
  if (fields.movedTo !== undefined) payload.movedTo = fields.movedTo;
  if (fields.legacyOp !== undefined) payload.legacyOp = fields.legacyOp;
  return signCompactText(JSON.stringify(payload), key, OPERATOR_TYP);
}

/**
 * Decodes and validates an operator entry's form (its signature is the caller's to check, with the zone's
 * keys): the same checks for the authority that writes it and every server or resolver that reads it.
 */
export function parseOperatorEntry(jws: unknown, allowLoopbackEndpoints = false): OperatorEntry {
  const decoded = decodeCompact(jws);
  if (decoded.header.typ !== OPERATOR_TYP) throw new IdnsError('invalid_jws', `an operator entry has header typ "${OPERATOR_TYP}"`);
  if (decoded.header.kid === undefined || decoded.header.jwk !== undefined)
    throw new IdnsError('invalid_jws', 'an operator entry names its zone key by "kid" and carries no "jwk"');
  const parsed = payloadSchema.safeParse(decoded.payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new IdnsError('invalid_request', `operator entry ${issue?.path.join('.') || ''}: ${issue?.message ?? 'invalid'}`.trim());
  }
  const p = parsed.data;
  const { handle } = parseHandle(p.handle);
  if (handle !== p.handle) throw new IdnsError('invalid_request', `an operator entry names its handle in normal form (${handle})`);
  parseEndpoint(p.endpoint, allowLoopbackEndpoints);
  const keys = p.keys.map((k, i) => parsePublicJwk(k, `keys[${i}]`));
  if (keys.length > 1 && new Set(keys.map(thumbprint)).size !== keys.length) throw new IdnsError('invalid_key', 'the same key is listed twice');
  const linkProblem = handleLinksProblem({ handle, profile: p.profile, alsoKnownAs: p.alsoKnownAs, movedTo: p.movedTo }, allowLoopbackEndpoints);
  if (linkProblem !== null) throw new IdnsError('invalid_request', `operator entry ${linkProblem.path.join('.')}: ${linkProblem.message}`);
  return { ...p, jws: jws as string, decoded, keys };
}
