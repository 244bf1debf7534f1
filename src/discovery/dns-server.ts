import net from 'node:net';
import { IdnsError } from '../errors.js';

// Apart from dns-client.ts so that reading the configuration, which checks DNS server flags, does not load
// dns-packet and the discovery modules into every operator command.

/** A DNS server: an IP address and a port. */
export interface DnsServer {
  host: string;
  port: number;
}

/** An IPv6 address without its `%zone` suffix. */
export function stripScope(host: string): string {
  const i = host.indexOf('%');
  return i < 0 ? host : host.slice(0, i);
}

/** Reads a DNS server as given on the command line: `IP`, `IPv4:PORT`, `[IPv6]:PORT` or a bare IPv6 address (port 53 by default). Throws invalid_config. */
export function parseDnsServer(text: string): DnsServer {
  const bad = (why: string) =>
    new IdnsError('invalid_config', `DNS server ${JSON.stringify(text.slice(0, 100))}: ${why} (expected IP, IPv4:PORT or [IPv6]:PORT)`);
  let host = text;
  let port = 53;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const v4 = /^([^:]+):(\d+)$/.exec(text);
  if (bracketed) {
    host = bracketed[1]!;
    if (bracketed[2] !== undefined) port = Number(bracketed[2]);
  } else if (v4) {
    host = v4[1]!;
    port = Number(v4[2]);
  }
  if (net.isIP(stripScope(host)) === 0) throw bad('not an IP address');
  if (bracketed && net.isIPv6(stripScope(host)) === false) throw bad('brackets hold an IPv6 address only');
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw bad('not a port');
  return { host, port };
}
