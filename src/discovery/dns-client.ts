import { raceSignal } from '../abort.js';
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import packet from 'dns-packet';
import { systemClock, type Clock } from '../clock.js';
import { IdnsError } from '../errors.js';
import { PUBLICATION_LIMITS } from './publication.js';
import { parseDnsServer, stripScope, type DnsServer } from './dns-server.js';

export { parseDnsServer, type DnsServer };

/**
 * A small stub DNS client for the TXT queries of zone discovery. It speaks DNS itself (dns-packet for
 * the messages, node:dgram and node:net for transport) because node:dns hides the AD flag, and the AD
 * flag of a validating resolver the operator named is what anchors a zone in DNSSEC. It trusts its
 * servers for everything (it is a stub, as a libc resolver is): it does not validate DNSSEC itself.
 */

/** The answer to a TXT query. */
export interface TxtAnswer {
  /** NXDOMAIN: the name does not exist; NOERROR with no records: it has no TXT records (NODATA). */
  rcode: 'NOERROR' | 'NXDOMAIN';
  /** Each TXT record's strings concatenated, in answer order. */
  records: string[];
  /** The AD flag was set by a server named as validating: the answer (or the denial) is DNSSEC-secure. */
  secure: boolean;
  /** Seconds this answer may still be used. */
  ttl: number;
  /** The server that answered (`host:port`). */
  server: string;
  /** Served stale (RFC 8767) because no server answered. */
  stale: boolean;
}

/** Options of a DnsClient. */
export interface DnsClientOptions {
  servers: DnsServer[];
  /** The operator named these servers as validating resolvers: only then is their AD flag believed. */
  validating: boolean;
  /** Time limit of one attempt at one server, ms. Default 2000. */
  timeoutMs?: number;
  /** Rounds over the server list before giving up. Default 2. */
  attempts?: number;
  /** Time of the cache (TTLs, stale windows); timeouts always run on real time. */
  clock?: Clock;
  /** Most names cached. Default 10 000. */
  maxEntries?: number;
  /** Longest TTL honoured, seconds. Default 86 400 (1 day). */
  maxTtl?: number;
  /** Negative TTL when a denial carries no SOA, seconds. Default 60. */
  defaultNegativeTtl?: number;
  /** Longest negative TTL honoured, seconds. Default 10 800 (3 hours, RFC 2308's advice). */
  maxNegativeTtl?: number;
  /** How long after expiry an answer may be served stale when every server fails, seconds. Default 86 400. */
  staleWindow?: number;
  /** TTL of a stale answer, and how long no server is asked again for that name after a failure (RFC 8767's 30 s). */
  staleTtl?: number;
  /** Most TXT records read from one answer. Default 16. */
  maxTxtRecords?: number;
  /** Most TXT bytes (all records' strings) read from one answer. Default publication.ts's maxTxtBytes. */
  maxTxtBytes?: number;
}

/** Fixed bounds of the wire protocol. */
export const DNS_LIMITS = {
  /** EDNS0 buffer size advertised, and the largest UDP answer accepted (the DNS flag day 2020 value). */
  udpPayload: 1232,
  /** Largest answer over TCP: what its 2-byte length prefix allows. */
  maxTcpBytes: 65_535,
  /** Most CNAMEs followed within one answer. */
  maxCnameChain: 8,
} as const;

/** A name of LDH-or-underscore labels of 1–63 bytes, at most 253 bytes: what a TXT query here asks for. */
const DNS_NAME = /^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*$/;

/** Counters of a client's work (tests and metrics). */
export interface DnsStats {
  /** Queries sent (each UDP datagram and each TCP query counts). */
  queriesSent: number;
  cacheHits: number;
  staleServed: number;
}

interface Entry {
  answer: Omit<TxtAnswer, 'ttl' | 'stale'>;
  expiresAt: number;
  staleUntil: number;
  /** After a failure served stale: until then, answer stale without asking (RFC 8767 section 5). */
  retryAfter: number;
}

/** A decoded answer, with the fields dns-packet's decoder sets and its types leave out. */
type Decoded = packet.DecodedPacket & { rcode?: string; opcode?: string };

/** A resource record as read here (every record type but OPT has these). */
interface Rr {
  type: string;
  name: string;
  ttl?: number;
  data?: unknown;
}

/** A failure of one server (try the next); anything else thrown is final. */
class ServerFailure extends Error {}

/** A DNS client sending TXT queries to a fixed list of recursive servers, with a cache. */
export class DnsClient {
  readonly stats: DnsStats = { queriesSent: 0, cacheHits: 0, staleServed: 0 };
  private readonly servers: DnsServer[];
  private readonly validating: boolean;
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly clock: Clock;
  private readonly maxEntries: number;
  private readonly maxTtl: number;
  private readonly defaultNegativeTtl: number;
  private readonly maxNegativeTtl: number;
  private readonly staleWindow: number;
  private readonly staleTtl: number;
  private readonly maxTxtRecords: number;
  private readonly maxTxtBytes: number;
  private readonly cache = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<TxtAnswer>>();
  private readonly closing = new AbortController();

  constructor(options: DnsClientOptions) {
    if (options.servers.length === 0) throw new IdnsError('invalid_config', 'no DNS server given');
    for (const s of options.servers) {
      if (net.isIP(stripScope(s.host)) === 0) throw new IdnsError('invalid_config', `DNS server ${JSON.stringify(s.host)} is not an IP address`);
      if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65_535) throw new IdnsError('invalid_config', `DNS server port ${s.port} is not a port`);
    }
    this.servers = options.servers.map((s) => ({ host: s.host, port: s.port }));
    this.validating = options.validating;
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.attempts = Math.max(1, options.attempts ?? 2);
    this.clock = options.clock ?? systemClock;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.maxTtl = options.maxTtl ?? 86_400;
    this.defaultNegativeTtl = options.defaultNegativeTtl ?? 60;
    this.maxNegativeTtl = options.maxNegativeTtl ?? 10_800;
    this.staleWindow = options.staleWindow ?? 86_400;
    this.staleTtl = options.staleTtl ?? 30;
    this.maxTxtRecords = options.maxTxtRecords ?? 16;
    this.maxTxtBytes = options.maxTxtBytes ?? PUBLICATION_LIMITS.maxTxtBytes;
  }

  /**
   * The TXT records at `name`: from the cache while fresh, else from the servers (concurrent queries for
   * one name share one exchange), else stale from the cache when every server failed. Throws dns_failed.
   */
  async queryTxt(name: string, signal?: AbortSignal): Promise<TxtAnswer> {
    signal?.throwIfAborted();
    if (this.closing.signal.aborted) throw new IdnsError('dns_failed', 'the DNS client is closed');
    const key = normaliseName(name);
    if (!DNS_NAME.test(key)) throw new IdnsError('invalid_zone_name', `${JSON.stringify(name.slice(0, 300))} is not a DNS name this client queries`);
    const now = this.clock.now();
    const entry = this.cache.get(key);
    if (entry && now < entry.expiresAt) {
      this.stats.cacheHits++;
      return this.fromEntry(entry, Math.ceil((entry.expiresAt - now) / 1000), false);
    }
    if (entry && now < entry.retryAfter && now <= entry.staleUntil) {
      this.stats.staleServed++;
      return this.fromEntry(entry, this.staleTtl, true);
    }
    let shared = this.inflight.get(key);
    if (!shared) {
      shared = this.resolve(key).finally(() => this.inflight.delete(key));
      this.inflight.set(key, shared);
    }
    const answer = await raceSignal(shared, signal);
    return { ...answer, records: [...answer.records] };
  }

  /** Stops every exchange in flight and empties the cache. */
  close(): void {
    this.closing.abort();
    this.cache.clear();
  }

  private fromEntry(entry: Entry, ttl: number, stale: boolean): TxtAnswer {
    return { ...entry.answer, records: [...entry.answer.records], ttl, stale };
  }

  private async resolve(key: string): Promise<TxtAnswer> {
    const failures: string[] = [];
    for (let round = 0; round < this.attempts; round++) {
      for (const server of this.servers) {
        try {
          const { answer, ttl } = await this.ask(server, key);
          this.store(key, answer, ttl);
          return { ...answer, ttl, stale: false };
        } catch (err) {
          if (!(err instanceof ServerFailure)) throw err;
          failures.push(`${label(server)}: ${err.message}`);
          if (this.closing.signal.aborted) throw new IdnsError('dns_failed', 'the DNS client is closed');
        }
      }
    }
    const now = this.clock.now();
    const entry = this.cache.get(key);
    if (entry && now <= entry.staleUntil) {
      entry.retryAfter = now + this.staleTtl * 1000;
      this.stats.staleServed++;
      return this.fromEntry(entry, this.staleTtl, true);
    }
    throw new IdnsError('dns_failed', `no DNS server answered the TXT query for ${key}: ${[...new Set(failures)].join('; ')}`, {
      details: { name: key },
    });
  }

  private store(key: string, answer: Entry['answer'], ttl: number): void {
    const now = this.clock.now();
    this.cache.delete(key);
    this.cache.set(key, { answer, expiresAt: now + ttl * 1000, staleUntil: now + (ttl + this.staleWindow) * 1000, retryAfter: 0 });
    while (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value as string);
  }

  /** One query to one server: UDP, then TCP when the answer is truncated. */
  private async ask(server: DnsServer, name: string): Promise<{ answer: Entry['answer']; ttl: number }> {
    const id = randomInt(0, 65_536);
    const query = packet.encode({
      type: 'query',
      id,
      // AD in a query asks for the AD bit in the answer (RFC 6840 5.7); DO too (RFC 3225).
      flags: packet.RECURSION_DESIRED | packet.AUTHENTIC_DATA,
      questions: [{ type: 'TXT', name, class: 'IN' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: DNS_LIMITS.udpPayload, flags: packet.DNSSEC_OK } as packet.Answer],
    });
    let response: Decoded = await this.exchangeUdp(server, query, id, name);
    if (response.flag_tc) response = await this.exchangeTcp(server, query, id, name);
    return this.interpret(response, name, server);
  }

  private exchangeUdp(server: DnsServer, query: Buffer, id: number, name: string): Promise<Decoded> {
    return new Promise((resolve, reject) => {
      // A socket per query: a fresh random source port each time, and connect() makes the kernel drop
      // datagrams from any other address or port.
      const sock = dgram.createSocket(net.isIPv6(stripScope(server.host)) ? 'udp6' : 'udp4');
      let malformed: string | null = null;
      const finish = (err: Error | null, p?: Decoded) => {
        clearTimeout(timer);
        this.closing.signal.removeEventListener('abort', onClose);
        sock.close();
        if (err) reject(err);
        else resolve(p!);
      };
      const timer = setTimeout(
        () => finish(new ServerFailure(malformed ? `${malformed} (then nothing valid within ${this.timeoutMs} ms)` : `timed out after ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      const onClose = () => finish(new ServerFailure('closed'));
      this.closing.signal.addEventListener('abort', onClose);
      sock.on('error', (err) => finish(new ServerFailure(`UDP: ${err.message}`)));
      sock.on('message', (msg, rinfo) => {
        if (rinfo.port !== server.port) return;
        if (msg.length > DNS_LIMITS.udpPayload) {
          malformed = `an oversized UDP answer (${msg.length} bytes, more than the ${DNS_LIMITS.udpPayload} advertised)`;
          return;
        }
        const p = decodeAnswer(msg, id, name);
        // Not the answer to this query (malformed, wrong ID or question: perhaps spoofed): keep waiting.
        if (typeof p === 'string') malformed = p;
        else finish(null, p);
      });
      sock.connect(server.port, server.host, () => {
        this.stats.queriesSent++;
        sock.send(query, (err) => {
          if (err) finish(new ServerFailure(`UDP: ${err.message}`));
        });
      });
    });
  }

  private exchangeTcp(server: DnsServer, query: Buffer, id: number, name: string): Promise<Decoded> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: server.host, port: server.port });
      let buf: Buffer = Buffer.alloc(0);
      const finish = (err: Error | null, p?: Decoded) => {
        clearTimeout(timer);
        this.closing.signal.removeEventListener('abort', onClose);
        sock.destroy();
        if (err) reject(err);
        else resolve(p!);
      };
      const timer = setTimeout(() => finish(new ServerFailure(`timed out over TCP after ${this.timeoutMs} ms`)), this.timeoutMs);
      const onClose = () => finish(new ServerFailure('closed'));
      this.closing.signal.addEventListener('abort', onClose);
      sock.on('error', (err) => finish(new ServerFailure(`TCP: ${err.message}`)));
      sock.on('end', () => finish(new ServerFailure('TCP: the connection closed before a whole answer')));
      sock.on('connect', () => {
        this.stats.queriesSent++;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(query.length);
        sock.write(Buffer.concat([len, query]));
      });
      sock.on('data', (d: Buffer) => {
        buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
        // The 2-byte prefix bounds an answer to 64 KiB; more bytes than it announced are not read.
        if (buf.length < 2 || buf.length < 2 + buf.readUInt16BE(0)) return;
        const p = decodeAnswer(buf.subarray(2, 2 + buf.readUInt16BE(0)), id, name);
        if (typeof p === 'string') finish(new ServerFailure(`TCP: ${p}`));
        else finish(null, p);
      });
    });
  }

  /** Reads an answer: rcode, the CNAME chain within it, the TXT records at its end, and the TTL to cache. */
  private interpret(p: Decoded, name: string, server: DnsServer): { answer: Entry['answer']; ttl: number } {
    const rcode = p.rcode ?? 'NOERROR';
    if (rcode === 'SERVFAIL') throw new ServerFailure('SERVFAIL (a validating resolver answers so for DNSSEC-bogus data too)');
    if (rcode !== 'NOERROR' && rcode !== 'NXDOMAIN') throw new ServerFailure(rcode);
    const answers = (p.answers ?? []) as Rr[];
    let owner = name;
    let ttl = Infinity;
    const seen = new Set<string>([owner]);
    for (;;) {
      const cname = answers.find((a) => a.type === 'CNAME' && normaliseName(a.name) === owner);
      if (!cname) break;
      const target = normaliseName(cname.data as string);
      if (seen.has(target)) throw new IdnsError('dns_failed', `the answer for ${name} from ${label(server)} has a CNAME loop at ${target}`);
      if (seen.size > DNS_LIMITS.maxCnameChain)
        throw new IdnsError('dns_failed', `the answer for ${name} from ${label(server)} has a chain of more than ${DNS_LIMITS.maxCnameChain} CNAMEs`);
      seen.add(target);
      ttl = Math.min(ttl, cname.ttl ?? 0);
      owner = target;
    }
    const txt = answers.filter((a) => a.type === 'TXT' && normaliseName(a.name) === owner);
    if (txt.length > this.maxTxtRecords)
      throw new IdnsError('dns_failed', `the answer for ${name} from ${label(server)} has ${txt.length} TXT records, more than ${this.maxTxtRecords}`);
    const records: string[] = [];
    let bytes = 0;
    for (const r of txt) {
      const data = r.data as Buffer | Buffer[];
      const value = Buffer.concat(Array.isArray(data) ? data : [data]);
      bytes += value.length;
      if (bytes > this.maxTxtBytes)
        throw new IdnsError('dns_failed', `the TXT records at ${name} from ${label(server)} hold more than ${this.maxTxtBytes} bytes`);
      records.push(value.toString('utf8'));
      ttl = Math.min(ttl, r.ttl ?? 0);
    }
    const secure = this.validating && p.flag_ad === true;
    if (rcode === 'NOERROR' && records.length > 0) {
      return { answer: { rcode, records, secure, server: label(server) }, ttl: clampTtl(ttl, this.maxTtl) };
    }
    // A denial (NXDOMAIN or NODATA) is cached for the SOA's negative TTL (RFC 2308 section 5).
    const soa = ((p.authorities ?? []) as Rr[]).find((a) => a.type === 'SOA');
    // A chain that stops at a name with no records and no SOA saying so was cut short (an authoritative
    // server's own chain limit, a truncating middlebox): it proves nothing about the name's TXT records.
    if (owner !== name && !soa)
      throw new IdnsError('dns_failed', `the answer for ${name} from ${label(server)} ends its CNAME chain at ${owner} without records or a denial`);
    const negative = soa ? Math.min(soa.ttl ?? 0, (soa.data as { minimum: number }).minimum) : this.defaultNegativeTtl;
    return { answer: { rcode, records: [], secure, server: label(server) }, ttl: clampTtl(Math.min(ttl, negative), this.maxNegativeTtl) };
  }
}

/** Decodes an answer and checks that it answers this query; a string says why it does not. */
function decodeAnswer(msg: Buffer, id: number, name: string): Decoded | string {
  let p: Decoded;
  try {
    p = packet.decode(msg) as Decoded;
  } catch (err) {
    return `a malformed answer (${(err as Error).message})`;
  }
  if (p.id !== id) return 'an answer with another query ID';
  if (p.type !== 'response' || p.opcode !== 'QUERY') return 'a message that is not an answer to a query';
  const q = p.questions ?? [];
  if (q.length !== 1 || q[0]!.type !== 'TXT' || normaliseName(q[0]!.name) !== name) return 'an answer to another question';
  return p;
}

function clampTtl(ttl: number, max: number): number {
  if (!Number.isFinite(ttl) || ttl < 0) return 0;
  return Math.min(Math.floor(ttl), max);
}

/** Lower case, no trailing dot: the form names are compared and cached in. */
function normaliseName(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function label(s: DnsServer): string {
  return net.isIPv6(stripScope(s.host)) ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`;
}

/**
 * The system's DNS servers from resolv.conf (`nameserver` lines, at most 3 as libc reads), or
 * 127.0.0.1:53 as libc assumes when there are none. They are never taken as validating: the operator
 * has not said that they are.
 */
export function readSystemServers(path = '/etc/resolv.conf'): DnsServer[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new IdnsError('invalid_config', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  const servers: DnsServer[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && net.isIP(stripScope(m[1]!)) !== 0 && servers.length < 3) servers.push({ host: m[1]!, port: 53 });
  }
  return servers.length > 0 ? servers : [{ host: '127.0.0.1', port: 53 }];
}

/** A client of the system's (non-validating) DNS servers, for a resolver given no DNS options. */
export function systemDnsClient(options: Partial<Omit<DnsClientOptions, 'servers' | 'validating'>> = {}): DnsClient {
  return new DnsClient({ ...options, servers: readSystemServers(), validating: false });
}
