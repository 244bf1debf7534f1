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
