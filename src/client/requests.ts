import { epochSeconds, systemClock, type Clock } from '../clock.js';
import { OPERATION_TYP, signCompact } from '../records/jws.js';
import { signingKeyFromJwk, type PrivateJwk, type PublicJwk } from '../records/keys.js';

/** What a handle's owner asks for: the content of a change request before signing. */
export type ChangeIntent =
  | { action: 'register'; handle: string; endpoint: string; keys: PublicJwk[]; invite?: string }
  | { action: 'update'; handle: string; endpoint: string; keys: PublicJwk[]; prev: string }
  | { action: 'delete'; handle: string; prev: string };

/**
 * Signs a change request with the owner's private key. A register request carries the public key in the
 * header (proof of possession); update and delete name a current key of the handle by `kid`.
 */
export function signChangeRequest(intent: ChangeIntent, privateJwk: PrivateJwk, clock: Clock = systemClock): string {
  const key = signingKeyFromJwk(privateJwk);
  const payload: Record<string, unknown> = { v: 1, action: intent.action, handle: intent.handle };
  if (intent.action !== 'delete') {
    payload.endpoint = intent.endpoint;
    payload.keys = intent.keys;
  }
  payload.prev = intent.action === 'register' ? null : intent.prev;
  payload.iat = epochSeconds(clock);
  if (intent.action === 'register' && intent.invite !== undefined) payload.invite = intent.invite;
  // signCompact always sets kid; a register request also carries the key itself, since the server has never seen it.
  return signCompact(payload, key, OPERATION_TYP, intent.action === 'register' ? { jwk: key.publicJwk } : {});
}
