import { isIP } from 'node:net';
import { IdnsError } from '../errors.js';

/**
 * The URLs records carry, checked by one set of rules on both sides: the authority before it signs (change
 * requests, imports, zone settings, delegations) and every verifier before it vouches for a record
 * (schemas.ts). A verifier looser than the authority would pass on what no honest zone signs, such as a
 * handle whose endpoint points a consumer at its own cloud metadata service.
 */

/** Longest URL a record carries (endpoint, server URLs). */
export const MAX_URL_LENGTH = 2048;

/**
 * Printable ASCII after an explicit `scheme://`. The WHATWG parser silently drops tab/CR/LF, trims
 * spaces and controls, reads `\` as `/` and `https:host` as `https://host`; other URL parsers do not,
 * so any of these would make one record name two different places.
 */
const URL_TEXT = /^https?:\/\/[\x21-\x5b\x5d-\x7e]+$/i;

const LOOPBACK_HOSTS = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

/**
 * Why `endpoint` is not an acceptable home-server endpoint, or null when it is: an https URL of a domain
 * name (never an IP address literal, never `localhost`), without credentials or fragment. With
 * `allowLoopback` (development zones, and verifiers running in development mode) a loopback host
 * (`localhost`, 127.0.0.0/8, `[::1]`) is accepted too, over http or https. The same rule holds for the
 * other URLs a handle record points consumers at (`profile`, URLs in `alsoKnownAs`); `what` names the field.
 */
export function endpointProblem(endpoint: string, allowLoopback: boolean, what = 'the endpoint'): string | null {
  const authority = AUTHORITY.exec(endpoint)?.[0];
  const accepted = acceptedAuthorities[allowLoopback ? 1 : 0]!;
  // What the memo cannot vouch for, the whole text, is checked here; any refusal is parsedEndpointProblem's.
  if (
    authority !== undefined &&
    accepted.has(authority) &&
    endpoint.length <= MAX_URL_LENGTH &&
    URL_TEXT.test(endpoint) &&
    !hasFragment(endpoint, authority.length)
  )
    return null;
  const problem = parsedEndpointProblem(endpoint, allowLoopback, what);
  if (problem === null && authority !== undefined) {
    if (accepted.size >= MAX_ACCEPTED_AUTHORITIES) accepted.clear();
    accepted.add(authority);
  }
  return problem;
}

/** endpointProblem by the URL parser alone, without the memo of accepted authorities. @internal (tests) */
export function parsedEndpointProblem(endpoint: string, allowLoopback: boolean, what = 'the endpoint'): string | null {
  if (endpoint.length > MAX_URL_LENGTH) return `${what} is longer than ${MAX_URL_LENGTH} characters`;
  const url = URL_TEXT.test(endpoint) ? parseUrl(endpoint) : null;
  if (url === null) return `${what} is not an absolute http(s) URL of printable ASCII (no spaces, controls or backslashes)`;
  if (url.username !== '' || url.password !== '') return `${what} must not contain credentials`;
  if (url.hash !== '') return `${what} must not contain a fragment`;
  if (allowLoopback && LOOPBACK_HOSTS.test(url.hostname)) return null;
  if (url.protocol !== 'https:') return `${what} must be an https URL (http only for loopback hosts in development zones)`;
  const host = url.hostname.replace(/\.$/, '');
  // The parser has already turned every numeric spelling (0x7f.1, 2130706433, [::ffff:7f00:1]) into its
  // canonical address, so this sees them all; a literal is refused whatever its range.
  if (isIP(host.replace(/^\[|\]$/g, '')) !== 0) return `${what} must name its host by a domain name, not an IP address`;
  if (host === 'localhost' || host.endsWith('.localhost')) return `${what} must not be a loopback host (only in development zones)`;
  return null;
}

/**
 * Authorities (the text from the scheme to the first `/`, `?` or `#`) of endpoints found acceptable, in
 * each mode ([0] production, [1] loopback allowed). Parsing a URL costs a few µs, and a secondary checks
 * a million endpoints in a full transfer, most of them on a few hosts. The verdict depends on the
 * authority alone, apart from a fragment: under the WHATWG parser the path and query of an http(s) URL
 * of printable ASCII never fail (they are percent-encoded) and never change the scheme, credentials,
 * host or port; a fragment (`#` and at least one character) is refused, so it is looked for here.
 * The authority must not be empty: the parser skips any further slashes after `scheme://` and takes
 * the host from behind them (`https:///host/`), so such a URL is always parsed. Bounded: cleared when full.
 */
const acceptedAuthorities = [new Set<string>(), new Set<string>()];
const MAX_ACCEPTED_AUTHORITIES = 1024;
const AUTHORITY = /^[^:]*:\/\/[^/?#]+/;

/** Whether `url` has a non-empty fragment after `from` (an empty one, a `#` at the end, is no fragment). */
function hasFragment(url: string, from: number): boolean {
  const at = url.indexOf('#', from);
  return at !== -1 && at < url.length - 1;
}

/** Checks a home-server endpoint (see endpointProblem); throws invalid_endpoint with the reason. */
export function parseEndpoint(endpoint: string, allowLoopback: boolean): URL {
  const problem = endpointProblem(endpoint, allowLoopback);
  if (problem !== null) throw new IdnsError('invalid_endpoint', problem);
  return new URL(endpoint);
}

/**
 * Why `url` is not an acceptable server URL (a zone record's `primary` and `servers`, a delegation's
 * `servers`), or null: an http(s) URL without credentials, query or fragment. Whether a resolver may
 * connect to it (https, public address) is its address policy's decision at connect time.
 */
export function serverUrlProblem(url: string): string | null {
  if (url.length > MAX_URL_LENGTH) return `longer than ${MAX_URL_LENGTH} characters`;
  const u = URL_TEXT.test(url) ? parseUrl(url) : null;
  if (u === null) return 'must be an absolute http(s) URL of printable ASCII (no spaces, controls or backslashes)';
  if (u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '') return 'must be an http(s) URL without credentials, query or fragment';
  return null;
}

/** The parsed URL, or null when the WHATWG parser refuses the text (URL.parse is newer than Node 20.12). */
function parseUrl(text: string): URL | null {
  try {
    return new URL(text);
  } catch {
    return null; // the caller reports the text as not a URL
  }
}
