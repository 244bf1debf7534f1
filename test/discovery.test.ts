import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import packet from 'dns-packet';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { candidateZones, isIdnsTxt, ZoneDiscovery, type ZoneDiscoveryOptions } from '../src/discovery/discover.js';
import { DnsClient, type DnsClientOptions } from '../src/discovery/dns-client.js';
import { formatDocument, formatTxt, type Publication } from '../src/discovery/publication.js';
import { fetchWellKnown, wellKnownFetcher } from '../src/discovery/well-known.js';
import { IdnsError } from '../src/errors.js';
import { makeServerCertificate } from './support/certs.js';
import { cleanupEachTest } from './support/cleanup.js';
import { startDnsLab, startFakeDns, txtData, type DnsLab, type FakeDnsServer, type LabServer } from './support/dns-lab.js';
import { tempDir } from './support/server.js';

const thumb = () => randomBytes(32).toString('base64url');
const pub = (zone: string, ds = [thumb()], servers = [`https://idns.${zone}`]): Publication => ({ zone, ds, servers });

const SIGNED = pub('signed.test');
const SUB = pub('sub.signed.test');
const PLAIN = pub('plain.test');
const OTHER = pub('other.test');
const WEBONLY = pub('webonly.test');

let lab: DnsLab;
let https: Server;
let agent: Agent;
let base: string;
/** What the HTTPS server answers for each zone's /.well-known/idns: a document, a status, or a raw reply. */
const documents = new Map<string, unknown>();
/** Every document request the HTTPS server received, by zone. */
const fetched: string[] = [];
const tmp = tempDir();
const cleanups = cleanupEachTest();

beforeAll(async () => {
  lab = await startDnsLab({
    zones: {
      'signed.test': {
        signed: true,
        records: [
          { name: '_idns', type: 'TXT', data: [txtData(formatTxt(SIGNED)), txtData('v=spf1 -all'), txtData('v=idns10; not ours')] },
          { name: '_idns.sub', type: 'TXT', data: [txtData(formatTxt(SUB))] },
        ],
      },
      'empty.test': { signed: true },
      'plain.test': { records: [{ name: '_idns', type: 'TXT', data: [txtData(formatTxt(PLAIN))] }] },
      'other.test': { records: [{ name: '_idns', type: 'TXT', data: [txtData(formatTxt(OTHER))] }] },
      'bare.test': {},
      'webonly.test': {},
      'twice.test': { records: [{ name: '_idns', type: 'TXT', data: [txtData(formatTxt(pub('twice.test'))), txtData(formatTxt(pub('twice.test')))] }] },
      'broken.test': { records: [{ name: '_idns', type: 'TXT', data: [txtData('v=idns1; ds=not-a-thumbprint; servers=https://x.test')] }] },
    },
  });
  const files = makeServerCertificate(tmp.dir);
  https = createServer({ cert: readFileSync(files.cert), key: readFileSync(files.key) }, (req, res) => {
    const m = /^\/([^/]+)\/\.well-known\/idns$/.exec(req.url ?? '');
    const zone = m?.[1] ?? '';
    fetched.push(zone);
    const doc = documents.get(zone);
    if (doc === undefined) {
      res.writeHead(404, { 'content-type': 'text/html' }).end('<h1>Not Found</h1>');
    } else if (typeof doc === 'number') {
      res.writeHead(doc, doc >= 300 && doc < 400 ? { location: 'https://elsewhere.test/' } : {}).end();
    } else if (typeof doc === 'string') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(doc);
    } else {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
    }
  });
  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
  base = `https://127.0.0.1:${(https.address() as AddressInfo).port}`;
  agent = new Agent({ connect: { ca: readFileSync(files.ca) } });
});

afterAll(async () => {
  await lab?.stop();
  await new Promise<void>((resolve) => (https ? https.close(() => resolve()) : resolve()));
  await agent?.close();
  tmp.remove();
});

const urlFor = (zone: string) => `${base}/${zone}/.well-known/idns`;

function dnsClient(servers: LabServer[], options: Partial<DnsClientOptions> = {}): DnsClient {
  // Generous: a loaded machine must not turn a slow answer into a timeout; tests of timeouts set their own.
  const c = new DnsClient({ servers, validating: true, timeoutMs: 3000, ...options });
  cleanups.push(() => c.close());
  return c;
}

function discovery(servers: LabServer[], options: Partial<ZoneDiscoveryOptions> & { dnsOptions?: Partial<DnsClientOptions> } = {}): ZoneDiscovery {
  const { dnsOptions, ...rest } = options;
  return new ZoneDiscovery({ dns: dnsClient(servers, dnsOptions), fetchDocument: wellKnownFetcher({ dispatcher: agent, urlFor, timeoutMs: 5000 }), ...rest });
}

/** Serves a document for a zone for the rest of the test. */
function serve(zone: string, doc: unknown): void {
  documents.set(zone, doc);
  cleanups.push(() => documents.delete(zone));
}

async function failure(p: Promise<unknown>): Promise<IdnsError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IdnsError);
  return err as IdnsError;
}

async function fake(behaviour: Parameters<typeof startFakeDns>[0]): Promise<FakeDnsServer> {
  const f = await startFakeDns(behaviour);
  cleanups.push(() => f.close());
  return f;
}

function fetchCount(zone: string): number {
  return fetched.filter((z) => z === zone).length;
}

describe('anchors', () => {
  test('a DNSSEC-secure TXT record anchors the zone (dnssec), with no document fetched', async () => {
    const before = fetchCount('signed.test');
    const d = await discovery([lab.validating]).discover('signed.test');
    expect(d.found).toMatchObject({
      zone: 'signed.test',
      ds: SIGNED.ds,
      servers: SIGNED.servers,
      anchor: { type: 'dnssec', name: '_idns.signed.test' },
      stale: false,
    });
    expect(d.found!.ttl).toBeGreaterThan(0);
    expect(fetchCount('signed.test')).toBe(before);
  });

  test('the same TXT record from servers not named as validating needs the HTTPS document', async () => {
    const err = await failure(discovery([lab.validating], { dnsOptions: { validating: false } }).discover('signed.test'));
    expect(err.code).toBe('anchor_refused');
    serve('signed.test', formatDocument(SIGNED));
    const d = await discovery([lab.validating], { dnsOptions: { validating: false } }).discover('signed.test');
    expect(d.found).toMatchObject({ zone: 'signed.test', ds: SIGNED.ds, anchor: { type: 'https', url: 'https://signed.test/.well-known/idns' } });
  });

  test('an unsigned TXT record without an HTTPS document is refused', async () => {
    const err = await failure(discovery([lab.validating]).discover('alice.plain.test'));
    expect(err.code).toBe('anchor_refused');
    expect(err.message).toMatch(/_idns\.plain\.test is not DNSSEC-secure/);
  });

  test('an unsigned TXT record confirmed by the HTTPS document anchors https; the document names the servers', async () => {
    serve('plain.test', formatDocument({ ...PLAIN, servers: ['https://moved.plain.test'] }));
    const d = await discovery([lab.validating]).discover('plain.test');
    expect(d.found).toMatchObject({
      zone: 'plain.test',
      ds: PLAIN.ds,
      servers: ['https://moved.plain.test'],
      anchor: { type: 'https', url: 'https://plain.test/.well-known/idns' },
    });
  });

  test('an HTTPS document naming another key is refused', async () => {
    serve('other.test', formatDocument({ ...OTHER, ds: [thumb()] }));
    const err = await failure(discovery([lab.validating]).discover('other.test'));
    expect(err.code).toBe('anchor_refused');
    expect(err.message).toMatch(/different keys/);
  });

  test('a bogus DNSSEC answer (wrong trust anchor) is dns_failed', async () => {
    serve('signed.test', formatDocument(SIGNED));
    const err = await failure(discovery([lab.wrongAnchor]).discover('signed.test'));
    expect(err.code).toBe('dns_failed');
    expect(err.message).toMatch(/SERVFAIL/);
  });

  test('requireDnssec accepts dnssec only, and fetches no documents', async () => {
    serve('plain.test', formatDocument(PLAIN));
    serve('webonly.test', formatDocument(WEBONLY));
    const strict = discovery([lab.validating], { requireDnssec: true });
    expect((await failure(strict.discover('plain.test'))).code).toBe('anchor_refused');
    const before = fetched.length;
    expect(await strict.discover('webonly.test')).toMatchObject({ found: null, secure: false });
    expect(fetched.length).toBe(before);
    expect((await strict.discover('signed.test')).found?.anchor).toEqual({ type: 'dnssec', name: '_idns.signed.test' });
  });

  test('a zone published by its HTTPS document alone anchors https', async () => {
    serve('webonly.test', formatDocument(WEBONLY));
    const d = await discovery([lab.validating]).discover('bob.webonly.test');
    expect(d.found).toMatchObject({ zone: 'webonly.test', ds: WEBONLY.ds, anchor: { type: 'https' } });
  });
});

describe('candidates and query bounds', () => {
  test('candidates: the host and its ancestors down to the registrable domain, never a public suffix', () => {
    expect(candidateZones('a.b.signed.test')).toEqual(['a.b.signed.test', 'b.signed.test', 'signed.test']);
    expect(candidateZones('a.b.example.co.uk')).toEqual(['a.b.example.co.uk', 'b.example.co.uk', 'example.co.uk']);
    expect(candidateZones('example.com')).toEqual(['example.com']);
    expect(candidateZones('co.uk')).toEqual([]);
    expect(candidateZones('com')).toEqual([]);
    // Private suffixes count: a GitHub Pages user's host never looks at github.io.
    expect(candidateZones('alice.github.io')).toEqual(['alice.github.io']);
    expect(candidateZones('github.io')).toEqual([]);
  });

  test('the closest enclosing published zone wins, with one TXT query per candidate', async () => {
    const proxy = await fake({ kind: 'forward', to: lab.validating });
    const d = await discovery([proxy]).discover('a.b.signed.test');
    expect(d.found).toMatchObject({ zone: 'signed.test', anchor: { type: 'dnssec' } });
    expect(proxy.queries.map((q) => q.name)).toEqual(['_idns.a.b.signed.test', '_idns.b.signed.test', '_idns.signed.test']);
    const closer = await discovery([proxy]).discover('x.sub.signed.test');
    expect(closer.found).toMatchObject({ zone: 'sub.signed.test', ds: SUB.ds, anchor: { type: 'dnssec', name: '_idns.sub.signed.test' } });
  });

  test('no query goes past the registrable domain; a public suffix is not looked up at all', async () => {
    const nx = await fake({
      kind: 'custom',
      answer: (q) => packet.encode({ ...packet.decode(q), type: 'response', flags: packet.RECURSION_DESIRED | 3 /* NXDOMAIN */ }),
    });
    const d = discovery([nx], { fetchDocument: async () => null });
    expect(await d.discover('alice.example.co.uk')).toMatchObject({ found: null, secure: false });
    expect(nx.queries.map((q) => q.name)).toEqual(['_idns.alice.example.co.uk', '_idns.example.co.uk']);
    expect(await d.discover('co.uk')).toMatchObject({ found: null });
    expect(await d.discover('test')).toMatchObject({ found: null });
    expect(nx.queries).toHaveLength(2);
  });

  test('no publication anywhere: found null, secure under DNSSEC, after 404s for the documents', async () => {
    const d = discovery([lab.validating]);
    expect(await d.discover('a.empty.test')).toMatchObject({ found: null, secure: true });
    expect(fetchCount('a.empty.test')).toBeGreaterThan(0);
    expect(fetchCount('empty.test')).toBeGreaterThan(0);
    expect(await discovery([lab.validating], { requireDnssec: true }).discover('b.empty.test')).toMatchObject({ found: null, secure: true });
    expect(await d.discover('bare.test')).toMatchObject({ found: null, secure: false });
  });

  test('TXT records other than v=idns1 are ignored; two v=idns1 records or a broken one are invalid_publication', async () => {
    expect(isIdnsTxt('v=idns1; ds=x')).toBe(true);
    expect(isIdnsTxt(' v=idns1 ;ds=x')).toBe(true);
    expect(isIdnsTxt('v=idns10; ds=x')).toBe(false);
    expect(isIdnsTxt('v=spf1 -all')).toBe(false);
    const d = discovery([lab.validating]);
    expect((await failure(d.discover('twice.test'))).code).toBe('invalid_publication');
    expect((await failure(d.discover('broken.test'))).code).toBe('invalid_publication');
  });
});

describe('no downgrade: failures are errors, never "not found"', () => {
  test('a DNS timeout is dns_failed', async () => {
    const silent = await fake({ kind: 'silent' });
    const err = await failure(discovery([silent], { dnsOptions: { timeoutMs: 200, attempts: 1 } }).discover('bare.test'));
    expect(err.code).toBe('dns_failed');
  });

  test('a document fetch that fails otherwise than 404/410 is an error', async () => {
    for (const [doc, code] of [
      [500, 'bad_response'],
      [302, 'bad_response'],
      ['not json', 'bad_response'],
      [{ v: 1, zone: 'elsewhere.test', ds: [thumb()], servers: ['https://x.test'] }, 'invalid_publication'],
    ] as const) {
      documents.set('bare.test', doc);
      const err = await failure(discovery([lab.validating]).discover('bare.test'));
      expect(err.code, JSON.stringify(doc)).toBe(code);
    }
    documents.set('bare.test', 410);
    expect(await discovery([lab.validating]).discover('bare.test')).toMatchObject({ found: null });
    documents.delete('bare.test');
  });

  test('an unreachable HTTPS server is network_error', async () => {
    const d = discovery([lab.validating], {
      fetchDocument: wellKnownFetcher({ dispatcher: agent, urlFor: () => 'https://127.0.0.1:1/.well-known/idns', timeoutMs: 2000 }),
    });
    expect((await failure(d.discover('bare.test'))).code).toBe('network_error');
  });
});

describe('the /.well-known/idns fetcher', () => {
  test('reads a document, null for 404 and 410, and refuses oversized bodies', async () => {
    serve('plain.test', formatDocument(PLAIN));
    expect(await fetchWellKnown('plain.test', { dispatcher: agent, urlFor })).toEqual(PLAIN);
    expect(await fetchWellKnown('nothing.test', { dispatcher: agent, urlFor })).toBeNull();
    serve('big.test', JSON.stringify({ ...formatDocument(pub('big.test')), padding: 'x'.repeat(17 * 1024) }));
    const err = await failure(fetchWellKnown('big.test', { dispatcher: agent, urlFor }));
    expect(err.code).toBe('bad_response');
    expect(err.message).toMatch(/larger than 16384 bytes/);
  });

  test('a caller abort rejects with its reason', async () => {
    const ac = new AbortController();
    ac.abort(new Error('gave up'));
    await expect(fetchWellKnown('plain.test', { dispatcher: agent, urlFor }, ac.signal)).rejects.toThrow('gave up');
  });
});

describe('caching and coalescing', () => {
  test('a discovery is cached for its TTL; concurrent discoveries of a host share the queries', async () => {
    const clock = new ManualClock(Date.now());
    const proxy = await fake({ kind: 'forward', to: lab.validating, delayMs: 20 });
    const d = discovery([proxy], { clock, dnsOptions: { clock } });
    const [a, b] = await Promise.all([d.discover('signed.test'), d.discover('signed.test')]);
    expect(a).toEqual(b);
    expect(proxy.queries).toHaveLength(1);
    const ttl = a.found!.ttl;
    clock.advance((ttl - 1) * 1000);
    expect((await d.discover('signed.test')).found!.ttl).toBe(1);
    expect(proxy.queries).toHaveLength(1);
    clock.advance(2000);
    await d.discover('signed.test');
    expect(proxy.queries).toHaveLength(2);
  });

  test('when the DNS servers die, a discovery rests on stale answers and says so', async () => {
    const clock = new ManualClock(Date.now());
    const proxy = await fake({ kind: 'forward', to: lab.validating });
    const d = discovery([proxy], { clock, dnsOptions: { clock, timeoutMs: 1500, attempts: 1 } });
    const fresh = await d.discover('signed.test');
    expect(fresh.found?.stale).toBe(false);
    proxy.behaviour = { kind: 'silent' };
    clock.advance((fresh.found!.ttl + 1) * 1000);
    const stale = await d.discover('signed.test');
    expect(stale.found).toMatchObject({ zone: 'signed.test', ds: SIGNED.ds, anchor: { type: 'dnssec' }, stale: true });
    expect(stale.found!.ttl).toBeLessThanOrEqual(30);
  });

  test("one caller's abort ends its own wait only", async () => {
    let release = () => undefined as void;
    const hold = new Promise<void>((r) => (release = r));
    cleanups.push(release);
    const held = await fake({ kind: 'forward', to: lab.validating, hold });
    const d = discovery([held], { dnsOptions: { timeoutMs: 30_000 } });
    const ac = new AbortController();
    const first = d.discover('signed.test', ac.signal);
    const second = d.discover('signed.test');
    ac.abort(new Error('first caller gave up'));
    await expect(first).rejects.toThrow('first caller gave up');
    release();
    expect((await second).found).toMatchObject({ zone: 'signed.test' });
    expect(held.queries).toHaveLength(1);
  });

  test('negative discoveries are cached too, bounded by the document TTL', async () => {
    const clock = new ManualClock(Date.now());
    const d = discovery([lab.validating], { clock, dnsOptions: { clock }, missingDocumentTtl: 30 });
    const first = await d.discover('c.empty.test');
    expect(first).toMatchObject({ found: null, secure: true });
    expect((first as { ttl: number }).ttl).toBeLessThanOrEqual(30);
    const before = fetchCount('c.empty.test');
    clock.advance(10_000);
    await d.discover('c.empty.test');
    expect(fetchCount('c.empty.test')).toBe(before);
    clock.advance(30_000);
    await d.discover('c.empty.test');
    expect(fetchCount('c.empty.test')).toBe(before + 1);
  });
});
