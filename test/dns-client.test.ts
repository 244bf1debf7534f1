import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import packet from 'dns-packet';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { DnsClient, parseDnsServer, readSystemServers, type DnsClientOptions } from '../src/discovery/dns-client.js';
import { IdnsError } from '../src/errors.js';
import { cleanupEachTest } from './support/cleanup.js';
import { startDnsLab, startFakeDns, txtData, type DnsLab, type FakeDnsServer, type LabServer } from './support/dns-lab.js';
import { tempDir } from './support/server.js';

const PUB = 'v=idns1; ds=x; servers=https://a.example';
let lab: DnsLab;
const cleanups = cleanupEachTest();

beforeAll(async () => {
  const chain = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, type: 'CNAME', data: [`${prefix}${i + 1}`] }));
  lab = await startDnsLab({
    zones: {
      'signed.test': { signed: true, records: [{ name: '_idns', type: 'TXT', data: [txtData(PUB), txtData('something else')] }] },
      'plain.test': {
        negativeTtl: 40,
        records: [
          { name: '_idns', type: 'TXT', ttl: 100, data: [txtData(PUB)] },
          { name: '_idns.loop', type: 'CNAME', data: ['loop2'] },
          { name: 'loop2', type: 'CNAME', data: ['_idns.loop'] },
          ...chain('short', 3),
          { name: 'short3', type: 'TXT', data: [txtData('at the end')] },
          ...chain('long', 10),
          { name: 'long10', type: 'TXT', data: [txtData('too far')] },
          // 30 records of 6 strings of 250 bytes: 45 KB, over TCP only.
          { name: '_idns.big', type: 'TXT', data: Array.from({ length: 30 }, (_, i) => txtData(Array.from({ length: 6 }, () => `${i}`.padEnd(250, 'x')))) },
          // 17 small records: over the count bound, under the byte bound.
          { name: '_idns.many', type: 'TXT', data: Array.from({ length: 17 }, (_, i) => txtData(`r${i}`)) },
          // 2 records of 2100 bytes: under the count bound, over the byte bound.
          { name: '_idns.long', type: 'TXT', data: [txtData('a'.repeat(2100)), txtData('b'.repeat(2100))] },
        ],
      },
    },
  });
});
afterAll(async () => {
  await lab?.stop();
});

function client(servers: LabServer[], options: Partial<DnsClientOptions> = {}): DnsClient {
  // Generous: a loaded machine must not turn a slow answer into a timeout; tests of timeouts set their own.
  const c = new DnsClient({ servers, validating: true, timeoutMs: 3000, ...options });
  cleanups.push(() => c.close());
  return c;
}

async function fake(behaviour: Parameters<typeof startFakeDns>[0]): Promise<FakeDnsServer> {
  const f = await startFakeDns(behaviour);
  cleanups.push(() => f.close());
  return f;
}

async function failure(p: Promise<unknown>): Promise<IdnsError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IdnsError);
  return err as IdnsError;
}

describe('answers and the AD flag', () => {
  test('a DNSSEC-signed TXT set through the validating resolver is secure, each record its strings concatenated', async () => {
    const a = await client([lab.validating]).queryTxt('_idns.signed.test');
    expect(a).toMatchObject({ rcode: 'NOERROR', secure: true, stale: false, server: `${lab.validating.host}:${lab.validating.port}` });
    expect(a.records.sort()).toEqual([PUB, 'something else'].sort());
    expect(a.ttl).toBeGreaterThan(0);
    expect(a.ttl).toBeLessThanOrEqual(300);
  });

  test('the AD flag is not believed from servers not named as validating', async () => {
    const a = await client([lab.validating], { validating: false }).queryTxt('_idns.signed.test');
    expect(a.secure).toBe(false);
    expect(a.records).toContain(PUB);
  });

  test('an authoritative server never makes an answer secure; an unsigned zone is insecure even through the validator', async () => {
    expect((await client([lab.knot]).queryTxt('_idns.signed.test')).secure).toBe(false);
    const a = await client([lab.validating]).queryTxt('_idns.plain.test');
    expect(a).toMatchObject({ rcode: 'NOERROR', records: [PUB], secure: false });
  });

  test('denials: NXDOMAIN and NODATA, secure in the signed zone, with the SOA negative TTL', async () => {
    const c = client([lab.validating]);
    expect(await c.queryTxt('_idns.nothing.signed.test')).toMatchObject({ rcode: 'NXDOMAIN', records: [], secure: true });
    expect(await c.queryTxt('ns.signed.test')).toMatchObject({ rcode: 'NOERROR', records: [], secure: true });
    const plain = await c.queryTxt('_idns.nothing.plain.test');
    expect(plain).toMatchObject({ rcode: 'NXDOMAIN', records: [], secure: false });
    expect(plain.ttl).toBeLessThanOrEqual(40);
  });

  test('a bogus answer (the resolver has a wrong trust anchor) is dns_failed, naming SERVFAIL', async () => {
    const err = await failure(client([lab.wrongAnchor], { attempts: 1 }).queryTxt('_idns.signed.test'));
    expect(err.code).toBe('dns_failed');
    expect(err.message).toMatch(/SERVFAIL/);
  });

  test('CNAME chains are followed within the answer', async () => {
    expect(await client([lab.validating]).queryTxt('short0.plain.test')).toMatchObject({ rcode: 'NOERROR', records: ['at the end'] });
  });
});

describe('hostile answers: bounded, typed errors', () => {
  test('a CNAME loop is dns_failed', async () => {
    const err = await failure(client([lab.knot]).queryTxt('_idns.loop.plain.test'));
    expect(err.code).toBe('dns_failed');
    expect(err.message).toMatch(/CNAME loop/);
  });

  test('a CNAME chain longer than 8 is dns_failed; one cut short by the server proves nothing', async () => {
    const err = await failure(client([lab.validating]).queryTxt('long0.plain.test'));
    expect(err.message).toMatch(/more than 8 CNAMEs/);
    // knot itself stops its chain after a few links, with no denial at the end.
    const cut = await failure(client([lab.knot]).queryTxt('long0.plain.test'));
    expect(cut.message).toMatch(/without records or a denial/);
  });

  test('a truncated UDP answer is fetched over TCP, and a 45 KB TXT set is refused by its bounds', async () => {
    const proxy = await fake({ kind: 'forward', to: lab.knot });
    const err = await failure(client([proxy]).queryTxt('_idns.big.plain.test'));
    expect(err.code).toBe('dns_failed');
    expect(err.message).toMatch(/30 TXT records, more than 16/);
    expect(proxy.queries.map((q) => q.transport)).toEqual(['udp', 'tcp']);
  });

  test('many TXT records, and TXT records holding too many bytes, are refused', async () => {
    const c = client([lab.validating]);
    expect((await failure(c.queryTxt('_idns.many.plain.test'))).message).toMatch(/17 TXT records, more than 16/);
    expect((await failure(c.queryTxt('_idns.long.plain.test'))).message).toMatch(/more than 4096 bytes/);
  });

  test('a silent server: dns_failed after the attempts, within their time bound', async () => {
    const silent = await fake({ kind: 'silent' });
    const started = Date.now();
    const err = await failure(client([silent], { timeoutMs: 300, attempts: 2 }).queryTxt('_idns.signed.test'));
    expect(err.code).toBe('dns_failed');
    expect(err.message).toMatch(/timed out after 300 ms/);
    expect(silent.queries).toHaveLength(2);
    // Two attempts of 300 ms; generous slack for a loaded machine, but far from hanging.
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  test('a slow server is given up for the next one; its late answer is not used', async () => {
    let release = () => undefined as void;
    const hold = new Promise<void>((r) => (release = r));
    cleanups.push(release);
    // It answers only once the test is over: later than any time limit, whatever the machine's load.
    const slow = await fake({ kind: 'forward', to: lab.validating, hold });
    const a = await client([slow, lab.validating], { timeoutMs: 2000, attempts: 1 }).queryTxt('_idns.signed.test');
    expect(a.server).toBe(`${lab.validating.host}:${lab.validating.port}`);
    expect(slow.queries).toHaveLength(1);
    const alone = await failure(client([slow], { timeoutMs: 300, attempts: 1 }).queryTxt('_idns.signed.test'));
    expect(alone.message).toMatch(/timed out/);
  });

  test('answers with another ID or question are ignored (spoofing), garbage is reported', async () => {
    const answer = (q: Buffer, change: (p: packet.Packet) => void) => {
      const p = packet.decode(q);
      const r: packet.Packet = {
        ...p,
        type: 'response',
        flags: packet.RECURSION_DESIRED,
        answers: [{ type: 'TXT', name: p.questions![0]!.name, ttl: 60, data: ['spoofed'] }],
      };
      change(r);
      return packet.encode(r);
    };
    const spoofer = await fake({
      kind: 'custom',
      answer: (q) => [
        answer(q, (p) => (p.id = (p.id! + 1) % 65536)),
        answer(q, (p) => (p.questions = [{ type: 'TXT', name: 'other.test' }])),
        answer(q, () => undefined),
      ],
    });
    // The two wrong answers come first; the third, right one is taken.
    expect((await client([spoofer]).queryTxt('_idns.x.test')).records).toEqual(['spoofed']);
    spoofer.behaviour = { kind: 'custom', answer: (q) => answer(q, (p) => (p.id = (p.id! + 1) % 65536)) };
    expect((await failure(client([spoofer], { timeoutMs: 300, attempts: 1 }).queryTxt('_idns.y.test'))).message).toMatch(/another query ID/);
    spoofer.behaviour = { kind: 'custom', answer: () => Buffer.from('not dns at all') };
    expect((await failure(client([spoofer], { timeoutMs: 300, attempts: 1 }).queryTxt('_idns.z.test'))).message).toMatch(/malformed/);
  });

  test('a UDP answer larger than the advertised 1232 bytes is refused', async () => {
    const big = await fake({
      kind: 'custom',
      answer: (q) => {
        const p = packet.decode(q);
        const name = p.questions![0]!.name;
        return packet.encode({
          ...p,
          type: 'response',
          flags: packet.RECURSION_DESIRED,
          answers: [
            {
              type: 'TXT',
              name,
              ttl: 60,
              data: ['x'.repeat(200), 'y'.repeat(200), 'z'.repeat(200), 'w'.repeat(200), 'v'.repeat(200), 'u'.repeat(200), 't'.repeat(200)],
            },
          ],
        });
      },
    });
    const err = await failure(client([big], { timeoutMs: 300, attempts: 1 }).queryTxt('_idns.big.test'));
    expect(err.message).toMatch(/oversized UDP answer/);
  });

  test('names that are not DNS names are refused before any query', async () => {
    const proxy = await fake({ kind: 'silent' });
    const c = client([proxy]);
    for (const bad of ['', 'a..b', `${'a'.repeat(64)}.test`, 'a b.test', `${'a.'.repeat(130)}test`]) {
      expect((await failure(c.queryTxt(bad))).code, bad).toBe('invalid_zone_name');
    }
    expect(proxy.queries).toHaveLength(0);
  });

  test('REFUSED is dns_failed', async () => {
    const refuser = await fake({ kind: 'custom', answer: (q) => packet.encode({ ...packet.decode(q), type: 'response', flags: 5 }) });
    expect((await failure(client([refuser], { attempts: 1 }).queryTxt('_idns.x.test'))).message).toMatch(/REFUSED/);
  });

  test('an aborted signal ends the wait at once', async () => {
    const silent = await fake({ kind: 'silent' });
    const c = client([silent], { timeoutMs: 60_000 });
    const ac = new AbortController();
    const p = c.queryTxt('_idns.signed.test', ac.signal);
    ac.abort(new Error('caller gave up'));
    await expect(p).rejects.toThrow('caller gave up');
  });
});

describe('cache, serve-stale and coalescing', () => {
  test('an answer is cached for its TTL, a denial for its negative TTL', async () => {
    const clock = new ManualClock(Date.now());
    const proxy = await fake({ kind: 'forward', to: lab.validating });
    const c = client([proxy], { clock });
    expect((await c.queryTxt('_idns.plain.test')).ttl).toBeLessThanOrEqual(100);
    clock.advance(50_000);
    const cached = await c.queryTxt('_idns.plain.test.');
    expect(proxy.queries).toHaveLength(1);
    expect(cached.ttl).toBeLessThanOrEqual(50);
    clock.advance(51_000);
    await c.queryTxt('_idns.plain.test');
    expect(proxy.queries).toHaveLength(2);

    await c.queryTxt('_idns.absent.plain.test');
    clock.advance(30_000);
    await c.queryTxt('_idns.absent.plain.test');
    expect(proxy.queries).toHaveLength(3);
    clock.advance(11_000);
    await c.queryTxt('_idns.absent.plain.test');
    expect(proxy.queries).toHaveLength(4);
  });

  test('when every server fails, an expired answer is served stale (RFC 8767), for a bounded window', async () => {
    const clock = new ManualClock(Date.now());
    const proxy = await fake({ kind: 'forward', to: lab.validating });
    const c = client([proxy], { clock, timeoutMs: 1500, attempts: 1, staleWindow: 3600 });
    const fresh = await c.queryTxt('_idns.signed.test');
    proxy.behaviour = { kind: 'silent' };
    clock.advance(400_000);
    const stale = await c.queryTxt('_idns.signed.test');
    expect(stale).toMatchObject({ records: fresh.records, secure: true, stale: true, ttl: 30 });
    const asked = proxy.queries.length;
    // Within the 30 s after a failure, the stale answer is served without asking again.
    clock.advance(10_000);
    expect((await c.queryTxt('_idns.signed.test')).stale).toBe(true);
    expect(proxy.queries).toHaveLength(asked);
    // Past the window, nothing is left to serve.
    clock.advance(3600_000);
    expect((await failure(c.queryTxt('_idns.signed.test'))).code).toBe('dns_failed');
    expect(proxy.queries.length).toBeGreaterThan(asked);
  });

  test('a hostile answer is an error, not a reason to serve stale', async () => {
    const clock = new ManualClock(Date.now());
    const c = client([lab.knot], { clock });
    await lab.set('plain.test', { name: '_idns.flip', type: 'TXT', ttl: 10, data: [txtData(PUB)] });
    expect((await c.queryTxt('_idns.flip.plain.test')).records).toEqual([PUB]);
    await lab.remove('plain.test', '_idns.flip', 'TXT');
    await lab.set('plain.test', { name: '_idns.flip', type: 'CNAME', ttl: 10, data: ['flop'] });
    await lab.set('plain.test', { name: 'flop', type: 'CNAME', ttl: 10, data: ['_idns.flip'] });
    clock.advance(11_000);
    await expect(c.queryTxt('_idns.flip.plain.test')).rejects.toThrow(/CNAME loop/);
  });

  test('concurrent queries for one name share one packet', async () => {
    const proxy = await fake({ kind: 'forward', to: lab.validating, delayMs: 50 });
    const c = client([proxy]);
    const [a, b] = await Promise.all([c.queryTxt('_idns.signed.test'), c.queryTxt('_IDNS.Signed.test.')]);
    expect(a.records).toEqual(b.records);
    expect(proxy.queries).toHaveLength(1);
  });

  test('the cache holds at most maxEntries names', async () => {
    const proxy = await fake({ kind: 'forward', to: lab.validating });
    const c = client([proxy], { maxEntries: 2 });
    for (const n of ['a', 'b', 'c']) await c.queryTxt(`_idns.${n}.plain.test`);
    await c.queryTxt('_idns.c.plain.test');
    expect(proxy.queries).toHaveLength(3);
    await c.queryTxt('_idns.a.plain.test');
    expect(proxy.queries).toHaveLength(4);
  });
});

describe('configuration', () => {
  test('the system servers come from resolv.conf (IP addresses, at most 3), else 127.0.0.1', () => {
    const { dir, remove } = tempDir();
    cleanups.push(remove);
    const path = join(dir, 'resolv.conf');
    writeFileSync(
      path,
      '# comment\nsearch example\nnameserver 192.0.2.1\nnameserver not-an-ip\nnameserver 2001:db8::1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\n',
    );
    expect(readSystemServers(path)).toEqual([
      { host: '192.0.2.1', port: 53 },
      { host: '2001:db8::1', port: 53 },
      { host: '192.0.2.2', port: 53 },
    ]);
    expect(readSystemServers(join(dir, 'missing'))).toEqual([{ host: '127.0.0.1', port: 53 }]);
  });

  test('a DNS server as given on the command line', () => {
    expect(parseDnsServer('192.0.2.1')).toEqual({ host: '192.0.2.1', port: 53 });
    expect(parseDnsServer('192.0.2.1:5353')).toEqual({ host: '192.0.2.1', port: 5353 });
    expect(parseDnsServer('2001:db8::1')).toEqual({ host: '2001:db8::1', port: 53 });
    expect(parseDnsServer('[2001:db8::1]:853')).toEqual({ host: '2001:db8::1', port: 853 });
    for (const bad of ['dns.example', 'dns.example:53', '192.0.2.1:0', '192.0.2.1:70000', '[192.0.2.1]:53', '']) {
      expect(() => parseDnsServer(bad), bad).toThrow(/expected IP/);
    }
  });

  test('servers must be IP addresses and ports', () => {
    expect(() => new DnsClient({ servers: [], validating: false })).toThrow(/no DNS server/);
    expect(() => new DnsClient({ servers: [{ host: 'dns.example', port: 53 }], validating: false })).toThrow(/not an IP address/);
    expect(() => new DnsClient({ servers: [{ host: '127.0.0.1', port: 0 }], validating: false })).toThrow(/not a port/);
  });
});
