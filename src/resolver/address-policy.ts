import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { type LookupFunction } from 'node:net';
import { Agent } from '../client/undici.js';
import { IdnsError } from '../errors.js';
import { parseAddress, within, type Prefix } from './address-bytes.js';

export { parseAddress };

/**
 * Which addresses a resolver may connect to. Zone server URLs come from signed records, but a zone's owner
 * is still a stranger: without this, anyone could point a resolver at its own loopback or private network
 * (SSRF). Refused unless the resolver is configured for tests or a private deployment.
 *
 * The verdict is taken on the address's bytes (4 for IPv4, 16 for IPv6), never on its text: one address
 * has many spellings (`::ffff:127.0.0.1`, `::ffff:7f00:1`, `0:0:0:0:0:ffff:7f00:1`, and the WHATWG URL
 * parser's own rewrites of `127.1`, `0x7f.1`, `2130706433`, `[64:ff9b::127.0.0.1]`), and a pattern over
 * the text misses some. IPv6 forms that carry an IPv4 address (mapped, translated, NAT64, 6to4, Teredo)
 * are judged by that address too.
 */

function prefix(text: string, bits: number): Prefix {
  const net = parseAddress(text);
  if (!net) throw new Error(`bad prefix ${text}`);
  return { net, bits };
}

/**
 * IPv4 special-purpose ranges (IANA IPv4 Special-Purpose Address Registry, RFC 6890 and updates) that are
 * not globally reachable, plus multicast and the reserved 240/4 (with the limited broadcast address).
 */
const V4_NOT_PUBLIC: readonly Prefix[] = [
  ['0.0.0.0', 8], // "this network" (RFC 791)
  ['10.0.0.0', 8], // private (RFC 1918)
  ['100.64.0.0', 10], // shared address space, CGNAT (RFC 6598)
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments (RFC 6890)
  ['192.0.2.0', 24], // documentation TEST-NET-1 (RFC 5737)
  ['192.88.99.0', 24], // 6to4 relay anycast, deprecated (RFC 7526)
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking (RFC 2544)
  ['198.51.100.0', 24], // documentation TEST-NET-2
  ['203.0.113.0', 24], // documentation TEST-NET-3
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved (RFC 1112), and 255.255.255.255 limited broadcast
].map(([n, b]) => prefix(n as string, b as number));

/** IPv6 ranges inside global unicast 2000::/3 that are not globally reachable (IANA IPv6 Special-Purpose Registry). */
const V6_NOT_PUBLIC: readonly Prefix[] = [
  ['2001:2::', 48], // benchmarking (RFC 5180)
  ['2001:10::', 28], // ORCHID, deprecated (RFC 4843)
  ['2001:db8::', 32], // documentation (RFC 3849)
  ['3fff::', 20], // documentation (RFC 9637)
].map(([n, b]) => prefix(n as string, b as number));
// 2001::/23 (IETF protocol assignments) holds a few globally reachable services (PCP and TURN anycast,
// AMT, AS112, ORCHIDv2) but no server an idns resolver should reach, so all of it but Teredo is refused.
const V6_IETF = prefix('2001::', 23);
const V6_TEREDO = prefix('2001::', 32);
const V6_GLOBAL = prefix('2000::', 3);
/** ::/96: unspecified, loopback and the deprecated IPv4-compatible addresses (RFC 4291). */
const V6_COMPAT = prefix('::', 96);
/** IPv6 forms whose last 32 bits are an IPv4 address that decides. */
const V6_EMBEDDING: readonly Prefix[] = [
  ['::ffff:0:0', 96], // IPv4-mapped (RFC 4291)
  ['::ffff:0:0:0', 96], // IPv4-translated (RFC 2765)
  ['64:ff9b::', 96], // NAT64 well-known prefix (RFC 6052)
].map(([n, b]) => prefix(n as string, b as number));
const V6_6TO4 = prefix('2002::', 16);

function v4PrivateBytes(b: Uint8Array): boolean {
  return V4_NOT_PUBLIC.some((p) => within(b, p));
}

/**
 * True when an address (4 or 16 bytes) is not a globally reachable unicast address: loopback, private,
 * link-local, multicast, reserved, documentation, or an IPv6 form carrying such an IPv4 address. IPv6
 * outside 2000::/3 (the only range allocated for global unicast) is refused whole, which covers ::/8,
 * 64:ff9b:1::/48 (NAT64 local use), 100::/64 (discard), 5f00::/16 (SRv6), fc00::/7 (unique local),
 * fec0::/10 (site-local), fe80::/10 (link-local) and ff00::/8 (multicast) and whatever is assigned later.
 */
export function isPrivateBytes(b: Uint8Array): boolean {
  if (b.length === 4) return v4PrivateBytes(b);
  if (b.length !== 16) return true;
  for (const p of V6_EMBEDDING) if (within(b, p)) return v4PrivateBytes(b.subarray(12, 16));
  if (within(b, V6_COMPAT)) return true;
  if (!within(b, V6_GLOBAL)) return true;
  // 6to4 (RFC 3056): the tunnel's far end is the IPv4 address in bits 16–47.
  if (within(b, V6_6TO4)) return v4PrivateBytes(b.subarray(2, 6));
  // Teredo (RFC 4380): the server's IPv4 address in bits 32–63, the client's in the last 32 bits, inverted.
  if (within(b, V6_TEREDO)) return v4PrivateBytes(b.subarray(4, 8)) || v4PrivateBytes(b.subarray(12, 16).map((x) => x ^ 0xff));
  if (within(b, V6_IETF)) return true;
  return V6_NOT_PUBLIC.some((p) => within(b, p));
}

/** True when an IP address (text, as `net.isIP` accepts it) is not a public unicast address; anything that is not an IP address counts as private. */
export function isPrivateAddress(address: string): boolean {
  const bytes = parseAddress(address);
  return bytes === undefined || isPrivateBytes(bytes);
}

/**
 * Checks a server URL before connecting: https only, and no IP literal in a private range, unless
 * `allowPrivate` (which also admits http, for tests and local demos).
 */
export function assureAllowedUrl(url: string, allowPrivate: boolean): URL {
  if (!URL.canParse(url)) throw new IdnsError('address_refused', `not a valid server URL: ${url}`);
  const u = new URL(url);
  if (u.protocol !== 'https:' && !(allowPrivate && u.protocol === 'http:')) {
    throw new IdnsError('address_refused', `${url}: only https servers are contacted (http needs allowPrivate)`);
  }
  // The URL parser has already rewritten every IPv4 spelling (`127.1`, `0x7f.1`, `2130706433`) as a
  // dotted quad and every IPv6 one in its compressed form; a trailing dot only makes a name absolute.
  const host = u.hostname
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '')
    .toLowerCase();
  const bytes = parseAddress(host);
  if (!allowPrivate && (bytes !== undefined ? isPrivateBytes(bytes) : host === 'localhost' || host.endsWith('.localhost'))) {
    throw new IdnsError('address_refused', `${url}: private and loopback addresses are refused`);
  }
  return u;
}

/**
 * A DNS lookup for the HTTP client that refuses names resolving to private addresses, so that the check
 * applies to the address actually connected to (no DNS rebinding between check and connect).
 */
export const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '', 0);
    const list = addresses as LookupAddress[];
    const refused = list.find((a) => isPrivateAddress(a.address));
    if (refused) {
      return callback(
        new IdnsError('address_refused', `${hostname} resolves to a private address (${refused.address})`) as unknown as NodeJS.ErrnoException,
        '',
        0,
      );
    }
    if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
    const first = list[0]!;
    callback(null, first.address, first.family);
  });
};

/**
 * The keep-alive agent of outbound requests under this policy (the resolver's servers, WebFinger hosts):
 * unless private addresses are allowed, names are resolved through publicOnlyLookup.
 */
export function policyAgent(options: { connectTimeoutMs: number; connections: number; allowPrivate: boolean; ca?: string[] }): Agent {
  return new Agent({
    keepAliveTimeout: 10_000,
    connections: options.connections,
    connect: {
      timeout: options.connectTimeoutMs,
      ...(options.allowPrivate ? {} : { lookup: publicOnlyLookup }),
      ...(options.ca ? { ca: options.ca } : {}),
    },
  });
}
