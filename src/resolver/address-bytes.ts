import { IdnsError } from '../errors.js';
import { isIPv4, isIPv6 } from 'node:net';

// Apart from address-policy.ts (which builds undici agents) so that the rate limits, which key clients by
// address, do not load undici into processes that make no outbound request (operator commands).

/**
 * The bytes of an IP address in the forms Node's `net.isIP` accepts (dotted-quad IPv4; IPv6 with `::`,
 * an embedded dotted quad, a `%zone` suffix), or undefined when it is not one.
 */
export function parseAddress(text: string): Uint8Array | undefined {
  if (isIPv4(text)) return Uint8Array.from(text.split('.'), Number);
  if (!isIPv6(text)) return undefined;
  // The zone index (`fe80::1%eth0`) says which interface, not which address.
  const bare = text.includes('%') ? text.slice(0, text.indexOf('%')) : text;
  const out = new Uint8Array(16);
  const [head, tail] = bare.includes('::') ? (bare.split('::') as [string, string]) : [bare, undefined];
  const groups = (s: string): number[] => {
    if (s === '') return [];
    const words: number[] = [];
    for (const part of s.split(':')) {
      if (part.includes('.')) {
        const v4 = part.split('.').map(Number);
        words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else words.push(parseInt(part, 16));
    }
    return words;
  };
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  const words = [...front, ...new Array<number>(8 - front.length - back.length).fill(0), ...back];
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** An IPv4 address given as IPv4-mapped IPv6 (`::ffff:192.0.2.1`), as itself. */
export function normalAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/** A prefix of an address: its first `bits` bits equal those of `net`. */
export interface Prefix {
  net: Uint8Array;
  bits: number;
}

/** True when `bytes` is an address of the prefix's family that starts with it. */
export function within(bytes: Uint8Array, p: Prefix): boolean {
  if (bytes.length !== p.net.length) return false;
  const whole = p.bits >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== p.net[i]) return false;
  const rest = p.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[whole]! & mask) === (p.net[whole]! & mask);
}

/** Addresses and CIDR blocks (`192.0.2.10`, `10.0.0.0/8`, `2001:db8::/32`): the trusted proxies. */
export class AddressSet {
  private readonly blocks: Prefix[];

  constructor(entries: readonly string[]) {
    this.blocks = entries.map((entry) => {
      const parsed = parseBlock(entry);
      if (parsed === null) throw new IdnsError('invalid_config', `${JSON.stringify(entry)} is not an IP address or CIDR block`);
      return parsed;
    });
  }

  /** True when `address` lies in one of the blocks. */
  has(address: string): boolean {
    if (this.blocks.length === 0) return false;
    const bytes = parseAddress(normalAddress(address));
    if (bytes === undefined) return false;
    return this.blocks.some((b) => within(bytes, b));
  }
}

/** An address or CIDR block, or null when it is neither. */
export function parseBlock(entry: string): Prefix | null {
  const [address, prefix, ...rest] = entry.split('/');
  const bytes = address === undefined ? undefined : parseAddress(normalAddress(address));
  if (bytes === undefined || rest.length > 0) return null;
  const max = bytes.length * 8;
  if (prefix !== undefined && !/^\d{1,3}$/.test(prefix)) return null;
  const bits = prefix === undefined ? max : Number(prefix);
  return bits <= max ? { net: bytes, bits } : null;
}
