import { isNormalHandle } from '../names/handle.js';
import { endpointProblem, MAX_URL_LENGTH } from './urls.js';

/**
 * The owner-set fields of a handle record that point elsewhere (docs/protocol.md §3.1): a profile page,
 * other names of the same person (`alsoKnownAs`, as ActivityPub's) and the handle this one moved to.
 * One check for every side: the authority before it accepts a change request (requests.ts, rules.ts) and
 * every verifier and secondary before it accepts a record (schemas.ts), so neither is looser than the other.
 */
export interface HandleLinks {
  handle: string;
  profile?: string | undefined;
  alsoKnownAs?: readonly string[] | undefined;
  movedTo?: string | undefined;
}

/** The owner-set links that are set, as a record carries them: absent ones (null or undefined) left out. */
export function definedLinks(links: { profile?: string | null | undefined; alsoKnownAs?: string[] | null | undefined; movedTo?: string | null | undefined }): {
  profile?: string;
  alsoKnownAs?: string[];
  movedTo?: string;
} {
  const out: { profile?: string; alsoKnownAs?: string[]; movedTo?: string } = {};
  if (links.profile != null) out.profile = links.profile;
  if (links.alsoKnownAs != null) out.alsoKnownAs = links.alsoKnownAs;
  if (links.movedTo != null) out.movedTo = links.movedTo;
  return out;
}

/** Bounds of the owner-set links. */
export const HANDLE_LINK_LIMITS = {
  /** Entries of `alsoKnownAs`. */
  maxAlsoKnownAs: 8,
  /** Longest entry of `alsoKnownAs` (a URL; a handle is shorter anyway). */
  maxEntryLength: MAX_URL_LENGTH,
} as const;

/** What is wrong with a handle's links: the field and why. */
export interface LinkProblem {
  path: (string | number)[];
  message: string;
}

/**
 * The first problem of `links`, or null. `profile` is a URL under the endpoint rules (records/urls.ts);
 * `alsoKnownAs`, when present, holds 1–8 distinct entries, each a normalised handle other than the
 * handle itself or a URL under the endpoint rules (an entry with `://` is a URL, any other a handle);
 * `movedTo`, when present, is a normalised handle other than the handle itself. `allowLoopback` is the
 * endpoint rule's development mode, for the URLs.
 */
export function handleLinksProblem(links: HandleLinks, allowLoopback: boolean): LinkProblem | null {
  if (links.profile !== undefined) {
    const problem = endpointProblem(links.profile, allowLoopback, 'the profile URL');
    if (problem !== null) return { path: ['profile'], message: problem };
  }
  const aka = links.alsoKnownAs;
  if (aka !== undefined) {
    if (aka.length === 0 || aka.length > HANDLE_LINK_LIMITS.maxAlsoKnownAs) {
      return { path: ['alsoKnownAs'], message: `alsoKnownAs holds 1–${HANDLE_LINK_LIMITS.maxAlsoKnownAs} entries (leave it out for none)` };
    }
    for (let i = 0; i < aka.length; i++) {
      const problem = aliasProblem(aka[i]!, links.handle, allowLoopback);
      if (problem !== null) return { path: ['alsoKnownAs', i], message: problem };
    }
    if (new Set(aka).size !== aka.length) return { path: ['alsoKnownAs'], message: 'alsoKnownAs lists an entry twice' };
  }
  if (links.movedTo !== undefined) {
    if (!isNormalHandle(links.movedTo))
      return { path: ['movedTo'], message: 'movedTo is not a handle in normalised form (local@host, lower case, IDNA A-labels)' };
    if (links.movedTo === links.handle) return { path: ['movedTo'], message: 'movedTo names the handle itself' };
  }
  return null;
}

/** Why one `alsoKnownAs` entry is refused, or null. */
function aliasProblem(entry: string, handle: string, allowLoopback: boolean): string | null {
  if (entry.length > HANDLE_LINK_LIMITS.maxEntryLength) return `an alsoKnownAs entry is longer than ${HANDLE_LINK_LIMITS.maxEntryLength} characters`;
  if (entry.includes('://')) return endpointProblem(entry, allowLoopback, 'an alsoKnownAs URL');
  if (!isNormalHandle(entry)) return `alsoKnownAs entry ${JSON.stringify(entry.slice(0, 80))} is neither an https URL nor a handle in normalised form`;
  if (entry === handle) return 'alsoKnownAs names the handle itself';
  return null;
}

/** `alice@example.com` as the URI a JRD or ActivityPub names it by (`acct:`, RFC 7565); a URL as it is. */
export function linkUri(entry: string): string {
  return entry.includes('://') ? entry : `acct:${entry}`;
}
