import { IdnsError } from '../errors.js';
import { keyForKid } from '../records/jws.js';
import { thumbprint, type PublicJwk } from '../records/keys.js';
import type { HandleFields } from '../records/types.js';
import { assureHostScripts, type HostScriptsLevel } from '../names/host-scripts.js';
import { assureProofsFor, verifyRequestSignatures, type ChangeRequest } from '../records/change-request.js';
import { parseEndpoint } from '../records/urls.js';
import { definedLinks, handleLinksProblem, type HandleLinks } from '../records/handle-links.js';

/** How far a request's `iat` may be from the server's clock, seconds. */
export const MAX_CLOCK_SKEW = 300;

/** What the rules need to know about the zone. */
export interface ZoneRules {
  allowLoopbackEndpoints: boolean;
  /** Look-alike checks of the hosts of new registrations; existing handles are never judged by them. */
  hostScripts: HostScriptsLevel;
}

/**
 * The protocol's rules for the next change of a handle, pure and synchronous so that they run inside the
 * write transaction against the state they judge. `current` is the handle's present state, or null.
 * Throws the typed error a client should see; returns normally when the change may be applied.
 */
export function assureValidChange(
  req: ChangeRequest,
  current: Pick<HandleFields, 'keys' | 'op' | 'recovery'> | null,
  nowSeconds: number,
  zone: ZoneRules,
  /** The signature was already checked, before the request was queued, against the key this state names. */
  signatureChecked = false,
  /** The request is a recovery its handle's history verified (signature, proofs, the state it goes back to): the rest is checked here. */
  recovery = false,
): void {
  if (Math.abs(req.iat - nowSeconds) > MAX_CLOCK_SKEW) {
    throw new IdnsError('iat_out_of_range', `the request's iat is more than ${MAX_CLOCK_SKEW} s from the server's clock; check the client's clock`, {
      details: { serverTime: nowSeconds },
    });
  }
  if (req.endpoint !== null) parseEndpoint(req.endpoint, zone.allowLoopbackEndpoints);
  const linkProblem = handleLinksProblem(linksOf(req), zone.allowLoopbackEndpoints);
  if (linkProblem !== null) throw new IdnsError('invalid_request', `request payload ${linkProblem.path.join('.')}: ${linkProblem.message}`);
  if (recovery) return;

  if (req.action === 'register') {
    if (current !== null) throw new IdnsError('handle_exists', `${req.handle} is already registered`);
    assureHostScripts(req.host, zone.hostScripts);
    // Which keys need a proof does not depend on the state for a registration: parseChangeRequest checked it.
    if (!signatureChecked) {
      verifyRequestSignatures(req, req.headerKey!);
    }
    return;
  }
  if (current === null) throw new IdnsError('handle_not_found', `${req.handle} is not registered`);
  // A recovery key may sign any change of the state that names it (docs/protocol.md §6.6).
  const candidates = [...current.keys, ...(current.recovery ?? [])].map((jwk: PublicJwk) => ({ kid: thumbprint(jwk), jwk }));
  const signer = keyForKid(req.decoded, candidates);
  if (!signatureChecked) {
    verifyRequestSignatures(req, signer.jwk);
  }
  if (req.prev !== current.op) {
    throw new IdnsError('stale_prev', `the request's prev does not name the current record of ${req.handle}; fetch it and retry`, {
      details: { current: current.op },
    });
  }
  // Added keys are judged against the state `prev` names (checked just above), so they are exactly determined.
  const held = new Set(candidates.map((c) => c.kid));
  assureProofsFor(
    req.proofs,
    [...(req.keyIds ?? []), ...(req.recoveryIds ?? [])].filter((kid) => !held.has(kid)),
  );
}

/** The owner-set links a request gives the handle's new state (absent ones left out). */
export function linksOf(
  req: Pick<ChangeRequest, 'handle' | 'profile' | 'alsoKnownAs' | 'movedTo'>,
): HandleLinks & Pick<HandleFields, 'profile' | 'alsoKnownAs' | 'movedTo'> {
  return { handle: req.handle, ...definedLinks(req) };
}
