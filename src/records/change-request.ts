import { hash } from 'node:crypto';
import { z } from 'zod';
import { IdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import type { Ed25519PublicKey } from './ed25519.js';
import { decodeCompact, OPERATION_TYP, verifyDecoded, type DecodedJws } from './jws.js';
import { parsePublicJwk, thumbprint, type PublicJwk } from './keys.js';
import { parsePossessionProofs, POP_MEMBER, verifyPossessionProofs, type PossessionProof } from './pop.js';
import { MAX_HANDLE_KEYS, MAX_RECOVERY_KEYS } from './types.js';
import { HANDLE_LINK_LIMITS, handleLinksProblem } from './handle-links.js';
import { MAX_URL_LENGTH, parseEndpoint } from './urls.js';

/**
 * A change request of a handle: a compact JWS signed by the handle's key (the key being registered for
 * `register`; a current key of the handle, named by `kid`, for `update` and `delete`). Its payload names
 * the id of the request it follows (`prev`), so a replayed or reordered request is refused. Every other
 * key it adds to the handle signs it too: one proof of possession per added key in the header `pop`
 * (src/records/pop.ts), so nobody can list another person's key as a key of their own handle.
 */
export type ChangeAction = 'register' | 'update' | 'delete';

/** A parsed, not yet authorised, change request. */
export interface ChangeRequest {
  /** base64url SHA-256 of the exact JWS string: the request's id. */
  cid: string;
  jws: string;
  decoded: DecodedJws;
  action: ChangeAction;
  handle: string;
  host: string;
  endpoint: string | null;
  keys: PublicJwk[] | null;
  /** Thumbprints of `keys`, in order (null with `keys`). */
  keyIds: string[] | null;
  prev: string | null;
  iat: number;
  invite: string | null;
  /** For register: the key in the header, which must be one of `keys`. */
  headerKey: PublicJwk | null;
  kid: string | null;
  /** Proofs of possession of added keys (header `pop`), parsed; their signatures are checked with the request's. */
  proofs: PossessionProof[];
  /** The owner-set links of the new state (docs/protocol.md §3.1), null when absent: the new record has none. */
  profile: string | null;
  alsoKnownAs: string[] | null;
  movedTo: string | null;
  /** The new state's recovery keys (docs/protocol.md §6.6), null when it names none; and their thumbprints. */
  recovery: PublicJwk[] | null;
  recoveryIds: string[] | null;
}

const payloadSchema = z
  .object({
    v: z.literal(1),
    action: z.enum(['register', 'update', 'delete']),
    handle: z.string().max(400),
    endpoint: z.string().optional(),
    keys: z.array(z.unknown()).optional(),
    prev: z.string().max(64).nullable(),
    iat: z.number().int(),
    invite: z.string().max(128).optional(),
    profile: z.string().max(MAX_URL_LENGTH).optional(),
    alsoKnownAs: z.array(z.string().max(HANDLE_LINK_LIMITS.maxEntryLength)).max(HANDLE_LINK_LIMITS.maxAlsoKnownAs).optional(),
    movedTo: z.string().max(400).optional(),
    recovery: z.array(z.unknown()).optional(),
  })
  .strict();

/** The id of a request (or any JWS): base64url SHA-256 of its compact serialisation. */
export function requestId(jws: string): string {
  return hash('sha256', jws, 'base64url');
}

/** Checks a request's signature with `key`, and each proof of possession with the key it adds. */
export function verifyRequestSignatures(req: Pick<ChangeRequest, 'decoded' | 'proofs'>, key: Ed25519PublicKey): void {
  verifyDecoded(req.decoded, key);
  verifyPossessionProofs(req.proofs);
}

/** Decodes and validates the shape of a change request; signature and state checks come later. `decoded`: `jws` as the caller decoded it already. */
export function parseChangeRequest(jws: unknown, decoded: DecodedJws = decodeCompact(jws)): ChangeRequest {
  if (decoded.header.typ !== OPERATION_TYP) {
    throw new IdnsError('invalid_jws', `a change request must have header typ "${OPERATION_TYP}"`);
  }
  const parsed = payloadSchema.safeParse(decoded.payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new IdnsError('invalid_request', `request payload ${issue?.path.join('.') || ''}: ${issue?.message ?? 'invalid'}`.trim());
  }
  const p = parsed.data;
  const { handle, host } = parseHandle(p.handle);
  const needsState = p.action !== 'delete';
  if (needsState && (p.endpoint === undefined || p.keys === undefined)) {
    throw new IdnsError('invalid_request', `a ${p.action} request must carry "endpoint" and "keys"`);
  }
  if (
    !needsState &&
    (p.endpoint !== undefined ||
      p.keys !== undefined ||
      p.profile !== undefined ||
      p.alsoKnownAs !== undefined ||
      p.movedTo !== undefined ||
      p.recovery !== undefined)
  ) {
    throw new IdnsError('invalid_request', 'a delete request carries no "endpoint", "keys", "profile", "alsoKnownAs", "movedTo" or "recovery"');
  }
  // Form only here, as for the endpoint; rules.ts judges the URLs again by the zone's loopback setting.
  const linkProblem = handleLinksProblem({ handle, profile: p.profile, alsoKnownAs: p.alsoKnownAs, movedTo: p.movedTo }, true);
  if (linkProblem !== null) throw new IdnsError('invalid_request', `request payload ${linkProblem.path.join('.')}: ${linkProblem.message}`);
  const parsedKeys = p.keys === undefined ? null : parseKeySet(p.keys);
  const keys = parsedKeys?.keys ?? null;
  const keyIds = parsedKeys?.ids ?? null;
  const parsedRecovery = p.recovery === undefined ? null : parseRecoveryKeys(p.recovery, keyIds!);
  const endpoint = p.endpoint === undefined ? null : p.endpoint;
  // Form only here; whether this zone accepts loopback http is the rules' decision (rules.ts).
  if (endpoint !== null) parseEndpoint(endpoint, true);

  let headerKey: PublicJwk | null = null;
  let headerKid: string | null = null;
  let kid: string | null = null;
  if (p.action === 'register') {
    if (p.prev !== null) throw new IdnsError('invalid_request', 'a register request has "prev": null');
    if (decoded.header.jwk === undefined) throw new IdnsError('invalid_jws', 'a register request carries the signing key in the header "jwk"');
    headerKey = parsePublicJwk(decoded.header.jwk, 'header jwk');
    headerKid = thumbprint(headerKey);
    if (!keyIds!.includes(headerKid)) {
      throw new IdnsError('unauthorized_key', 'a register request must be signed by one of the keys it registers');
    }
  } else {
    if (p.prev === null) throw new IdnsError('invalid_request', `an ${p.action} request names the current record's op in "prev"`);
    if (decoded.header.jwk !== undefined) throw new IdnsError('invalid_jws', `an ${p.action} request names its key by "kid", not "jwk"`);
    if (decoded.header.kid === undefined) throw new IdnsError('invalid_jws', `an ${p.action} request names its signing key in the header "kid"`);
    kid = decoded.header.kid;
  }
  const heldIds = keyIds === null ? null : [...keyIds, ...(parsedRecovery?.ids ?? [])];
  const proofs = parseProofs(decoded, p.action, heldIds);
  // A registration adds every key it lists (recovery keys too): all but the signer's own need a proof, whatever the state.
  if (headerKid !== null)
    assureProofsFor(
      proofs,
      heldIds!.filter((k) => k !== headerKid),
    );
  return {
    cid: requestId(jws as string),
    jws: jws as string,
    decoded,
    action: p.action,
    handle,
    host,
    endpoint,
    keys,
    keyIds,
    prev: p.prev,
    iat: p.iat,
    invite: p.invite ?? null,
    headerKey,
    kid,
    proofs,
    profile: p.profile ?? null,
    alsoKnownAs: p.alsoKnownAs ?? null,
    movedTo: p.movedTo ?? null,
    recovery: parsedRecovery?.keys ?? null,
    recoveryIds: parsedRecovery?.ids ?? null,
  };
}

/** A request's recovery keys: 1–MAX_RECOVERY_KEYS public keys, no key twice, none of them among its `keys`. */
function parseRecoveryKeys(input: readonly unknown[], keyIds: readonly string[]): { keys: PublicJwk[]; ids: string[] } {
  if (input.length === 0 || input.length > MAX_RECOVERY_KEYS) throw new IdnsError('invalid_key', `"recovery" lists 1 to ${MAX_RECOVERY_KEYS} keys`);
  const keys = input.map((k, i) => parsePublicJwk(k, `recovery[${i}]`));
  const ids = keys.map(thumbprint);
  if (new Set(ids).size !== keys.length) throw new IdnsError('invalid_key', 'the same recovery key is listed twice');
  if (ids.some((id) => keyIds.includes(id))) throw new IdnsError('invalid_key', "a recovery key is not also one of the handle's keys");
  return { keys, ids };
}

function parseProofs(decoded: DecodedJws, action: ChangeAction, keyIds: string[] | null): PossessionProof[] {
  const input = (decoded.header as unknown as Record<string, unknown>)[POP_MEMBER];
  if (input === undefined) return [];
  if (keyIds === null) throw new IdnsError('invalid_request', `a ${action} request adds no key, so it carries no "${POP_MEMBER}"`);
  const payloadB64 = decoded.signingInput.slice(decoded.signingInput.indexOf('.') + 1);
  const proofs = parsePossessionProofs(input, payloadB64, MAX_HANDLE_KEYS + MAX_RECOVERY_KEYS);
  for (const proof of proofs) {
    if (!keyIds.includes(proof.kid))
      throw new IdnsError('invalid_request', `"${POP_MEMBER}" has a proof for key ${proof.kid}, which the request does not list in "keys" or "recovery"`);
  }
  return proofs;
}

/**
 * Checks that the proofs are exactly one per key in `added` (the thumbprints of the keys the request adds
 * to the handle): a missing one is refused with missing_proof, a proof for any other key (the signer's,
 * one the handle already has) with invalid_request, so a request has one meaning and one encoding.
 */
export function assureProofsFor(proofs: readonly PossessionProof[], added: readonly string[]): void {
  const proved = new Set(proofs.map((p) => p.kid));
  const missing = added.filter((kid) => !proved.has(kid));
  if (missing.length > 0) {
    throw new IdnsError(
      'missing_proof',
      `the request adds key${missing.length > 1 ? 's' : ''} ${missing.join(', ')} without ${missing.length > 1 ? 'their' : 'its'} signature: every key added to a handle must sign the request that adds it (header "${POP_MEMBER}")`,
      { details: { keys: missing } },
    );
  }
  const wanted = new Set(added);
  const extra = proofs.find((p) => !wanted.has(p.kid));
  if (extra) {
    throw new IdnsError(
      'invalid_request',
      `"${POP_MEMBER}" has a proof for key ${extra.kid}, which this request does not add (the signing key and keys the handle already has take none)`,
    );
  }
}

/** A handle's key set, as every request states it (parseKeyList), with each key's thumbprint. */
export function parseKeySet(input: readonly unknown[]): { keys: PublicJwk[]; ids: string[] } {
  const keys = parseKeyList(input);
  return { keys, ids: keys.map(thumbprint) };
}

/** A handle's keys: 1 to MAX_HANDLE_KEYS Ed25519 public JWKs, none listed twice (parseKeySet without the thumbprints). */
export function parseKeyList(input: readonly unknown[]): PublicJwk[] {
  if (input.length === 0) throw new IdnsError('invalid_key', 'a handle needs at least one key');
  if (input.length > MAX_HANDLE_KEYS) throw new IdnsError('invalid_key', `a handle has at most ${MAX_HANDLE_KEYS} keys`);
  const keys = input.map((k, i) => parsePublicJwk(k, `keys[${i}]`));
  // parsePublicJwk keeps kty, crv (both fixed) and x: two keys with one thumbprint are two with one x.
  if (new Set(keys.map((k) => k.x)).size !== keys.length) throw new IdnsError('invalid_key', 'the same key is listed twice');
  return keys;
}
