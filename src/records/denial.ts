import { createHash } from 'node:crypto';

/**
 * Authenticated denial of existence, in the manner of NSEC3 (RFC 5155): the zone publishes signed gaps
 * between the hashes of the handles it holds. A resolver hashes the name it asked for and checks that the
 * hash falls strictly inside a signed gap. Because only hashes appear, a denial does not name the
 * neighbouring handles, so the zone cannot be listed by asking for names one after another; the per-zone
 * salt stops one precomputed dictionary from serving every zone.
 */

/** The hash of a handle within a zone: lower-case hex SHA-256 of the salt, a NUL byte and the handle. */
export function nameHash(salt: string, handle: string): string {
  return createHash('sha256').update(salt).update('\u0000').update(handle).digest('hex');
}

/** The stored key of the gap that starts at the beginning of the hash space. */
export const GAP_START = '';

/**
 * True when `hash` lies strictly inside the gap (after, next). `after` null is the start of the hash space
 * and `next` null its end; the gaps of a zone tile the whole space between the hashes of its handles.
 */
export function gapCovers(after: string | null, next: string | null, hash: string): boolean {
  return (after === null || after < hash) && (next === null || hash < next);
}
