import { IdnsError, isIdnsError } from '../errors.js';
import { ed25519 } from './ed25519.js';
import { b64u } from './encoding.js';
import { decodeCompact, verifyDecoded, type DecodedJws } from './jws.js';
import { parsePublicJwk, thumbprint, type PublicJwk, type SigningKey } from './keys.js';

/**
 * Proofs of possession of the keys a change request adds to a handle. A request stays one compact JWS
 * (its id is the hash of that string): the proofs ride in its protected header, member `pop`, as RFC 7515
 * general-serialization signature objects `{"protected","signature"}` over the request's own payload.
 * Each proof's header is `{"alg":"EdDSA","typ":"idns-pop","jwk":<the added key>}`, so
 * `protected "." payload "." signature` is a compact JWS that jose verifies with the embedded key alone.
 */

/** `typ` of a proof of possession; distinct from requests and records so none passes as another. */
export const POP_TYP = 'idns-pop';
/** The protected-header member of a change request that carries the proofs. */
export const POP_MEMBER = 'pop';

/** One entry of `pop` as sent. */
export interface PopEntry {
  protected: string;
  signature: string;
}

/** A parsed proof: the key it claims, its signature not yet checked. */
export interface PossessionProof {
  kid: string;
  jwk: PublicJwk;
  decoded: DecodedJws;
}

const PROOF_HEADER_MEMBERS = new Set(['alg', 'typ', 'jwk']);

/** Signs the proof that `key` consents to the request whose payload is `payloadB64` (base64url). */
export function signPossessionProof(payloadB64: string, key: Pick<SigningKey, 'privateKey' | 'publicJwk'>): PopEntry {
  const protectedB64 = b64u(JSON.stringify({ alg: 'EdDSA', typ: POP_TYP, jwk: key.publicJwk }));
  const signature = ed25519.sign(Buffer.from(`${protectedB64}.${payloadB64}`), key.privateKey);
  return { protected: protectedB64, signature: b64u(signature) };
}

/**
 * Parses the `pop` member of a request's header against the request's payload (base64url, as sent):
 * at most `max` entries, each exactly `{"protected","signature"}`, each a valid compact JWS of typ
 * `idns-pop` carrying the key in `jwk`, no key twice. Signatures are checked by verifyPossessionProofs.
 */
export function parsePossessionProofs(input: unknown, payloadB64: string, max: number): PossessionProof[] {
  if (!Array.isArray(input)) throw new IdnsError('invalid_jws', 'header "pop" must be an array of {"protected","signature"} objects');
  if (input.length === 0) throw new IdnsError('invalid_jws', 'header "pop" is empty; omit it when the request adds no key');
  if (input.length > max) throw new IdnsError('invalid_jws', `header "pop" has ${input.length} entries (at most ${max}, one per added key)`);
  const seen = new Set<string>();
  return input.map((entry: unknown, i) => {
    const what = `pop[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      throw new IdnsError('invalid_jws', `${what} must be a {"protected","signature"} object`);
    const members = Object.keys(entry);
    const e = entry as Record<string, unknown>;
    if (members.length !== 2 || typeof e.protected !== 'string' || typeof e.signature !== 'string') {
      throw new IdnsError('invalid_jws', `${what} must have exactly the string members "protected" and "signature"`);
    }
    let decoded: DecodedJws;
    try {
      // Decoded as the compact JWS it forms, so a proof meets every rule a JWS meets here (alg, no crit,
      // canonical base64url, signature length, JSON rules); it re-reads the payload, only for requests with proofs.
      decoded = decodeCompact(`${e.protected}.${payloadB64}.${e.signature}`);
    } catch (err) {
      if (isIdnsError(err)) throw new IdnsError(err.code, `${what}: ${err.message}`, { cause: err });
      throw err;
    }
    const header = decoded.header as unknown as Record<string, unknown>;
    if (header.typ !== POP_TYP) throw new IdnsError('invalid_jws', `${what} must have header typ "${POP_TYP}"`);
    for (const member of Object.keys(header)) {
      if (!PROOF_HEADER_MEMBERS.has(member)) throw new IdnsError('invalid_jws', `${what} has an unexpected header member "${member}" (only alg, typ, jwk)`);
    }
    if (header.jwk === undefined) throw new IdnsError('invalid_jws', `${what} carries the added key in its header "jwk"`);
    const jwk = parsePublicJwk(header.jwk, `${what} jwk`);
    const kid = thumbprint(jwk);
    if (seen.has(kid)) throw new IdnsError('invalid_request', `${what} is a second proof for key ${kid}; give one proof per added key`);
    seen.add(kid);
    return { kid, jwk, decoded };
  });
}

/** Checks each proof's signature with the key it carries; throws invalid_signature naming the key. */
export function verifyPossessionProofs(proofs: readonly PossessionProof[]): void {
  for (const proof of proofs) {
    try {
      verifyDecoded(proof.decoded, proof.jwk);
    } catch (err) {
      if (isIdnsError(err, 'invalid_signature')) {
        throw new IdnsError(
          'invalid_signature',
          `the proof of possession for key ${proof.kid} does not verify: it must be signed by that key over this request's payload`,
          { cause: err },
        );
      }
      throw err;
    }
  }
}
