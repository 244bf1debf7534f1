import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { IdnsError } from '../errors.js';

/**
 * Which addresses a resolver may connect to. Zone server URLs come from signed records, but a zone's owner
 * is still a stranger: without this, anyone could point a resolver at its own loopback or private network
 * (SSRF). Refused unless the resolver is configured for tests or a private deployment.
 */
const PRIVATE = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv4');
}
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['2001:db8::', 32],
  ['100::', 64],
] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv6');
}

/** True when an IP address is loopback, private, link-local, multicast or otherwise not on the public internet. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return PRIVATE.check(address, 'ipv4');
  if (family === 6) {
    const lower = address.toLowerCase();
    // IPv4-mapped and NAT64 addresses carry an IPv4 address that decides.
    const embedded = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
    if (embedded) return PRIVATE.check(embedded[1]!, 'ipv4');
    return PRIVATE.check(lower, 'ipv6');
  }
  return true;
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
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (!allowPrivate && (isIP(host) !== 0 ? isPrivateAddress(host) : host === 'localhost' || host.endsWith('.localhost'))) {
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
      return callback(new IdnsError('address_refused', `${hostname} resolves to a private address (${refused.address})`) as unknown as NodeJS.ErrnoException, '', 0);
    }
    if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
    const first = list[0]!;
    callback(null, first.address, first.family);
  });
};
