import { hash } from 'node:crypto';

/**
 * Authenticated denial of existence, in the manner of NSEC3 (RFC 5155): the zone publishes signed
 * statements about the hashes of the names it holds. A resolver hashes the name it asked for and checks
 * that a signed denial says no name of the zone has that hash. Because only hashes appear, a denial does
 * not name the neighbouring handles, so the zone cannot be listed by asking for names one after another;
 * the per-zone salt stops one precomputed dictionary from serving every zone.
 *
 * Unlike NSEC3, one denial record covers a run of consecutive gaps: the range (after, next) of the hash
 * space together with the complete list of the zone's name hashes inside it. Every name then costs a
 * fraction of a signature instead of one signature per gap, which is what makes bulk imports, transfers
 * and re-signing of million-handle zones affordable; a change still re-signs at most two denials.
 */

/** The hash of a handle within a zone: lower-case hex SHA-256 of the salt, a NUL byte and the handle. */
export function nameHash(salt: string, handle: string): string {
  return hash('sha256', `${salt}\u0000${handle}`, 'hex');
}

/** The stored key of the denial whose range starts at the beginning of the hash space. */
export const GAP_START = '';

/** Most name hashes one denial lists; a denial that would list more is split in two. */
export const DENIAL_MAX_HASHES = 32;

/** How many hashes a bulk import puts in each denial: half full, so later additions split rarely. */
export const DENIAL_FILL = DENIAL_MAX_HASHES / 2;

/**
 * True when `hash` lies strictly inside the range (after, next) and is not one of the `hashes` listed in
 * it. `after` null is the start of the hash space and `next` null its end; the denials of a zone tile the
 * whole space, their bounds and lists together being exactly the hashes of the zone's names.
 */
export function denialCovers(after: string | null, next: string | null, hashes: readonly string[], hash: string): boolean {
  return (after === null || after < hash) && (next === null || hash < next) && !sortedIncludes(hashes, hash);
}

/** True when the list is strictly ascending and lies strictly inside (after, next): a well-formed denial. */
export function denialWellFormed(after: string | null, next: string | null, hashes: readonly string[]): boolean {
  if (after !== null && next !== null && after >= next) return false;
  let prev = after;
  for (const h of hashes) {
    if (prev !== null && h <= prev) return false;
    prev = h;
  }
  return next === null || prev === null || prev < next;
}

function sortedIncludes(sorted: readonly string[], value: string): boolean {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const v = sorted[mid]!;
    if (v === value) return true;
    if (v < value) lo = mid + 1;
    else hi = mid;
  }
  return false;
}
