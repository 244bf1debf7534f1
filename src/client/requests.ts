import { epochSeconds, systemClock, type Clock } from '../clock.js';
import { IdnsError } from '../errors.js';
import { b64u } from '../records/encoding.js';
import { OPERATION_TYP, signCompactText } from '../records/jws.js';
import { signingKeyFromJwk, type PrivateJwk, type PublicJwk } from '../records/keys.js';
import { POP_MEMBER, signPossessionProof } from '../records/pop.js';

/** What a handle's owner asks for: the content of a change request before signing. */
export type ChangeIntent =
  | ({ action: 'register'; handle: string; endpoint: string; keys: PublicJwk[]; invite?: string } & OwnerLinks)
  | ({ action: 'update'; handle: string; endpoint: string; keys: PublicJwk[]; prev: string } & OwnerLinks)
  | { action: 'delete'; handle: string; prev: string };

/**
 * The owner-set links of the new state (docs/protocol.md §3.1). A request states the whole new state, so
 * a link left out is a link the handle no longer has: an update that should keep them repeats them.
 */
export interface OwnerLinks {
  profile?: string;
  alsoKnownAs?: string[];
  movedTo?: string;
  /** The new state's recovery keys (docs/protocol.md §6.6): a request states them each time, or the handle has none after it. */
  recovery?: PublicJwk[];
}

/**
 * Signs a change request with the owner's private key. A register request carries the public key in the
 * header (proof of possession); update and delete name a current key of the handle by `kid`.
 * `addedKeys` are the private keys of the keys the request adds to the handle besides the signer's (on
 * register every other key in `keys`; on update those not yet on the handle): each signs the request too
 * (header `pop`), as the server demands. Each must be listed in `keys`; the signer's own key takes none.
 */
export function signChangeRequest(intent: ChangeIntent, privateJwk: PrivateJwk, clock: Clock = systemClock, addedKeys: readonly PrivateJwk[] = []): string {
  const key = signingKeyFromJwk(privateJwk);
  const payload: Record<string, unknown> = { v: 1, action: intent.action, handle: intent.handle };
  if (intent.action !== 'delete') {
    payload.endpoint = intent.endpoint;
    payload.keys = intent.keys;
    if (intent.profile !== undefined) payload.profile = intent.profile;
    if (intent.alsoKnownAs !== undefined) payload.alsoKnownAs = intent.alsoKnownAs;
    if (intent.movedTo !== undefined) payload.movedTo = intent.movedTo;
    if (intent.recovery !== undefined) payload.recovery = intent.recovery;
  }
  payload.prev = intent.action === 'register' ? null : intent.prev;
  payload.iat = epochSeconds(clock);
  if (intent.action === 'register' && intent.invite !== undefined) payload.invite = intent.invite;
  const payloadJson = JSON.stringify(payload);
  const header: Record<string, unknown> = {};
  // signCompact always sets kid; a register request also carries the key itself, since the server has never seen it.
  if (intent.action === 'register') header.jwk = key.publicJwk;
  if (addedKeys.length > 0) header[POP_MEMBER] = proofs(intent, key.kid, addedKeys, b64u(payloadJson));
  return signCompactText(payloadJson, key, OPERATION_TYP, header);
}

function proofs(intent: ChangeIntent, signerKid: string, addedKeys: readonly PrivateJwk[], payloadB64: string) {
  if (intent.action === 'delete') throw new IdnsError('invalid_request', 'a delete request adds no key');
  const listed = new Set([...intent.keys, ...(intent.recovery ?? [])].map((k) => k.x));
  const seen = new Set<string>();
  return addedKeys.map((jwk, i) => {
    const added = signingKeyFromJwk(jwk, `added key ${i + 1}`);
    if (added.kid === signerKid) throw new IdnsError('invalid_request', `added key ${added.kid} is the signing key, which needs no proof`);
    if (!listed.has(added.publicJwk.x)) throw new IdnsError('invalid_request', `added key ${added.kid} is not listed in the request's keys or recovery keys`);
    if (seen.has(added.kid)) throw new IdnsError('invalid_request', `added key ${added.kid} is given twice`);
    seen.add(added.kid);
    return signPossessionProof(payloadB64, added);
  });
}
