import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import packet from 'dns-packet';
import { PROCESS_BOUND_MS } from './process.js';

/**
 * A real DNS lab on loopback: Debian's `knotd` serving test zones (one signed with DNSSEC by knot itself,
 * others unsigned), a validating `unbound` that trusts the signed zone's key, and a second `unbound`
 * trusting a wrong key (every answer from the signed zone is then bogus: SERVFAIL). Everything runs
 * as the current user from a temporary directory, on a loopback address of its own (127.53.x.y), so
 * that two labs of parallel test files never share a port (knot binds UDP with SO_REUSEPORT, which
 * would silently split the traffic of two servers on one address and port).
 */

/** One resource record set of a lab zone, as a zone file writes it. */
export interface LabRecord {
  /** Owner relative to the zone (`@` for the apex, `_idns`, `a.b`). */
  name: string;
  type: string;
  ttl?: number;
  /** Zone-file rdata, one per record of the set (TXT: already quoted, see txtData). */
  data: string[];
}

/** A zone of the lab. */
export interface LabZone {
  signed?: boolean;
  records?: LabRecord[];
  /** SOA minimum: the negative-answer TTL (RFC 2308), seconds. Default 60. */
  negativeTtl?: number;
}

/** Where a DNS server of the lab listens. */
export interface LabServer {
  host: string;
  port: number;
}

/** A running lab. */
export interface DnsLab {
  dir: string;
  /** knotd: authoritative for every lab zone (answers never carry AD). */
  knot: LabServer;
  /** unbound, validating with the signed zones' real keys. */
  validating: LabServer;
  /** unbound, validating with a wrong key for each signed zone: their answers are bogus (SERVFAIL). */
  wrongAnchor: LabServer;
  /** Replaces (or creates) a record set in a zone; knot re-signs signed zones; the unbound caches are flushed. */
  set(zone: string, record: LabRecord): Promise<void>;
  /** Removes a record set. */
  remove(zone: string, name: string, type: string): Promise<void>;
  /** Empties both unbound caches for a zone. */
  flush(zone: string): Promise<void>;
  stop(): Promise<void>;
}

/** A TXT value as zone-file rdata: quoted strings of at most 255 bytes (the value itself is ASCII). */
export function txtData(value: string | string[]): string {
  const strings = typeof value === 'string' ? splitTxt(value) : value;
  return strings.map((s) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(' ');
}

function splitTxt(value: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < value.length; i += 255) out.push(value.slice(i, i + 255));
  return out.length === 0 ? [''] : out;
}

const DEFAULT_ZONES: Record<string, LabZone> = { 'signed.test': { signed: true }, 'plain.test': {} };

/** Starts knotd and two unbounds; stops all of them if any fails to start. */
export async function startDnsLab(options: { zones?: Record<string, LabZone> } = {}): Promise<DnsLab> {
  const zones = options.zones ?? DEFAULT_ZONES;
  const dir = mkdtempSync(join(tmpdir(), 'idns-dnslab-'));
  const host = `127.53.${randomInt(1, 255)}.${randomInt(1, 255)}`;
  const children: Daemon[] = [];
  const stop = async () => {
    for (const c of children.splice(0).reverse()) await c.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const knot = await startWithFreePort(host, (port) => startKnot(dir, host, port, zones));
    children.push(knot);
    const anchors: string[] = [];
    const wrong: string[] = [];
    for (const [zone, z] of Object.entries(zones)) {
      if (!z.signed) continue;
      const keys = await dnskeys(host, knot.port, zone);
      if (keys.length === 0) throw new Error(`knot published no KSK for ${zone}:\n${knot.output()}`);
      for (const k of keys) anchors.push(`${zone}. 3600 IN DNSKEY ${k}`);
      // A well-formed ECDSA P-256 key that signed nothing.
      wrong.push(`${zone}. 3600 IN DNSKEY 257 3 13 ${randomBytes(64).toString('base64')}`);
    }
    const validating = await startWithFreePort(host, (port) => startUnbound(dir, 'validating', host, port, knot.port, zones, anchors));
    children.push(validating);
    const wrongAnchor = await startWithFreePort(host, (port) => startUnbound(dir, 'wrong', host, port, knot.port, zones, wrong));
    children.push(wrongAnchor);
    const knotc = (...args: string[]) => run('knotc', ['-s', join(dir, 'knot.sock'), ...args]);
    const flush = async (zone: string) => {
      for (const u of [validating, wrongAnchor]) {
        await run('unbound-control', ['-c', u.config, 'flush_zone', zone]);
        await run('unbound-control', ['-c', u.config, 'flush_bogus']);
      }
    };
    const edit = async (zone: string, change: () => Promise<void>) => {
      await knotc('zone-begin', zone);
      try {
        await change();
        await knotc('zone-commit', zone);
      } catch (err) {
        await knotc('zone-abort', zone).catch(() => undefined);
        throw err;
      }
      await flush(zone);
    };
    return {
      dir,
      knot: { host, port: knot.port },
      validating: { host, port: validating.port },
      wrongAnchor: { host, port: wrongAnchor.port },
      set: (zone, r) =>
        edit(zone, async () => {
          // zone-unset of a missing set fails; that is not an error here.
          await knotc('zone-unset', zone, r.name, r.type).catch(() => undefined);
          for (const d of r.data) await knotc('zone-set', zone, r.name, String(r.ttl ?? 300), r.type, d);
        }),
      remove: (zone, name, type) => edit(zone, () => knotc('zone-unset', zone, name, type).then(() => undefined)),
      flush,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

interface Daemon {
  port: number;
  config: string;
  output: () => string;
  stop: () => Promise<void>;
}

/**
 * A port free on `host` for both UDP and TCP at the time of asking. Another program may take it before
 * the daemon binds it; the daemon then fails to start (or answers wrongly) and the caller tries another.
 */
async function freePort(host: string): Promise<number> {
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(0, host, () => resolve());
  });
  const port = udp.address().port;
  const tcp = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, host, () => resolve());
    });
    return port;
  } catch {
    return freePort(host);
  } finally {
    udp.close();
    await new Promise<void>((resolve) => tcp.close(() => resolve()));
  }
}

async function startWithFreePort(host: string, start: (port: number) => Promise<Daemon>): Promise<Daemon> {
  let last: unknown = null;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      return await start(await freePort(host));
    } catch (err) {
      last = err;
    }
  }
  throw last;
}

function startKnot(dir: string, host: string, port: number, zones: Record<string, LabZone>): Promise<Daemon> {
  const user = userInfo();
  const config = join(dir, 'knot.conf');
  const lines = [
    'server:',
    `  rundir: "${dir}"`,
    `  listen: ${host}@${port}`,
    // As whoever runs the tests (root here); knot would otherwise switch to its default user.
    ...(user.uid === 0 ? [] : [`  user: ${user.username}`]),
    'log:',
    '  - target: stderr',
    '    any: info',
    'database:',
    `  storage: "${dir}"`,
    'control:',
    `  listen: "${join(dir, 'knot.sock')}"`,
    'policy:',
    '  - id: lab',
    '    algorithm: ecdsap256sha256',
    '    single-type-signing: on',
    'template:',
    '  - id: default',
    `    storage: "${dir}"`,
    '    file: "%s.zone"',
    'zone:',
  ];
  for (const [zone, z] of Object.entries(zones)) {
    lines.push(`  - domain: ${zone}`);
    if (z.signed) lines.push('    dnssec-signing: on', '    dnssec-policy: lab');
    const file = [`$ORIGIN ${zone}.`, '$TTL 300', `@ SOA ns hostmaster 1 3600 600 86400 ${z.negativeTtl ?? 60}`, '@ NS ns', `ns A ${host}`];
    for (const r of z.records ?? []) for (const d of r.data) file.push(`${r.name} ${r.ttl ?? 300} IN ${r.type} ${d}`);
    writeFileSync(join(dir, `${zone}.zone`), file.join('\n') + '\n');
  }
  writeFileSync(config, lines.join('\n') + '\n');
  return startDaemon('knotd', ['-c', config], config, port, async () => {
    for (const [zone, z] of Object.entries(zones)) {
      const soa = await probe(host, port, zone, 'SOA');
      if (soa === null || !soa.answers?.some((a) => a.type === 'SOA')) return false;
      if (z.signed && (await dnskeys(host, port, zone)).length === 0) return false;
    }
    return true;
  });
}

function startUnbound(
  dir: string,
  name: string,
  host: string,
  port: number,
  knotPort: number,
  zones: Record<string, LabZone>,
  anchors: string[],
): Promise<Daemon> {
  const config = join(dir, `unbound-${name}.conf`);
  const lines = [
    'server:',
    `  interface: ${host}@${port}`,
    `  port: ${port}`,
    // No privilege drop and no chroot: the lab runs as whoever runs the tests, from its directory.
    '  username: ""',
    '  chroot: ""',
    `  directory: "${dir}"`,
    `  pidfile: "${join(dir, `unbound-${name}.pid`)}"`,
    '  use-syslog: no',
    '  logfile: ""',
    '  verbosity: 1',
    '  val-log-level: 2',
    '  do-ip6: no',
    '  num-threads: 1',
    '  so-reuseport: no',
    '  access-control: 127.0.0.0/8 allow',
    '  do-not-query-localhost: no',
    '  module-config: "validator iterator"',
    // unbound answers .test itself by default (RFC 6761); the lab's zones live there.
    '  local-zone: "test." nodefault',
    '  qname-minimisation: no',
    ...anchors.map((a) => `  trust-anchor: "${a}"`),
    ...Object.entries(zones)
      .filter(([, z]) => !z.signed)
      .map(([zone]) => `  domain-insecure: "${zone}"`),
    'remote-control:',
    '  control-enable: yes',
    `  control-interface: "${join(dir, `unbound-${name}.ctl`)}"`,
    '  control-use-cert: no',
  ];
  for (const zone of Object.keys(zones)) lines.push('stub-zone:', `  name: "${zone}"`, `  stub-addr: ${host}@${knotPort}`);
  writeFileSync(config, lines.join('\n') + '\n');
  const someZone = Object.keys(zones)[0]!;
  return startDaemon('unbound', ['-d', '-c', config], config, port, async () => {
    const r = await probe(host, port, someZone, 'SOA');
    // The wrong-anchor unbound answers SERVFAIL for a signed zone: any answer means it is up.
    return r !== null;
  });
}

/** Starts a daemon and waits until `ready` says so; bounded, and fails early when the daemon exits. */
async function startDaemon(command: string, args: string[], config: string, port: number, ready: () => Promise<boolean>): Promise<Daemon> {
  const child: ChildProcess = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  child.once('error', (err) => (out += `\n${err.message}`));
  const stop = async () => {
    if (exited) return;
    child.kill('SIGTERM');
    const killed = await Promise.race([exit.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000).unref())]);
    if (!killed) {
      child.kill('SIGKILL');
      await exit;
    }
  };
  const deadline = Date.now() + PROCESS_BOUND_MS;
  while (!exited) {
    if (await ready().catch(() => false)) return { port, config, output: () => out, stop };
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await stop();
  throw new Error(`${command} did not start on port ${port}${exited ? ' (it exited)' : ''}:\n${out}`);
}

/** One UDP query (no retries, 1 s), for readiness checks; null when nothing (valid) came back. */
async function probe(host: string, port: number, name: string, type: 'SOA' | 'DNSKEY'): Promise<packet.Packet | null> {
  const id = randomInt(0, 65536);
  const query = packet.encode({
    type: 'query',
    id,
    flags: packet.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: packet.DNSSEC_OK } as packet.Answer],
  });
  const sock = dgram.createSocket('udp4');
  try {
    return await new Promise<packet.Packet | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), 1000);
      sock.on('error', () => resolve(null));
      sock.on('message', (msg) => {
        try {
          const p = packet.decode(msg);
          if (p.id !== id) return;
          clearTimeout(timer);
          resolve(p);
        } catch {
          // Not a DNS message: keep waiting for one (bounded by the timer).
        }
      });
      sock.send(query, port, host);
    });
  } finally {
    sock.close();
  }
}

/** The zone's key-signing keys (flags 257) as zone-file rdata, read from knot. */
async function dnskeys(host: string, port: number, zone: string): Promise<string[]> {
  const r = await probe(host, port, zone, 'DNSKEY');
  const out: string[] = [];
  for (const a of r?.answers ?? []) {
    if (a.type !== 'DNSKEY') continue;
    const k = a.data as { flags: number; algorithm: number; key: Buffer };
    if (k.flags === 257) out.push(`257 3 ${k.algorithm} ${k.key.toString('base64')}`);
  }
  return out;
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: PROCESS_BOUND_MS }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')}: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

/** A fake DNS server for hostile cases: how it treats each query it receives. */
export type FakeBehaviour =
  /** Never answers. */
  | { kind: 'silent' }
  /** Forwards to a real server and relays its answer, after `delayMs`, and not before `hold` settles. */
  | { kind: 'forward'; to: LabServer; delayMs?: number; hold?: Promise<void> }
  /** Answers with whatever `answer` builds from the query (raw bytes; may be garbage). */
  | { kind: 'custom'; answer: (query: Buffer) => Buffer | Buffer[] | null };

/** A fake DNS server (UDP and TCP) that counts and records the queries it receives. */
export interface FakeDnsServer extends LabServer {
  /** Every query received: name, type and transport. */
  queries: { name: string; type: string; transport: 'udp' | 'tcp' }[];
  behaviour: FakeBehaviour;
  close(): Promise<void>;
}

/** Starts a fake DNS server on a free loopback port (UDP and TCP on the same port). */
export async function startFakeDns(behaviour: FakeBehaviour): Promise<FakeDnsServer> {
  const host = '127.0.0.1';
  const { udp, tcp } = await bindPair(host);
  const port = udp.address().port;
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let closed = false;
  const server: FakeDnsServer = {
    host,
    port,
    queries: [],
    behaviour,
    close: async () => {
      closed = true;
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      udp.close();
      await new Promise<void>((resolve) => tcp.close(() => resolve()));
    },
  };
  const record = (msg: Buffer, transport: 'udp' | 'tcp') => {
    try {
      const q = packet.decode(msg).questions?.[0];
      server.queries.push({ name: q?.name ?? '', type: q?.type ?? '', transport });
    } catch {
      server.queries.push({ name: '', type: '', transport });
    }
  };
  const answer = async (msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer[]> => {
    const b = server.behaviour;
    if (b.kind === 'silent') return [];
    if (b.kind === 'custom') {
      const a = b.answer(msg);
      return a === null ? [] : Array.isArray(a) ? a : [a];
    }
    if (b.delayMs) await new Promise<void>((r) => timers.add(setTimeout(r, b.delayMs)));
    if (b.hold) await b.hold;
    return [await relay(b.to, msg, transport)];
  };
  udp.on('message', (msg, rinfo) => {
    record(msg, 'udp');
    void answer(msg, 'udp').then(
      // An answer held past close() is dropped.
      (bufs) => bufs.forEach((b) => !closed && udp.send(b, rinfo.port, rinfo.address)),
      () => undefined,
    );
  });
  tcp.on('connection', (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        record(msg, 'tcp');
        void answer(msg, 'tcp').then(
          (bufs) => {
            for (const b of bufs) {
              const len = Buffer.alloc(2);
              len.writeUInt16BE(b.length);
              if (!sock.destroyed) sock.write(Buffer.concat([len, b]));
            }
          },
          () => undefined,
        );
      }
    });
  });
  return server;
}

/** A UDP socket and a TCP server on one free port: the UDP port comes from the system, and when TCP finds it taken, another is tried. */
async function bindPair(host: string): Promise<{ udp: dgram.Socket; tcp: net.Server }> {
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(0, host, () => resolve());
    });
    const tcp = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(udp.address().port, host, () => resolve());
      });
      return { udp, tcp };
    } catch (err) {
      udp.close();
      if (attempt >= 20) throw err;
    }
  }
}

/** Sends a query to a real server over the same transport and returns its answer. */
function relay(to: LabServer, msg: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('relay timed out')), 10_000);
    if (transport === 'udp') {
      const s = dgram.createSocket('udp4');
      s.on('message', (m) => {
        clearTimeout(timer);
        s.close();
        resolve(m);
      });
      s.on('error', (e) => {
        clearTimeout(timer);
        s.close();
        reject(e);
      });
      s.send(msg, to.port, to.host);
      return;
    }
    const c = net.connect(to.port, to.host);
    let buf = Buffer.alloc(0);
    c.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    c.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(msg.length);
      c.write(Buffer.concat([len, msg]));
    });
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        clearTimeout(timer);
        c.destroy();
        resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      }
    });
  });
}
