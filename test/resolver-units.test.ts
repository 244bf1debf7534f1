import { ZoneVersions } from '../src/resolver/zone-versions.js';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { DENIAL_MAX_HASHES, nameHash } from '../src/records/denial.js';
import { IdnsError } from '../src/errors.js';
import { assureAllowedUrl, isPrivateAddress, publicOnlyLookup } from '../src/resolver/address-policy.js';
import { LruCache } from '../src/resolver/cache.js';
import { verifyProof, type ProofStep } from '../src/resolver/proof.js';
import { ServerSelector } from '../src/resolver/servers.js';
import { FAKE_SALT, freshKey, historyOf, payloadOf, ZoneSigner } from './support/fake-server.js';
import { newUserKey } from './support/keys.js';
import { errorCode } from './support/errors.js';

/** The typed error code `fn` throws (fails the test when it returns or throws something untyped). */

describe('ServerSelector', () => {
  const A = 'https://a.example';
  const B = 'https://b.example';
  const C = 'https://c.example';

  it('orders servers by smoothed round-trip time, lowest first', () => {
    const sel = new ServerSelector(new ManualClock());
    sel.success(A, 50);
    sel.success(B, 10);
    sel.success(C, 30);
    for (let i = 0; i < 20; i++) expect(sel.order([A, B, C])).toEqual([B, C, A]);
  });

  it('smooths: one fast answer does not outrank a server that is consistently faster', () => {
    const sel = new ServerSelector(new ManualClock());
    for (let i = 0; i < 5; i++) sel.success(A, 20);
    sel.success(B, 100);
    for (let i = 0; i < 5; i++) sel.success(B, 100);
    sel.success(B, 1); // 0.7·100 + 0.3·1 ≈ 70
    expect(sel.order([A, B])).toEqual([A, B]);
  });

  it('tries unknown servers before known slow ones', () => {
    const sel = new ServerSelector(new ManualClock());
    sel.success(A, 40);
    for (let i = 0; i < 20; i++) expect(sel.order([A, B])[0]).toBe(B);
  });

  it('puts a failed server last and holds it back, then tries it again after the hold time', () => {
    const clock = new ManualClock();
    const sel = new ServerSelector(clock);
    sel.success(A, 50);
    sel.success(B, 5);
    sel.success(C, 30);
    sel.failure(B);
    expect(sel.isHeld(B)).toBe(true);
    for (let i = 0; i < 20; i++) expect(sel.order([A, B, C])).toEqual([C, A, B]);
    clock.advance(4_999);
    expect(sel.isHeld(B)).toBe(true);
    clock.advance(2);
    expect(sel.isHeld(B)).toBe(false);
    // Back in the race, ranked by its (doubled) srtt: 10 ms, still the fastest.
    for (let i = 0; i < 20; i++) expect(sel.order([A, B, C])).toEqual([B, C, A]);
  });

  it('doubles the hold per consecutive failure up to 5 minutes, and a success clears it', () => {
    const clock = new ManualClock();
    const sel = new ServerSelector(clock);
    sel.failure(A);
    sel.failure(A);
    clock.advance(9_999);
    expect(sel.isHeld(A)).toBe(true);
    clock.advance(2);
    expect(sel.isHeld(A)).toBe(false);
    for (let i = 0; i < 30; i++) sel.failure(A);
    clock.advance(300_000);
    expect(sel.isHeld(A)).toBe(false);
    sel.failure(A);
    sel.success(A, 7);
    expect(sel.isHeld(A)).toBe(false);
    sel.failure(A);
    clock.advance(5_001);
    expect(sel.isHeld(A)).toBe(false); // the count restarted after the success
  });

  it('still offers every server when all are held back', () => {
    const sel = new ServerSelector(new ManualClock());
    sel.failure(A);
    sel.failure(B);
    sel.failure(C);
    expect([...sel.order([A, B, C])].sort()).toEqual([A, B, C]);
  });

  it('keeps a bounded table of servers: the oldest entries are forgotten', () => {
    const sel = new ServerSelector(new ManualClock(), 100);
    const many = Array.from({ length: 1000 }, (_, i) => `https://s${i}.example`);
    for (const s of many) sel.failure(s);
    expect(sel.isHeld(many[0]!)).toBe(false);
    expect(sel.isHeld(many[899]!)).toBe(false);
    expect(sel.isHeld(many[900]!)).toBe(true);
    expect(sel.isHeld(many[999]!)).toBe(true);
    expect(sel.order(many)).toHaveLength(1000);
  });
});

describe('isPrivateAddress', () => {
  it.each([
    ['0.0.0.0', true],
    ['10.0.0.1', true],
    ['10.255.255.255', true],
    ['100.64.0.1', true],
    ['127.0.0.1', true],
    ['127.255.255.254', true],
    ['169.254.169.254', true],
    ['172.16.0.1', true],
    ['172.31.255.255', true],
    ['192.168.1.1', true],
    ['192.0.2.1', true],
    ['198.18.0.1', true],
    ['224.0.0.1', true],
    ['255.255.255.255', true],
    ['::', true],
    ['::1', true],
    ['fc00::1', true],
    ['fd12:3456:789a::1', true],
    ['fe80::1', true],
    ['FE80::1', true],
    ['febf::1', true],
    ['ff02::1', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:7f00:1', true],
    ['::ffff:10.1.2.3', true],
    ['::ffff:192.168.0.1', true],
    ['2001:db8::1', true],
    ['not-an-ip', true],
    ['8.8.8.8', false],
    ['1.1.1.1', false],
    ['172.15.255.255', false],
    ['172.32.0.1', false],
    ['100.63.255.255', false],
    ['11.0.0.1', false],
    ['193.0.14.129', false],
    ['2606:4700:4700::1111', false],
    ['2001:4860:4860::8888', false],
    ['::ffff:8.8.8.8', false],
  ])('%s → private %s', (address, expected) => {
    expect(isPrivateAddress(address)).toBe(expected);
  });

  // Issue 14, item 5: the verdict is taken on the address's bytes, so every spelling of one address and
  // every IPv6 form carrying an IPv4 address get the verdict of what they point at.
  it.each([
    // IPv4-compatible ::/96 (deprecated), in each spelling.
    ['::127.0.0.1', true],
    ['::7f00:1', true],
    ['0:0:0:0:0:0:7f00:1', true],
    ['::8.8.8.8', true],
    ['::2', true],
    // IPv4-mapped, IPv4-translated.
    ['0:0:0:0:0:ffff:7f00:1', true],
    ['::ffff:a9fe:a9fe', true],
    ['::ffff:0:7f00:1', true],
    ['::ffff:0:808:808', false],
    // NAT64 well-known prefix: the embedded address decides; local-use 64:ff9b:1::/48 is never public.
    ['64:ff9b::127.0.0.1', true],
    ['64:ff9b::7f00:1', true],
    ['64:ff9b::a9fe:a9fe', true],
    ['64:ff9b:0:0:0:0:a00:1', true],
    ['64:ff9b::808:808', false],
    ['64:ff9b:1::808:808', true],
    // 6to4: the embedded IPv4 address decides.
    ['2002:7f00:1::', true],
    ['2002:a00:1::1', true],
    ['2002:c0a8:101::1', true],
    ['2002:808:808::1', false],
    // Teredo: server address in bits 32-63, client address inverted in the last 32 bits.
    ['2001:0:808:808::80ff:fffe', true], // client 127.0.0.1
    ['2001:0:a00:1::f7f7:f7f7', true], // server 10.0.0.1
    ['2001:0:808:808::f7f7:f7f7', false], // server 8.8.8.8, client 8.8.8.8
    // The rest of the IANA special-purpose registries.
    ['100::1', true],
    ['2001:2::1', true],
    ['2001:10::1', true],
    ['2001:1::1', true],
    ['2001:db8:1::1', true],
    ['3fff::1', true],
    ['5f00::1', true],
    ['fec0::1', true],
    ['feff::1', true],
    ['ff0e::1', true],
    ['4000::1', true],
    ['fe80::1%eth0', true],
    ['192.0.0.9', true],
    ['192.88.99.1', true],
    ['198.19.255.255', true],
    ['198.20.0.0', false],
    ['100.127.255.255', true],
    ['100.128.0.0', false],
    ['0.1.2.3', true],
    ['240.0.0.1', true],
    ['239.255.255.255', true],
    ['2a00:1450:4001::1', false],
  ])('%s → private %s (bytes, not text)', (address, expected) => {
    expect(isPrivateAddress(address)).toBe(expected);
  });
});

describe('assureAllowedUrl', () => {
  it.each([
    'http://127.0.0.1:8053',
    'https://127.0.0.1:8053',
    'https://10.0.0.5',
    'https://192.168.1.10',
    'https://172.20.0.1',
    'https://169.254.169.254',
    'https://[::1]:8053',
    'https://[fc00::1]',
    'https://[fe80::1]',
    'https://[::ffff:127.0.0.1]',
    'https://[::ffff:a00:1]',
    'https://localhost',
    'https://LocalHost:8443',
    'https://ns1.localhost',
    'https://2130706433',
    'https://0x7f000001',
    'https://127.1',
    'https://0',
    // Issue 14, item 5: each form the WHATWG URL parser turns into an address that is not public.
    'https://0x7f.1',
    'https://0177.0.0.1',
    'https://0x7f.0.0.1',
    'https://127.0.1',
    'https://127.0.0.1.',
    'https://017700000001',
    'https://169.254.43518',
    'https://[64:ff9b::127.0.0.1]',
    'https://[64:ff9b::7f00:1]',
    'https://[64:ff9b::169.254.169.254]',
    'https://[::127.0.0.1]',
    'https://[::7f00:1]',
    'https://[0:0:0:0:0:0:0:1]',
    'https://[0000::1]',
    'https://[::]',
    'https://[::ffff:0:127.0.0.1]',
    'https://[0:0:0:0:0:ffff:7f00:1]',
    'https://[2002:7f00:1::1]',
    'https://[2001:0:808:808::80ff:fffe]',
    'https://[fec0::1]',
    'https://[ff02::1]',
    'https://100.64.0.1',
    'https://198.18.0.1',
    'https://255.255.255.255',
    'https://localhost.',
    'http://ns.example.com',
    'ftp://ns.example.com',
    'not a url',
  ])('refuses %s without allowPrivate', (url) => {
    expect(errorCode(() => assureAllowedUrl(url, false))).toBe('address_refused');
  });

  it.each([
    'https://ns.example.com',
    'https://ns.example.com:8443/base',
    'https://8.8.8.8',
    'https://[2606:4700:4700::1111]',
    'https://[64:ff9b::8.8.8.8]',
    'https://0x8.8.8.8',
  ])('allows %s', (url) => {
    expect(assureAllowedUrl(url, false).toString()).toBe(new URL(url).toString());
  });

  it.each(['http://127.0.0.1:8053', 'http://localhost:8053', 'https://[::1]', 'http://10.0.0.1'])('allows %s with allowPrivate', (url) => {
    expect(() => assureAllowedUrl(url, true)).not.toThrow();
  });

  it('refuses other schemes even with allowPrivate', () => {
    expect(errorCode(() => assureAllowedUrl('ftp://127.0.0.1', true))).toBe('address_refused');
    expect(errorCode(() => assureAllowedUrl('file:///etc/passwd', true))).toBe('address_refused');
  });
});

describe('publicOnlyLookup', () => {
  it('refuses a host name that resolves to a loopback address', async () => {
    const err = await new Promise<unknown>((resolve) => {
      publicOnlyLookup('localhost', {}, (e) => resolve(e));
    });
    expect(err).toBeInstanceOf(IdnsError);
    expect((err as IdnsError).code).toBe('address_refused');
  });

  // The address connected to is judged by the same byte classifier as a URL's: the system resolver hands
  // an IP literal back as it is, in the spelling given, so each form reaches the classifier as text.
  it.each(['64:ff9b::127.0.0.1', '::127.0.0.1', '::ffff:0:7f00:1', '2002:a00:1::1', '0:0:0:0:0:0:0:1', '127.0.0.1'])(
    'refuses the connected address %s',
    async (address) => {
      const err = await new Promise<unknown>((resolve) => {
        publicOnlyLookup(address, {}, (e) => resolve(e));
      });
      expect(err).toBeInstanceOf(IdnsError);
      expect((err as IdnsError).code).toBe('address_refused');
    },
  );

  it('hands a public address on', async () => {
    const got = await new Promise<{ err: unknown; address: unknown }>((resolve) => {
      publicOnlyLookup('8.8.8.8', {}, (err, address) => resolve({ err, address }));
    });
    expect(got).toEqual({ err: null, address: '8.8.8.8' });
  });
});

describe('LruCache', () => {
  it('evicts as CLOCK does: the oldest entry not read since it was placed; a read entry gets a second chance', () => {
    const c = new LruCache<string>(2);
    c.set('a', 'A', 0, 10_000, 0, Infinity);
    c.set('b', 'B', 0, 10_000, 0, Infinity);
    expect(c.get('a', 1000)?.value).toBe('A');
    // 'a' was read: it moves behind 'b', unmarked, and 'b' goes.
    c.set('c', 'C', 1000, 10_000, 0, Infinity);
    expect(c.size).toBe(2);
    expect(c.get('b', 1000)).toBeUndefined();
    // Both read now: 'c' then 'a' get their second chance, and the oldest of the two, 'c', goes.
    expect(c.get('c', 1000)?.value).toBe('C');
    expect(c.get('a', 1000)?.value).toBe('A');
    c.set('d', 'D', 1500, 10_000, 0, Infinity);
    expect(c.peek('c', 1500)).toBeUndefined();
    expect(c.peek('a', 1500)?.value).toBe('A');
    // The entry being stored is never the one evicted, even when every other entry was read.
    expect(c.get('a', 1500)?.value).toBe('A');
    c.set('e', 'E', 2000, 10_000, 0, Infinity);
    expect(c.peek('e', 2000)?.value).toBe('E');
    expect(c.size).toBe(2);
  });

  it('moves at most a bounded number of read entries to the back for one eviction', () => {
    const c = new LruCache<string>(100);
    for (let i = 0; i < 100; i++) c.set(`k${i}`, 'v', 0, 10_000, 0, Infinity);
    for (let i = 0; i < 100; i++) c.get(`k${i}`, 1);
    // Every entry was read: the eviction gives 32 of them a second chance, then takes the oldest left.
    c.set('new', 'v', 2, 10_000, 0, Infinity);
    expect(c.size).toBe(100);
    expect(c.peek('k32', 2)).toBeUndefined();
    for (const k of ['k0', 'k31', 'k33', 'k99', 'new']) expect(c.peek(k, 2)).toBeDefined();
  });

  it('bounds freshness by the hard limit (signature expiry) and drops entries past their stale window', () => {
    const c = new LruCache<string>(10);
    c.set('a', 'A', 0, 10_000, 5_000, 4_000);
    const e = c.get('a', 1)!;
    expect(c.freshFor(e, 1)).toBe(3_999);
    expect(c.usableFor(e, 1)).toBe(3_999);
    expect(c.get('a', 4_000)).toBeUndefined();
    expect(c.size).toBe(0);
    c.set('b', 'B', 0, 1_000, 5_000, Infinity);
    expect(c.freshFor(c.get('b', 5_999)!, 5_999)).toBe(-4_999);
    expect(c.get('b', 6_000)).toBeUndefined();
  });

  it("keeps its entries' times as small integers after a base time, moving the base as weeks pass, freshness unchanged", () => {
    const c = new LruCache<string>(10);
    const t0 = Date.UTC(2026, 11, 7);
    const day = 86_400_000;
    c.set('a', 'A', t0, 10 * day, 10 * day, t0 + 18 * day);
    c.set('b', 'B', t0 + 1000, 60_000, day, t0 + 2 * day);
    const small = (n: number) => Number.isInteger(n) && Math.abs(n) < 2 ** 31;
    // Fresh for ten days, then stale until the hard limit: past 12.4 days the base moves.
    for (const at of [t0 + 5 * day, t0 + 9 * day, t0 + 13 * day, t0 + 17 * day]) {
      const a = c.get('a', at)!;
      expect(c.freshFor(a, at)).toBe(t0 + 10 * day - at);
      expect(c.usableFor(a, at)).toBe(t0 + 18 * day - at);
      expect([a.expires, a.staleEnd].every(small)).toBe(true);
    }
    expect(c.get('a', t0 + 18 * day)).toBeUndefined();
    // 'b' expired a minute after it was set, could be served stale for a day, and no longer.
    expect(c.get('b', t0 + 27 * day)).toBeUndefined();
    c.set('c', 'C', t0 + 40 * day, 1000, 0, Infinity);
    const e = c.get('c', t0 + 40 * day + 500)!;
    expect(c.freshFor(e, t0 + 40 * day + 500)).toBe(500);
    expect([e.expires, e.staleEnd].every(small)).toBe(true);
    expect(c.get('c', t0 + 40 * day + 1000)).toBeUndefined();
  });

  /** Values weighing their string length; `shared` arrays count their length once however many hold them. */
  type V = { own: string; shared: string[][] };
  const weigher = { own: (v: V) => v.own.length, shared: (v: V) => v.shared, sharedBytes: (p: object) => (p as string[]).join('').length };

  it('evicts the least recently used entries while over maxBytes, counting a shared part once', () => {
    const c = new LruCache<V>({ maxEntries: 100, maxBytes: 1000 }, weigher);
    const chain = ['x'.repeat(300)];
    c.set('a', { own: 'a'.repeat(100), shared: [chain] }, 0, 10_000, 0, Infinity);
    c.set('b', { own: 'b'.repeat(100), shared: [chain] }, 0, 10_000, 0, Infinity);
    expect(c.bytes).toBe(500);
    c.set('c', { own: 'c'.repeat(400), shared: [] }, 0, 10_000, 0, Infinity);
    expect(c.bytes).toBe(900);
    c.set('d', { own: 'd'.repeat(200), shared: [] }, 0, 10_000, 0, Infinity);
    // 1100 > 1000: 'a' goes; the chain stays, 'b' still holds it.
    expect(c.get('a', 1)).toBeUndefined();
    expect(c.bytes).toBe(1000);
    c.set('e', { own: 'e'.repeat(50), shared: [] }, 0, 10_000, 0, Infinity);
    // 'b' goes, and with it the chain: 200 + 400 + 50 ... 'c' and 'd' and 'e'.
    expect(c.get('b', 1)).toBeUndefined();
    expect(c.bytes).toBe(650);
    c.delete('c');
    expect(c.bytes).toBe(250);
    // Replacing an entry releases what the old value weighed.
    c.set('d', { own: 'd'.repeat(10), shared: [] }, 0, 10_000, 0, Infinity);
    expect(c.bytes).toBe(60);
    // Dropped past its stale window: released too.
    c.set('f', { own: 'f'.repeat(10), shared: [chain] }, 0, 1_000, 0, Infinity);
    expect(c.bytes).toBe(370);
    expect(c.get('f', 1_000)).toBeUndefined();
    expect(c.bytes).toBe(60);
    c.clear();
    expect(c.bytes).toBe(0);
  });

  it('does not store a value heavier than maxEntryBytes (shared parts included), and drops the entry it would replace', () => {
    const c = new LruCache<V>({ maxEntries: 100, maxBytes: 10_000, maxEntryBytes: 500 }, weigher);
    expect(c.set('a', { own: 'a'.repeat(100), shared: [] }, 0, 10_000, 0, Infinity)).toBe(true);
    expect(c.set('a', { own: 'a'.repeat(100), shared: [['x'.repeat(401)]] }, 0, 10_000, 0, Infinity)).toBe(false);
    expect(c.get('a', 1)).toBeUndefined();
    expect(c.size).toBe(0);
    expect(c.bytes).toBe(0);
  });

  it('weighs an entry again after its value grew in place', () => {
    const c = new LruCache<V>({ maxEntries: 100, maxBytes: 1000 }, weigher);
    const grows = { own: 'a'.repeat(100), shared: [] };
    c.set('a', grows, 0, 10_000, 0, Infinity);
    c.set('b', { own: 'b'.repeat(100), shared: [] }, 0, 10_000, 0, Infinity);
    grows.own = 'a'.repeat(950);
    c.reweigh('a');
    // 1050 > 1000: the least recently used ('a' itself) goes.
    expect(c.get('a', 1)).toBeUndefined();
    expect(c.bytes).toBe(100);
  });

  it('counts hits', () => {
    const c = new LruCache<string>(10);
    c.set('a', 'A', 0, 1000, 0, Infinity);
    c.get('a', 1);
    expect(c.get('a', 2)?.hits).toBe(2);
  });
});

describe('verifyProof', () => {
  const now = Math.floor(Date.now() / 1000);
  const at = () => now;
  const S = ['https://ns.example'];
  const root = new ZoneSigner('.', freshKey(), at);
  const ex = new ZoneSigner('example', freshKey(), at);
  const soc = new ZoneSigner('social.example', freshKey(), at);
  const other = new ZoneSigner('other', freshKey(), at);
  const user = newUserKey();
  const anchors = new Map([['.', [root.kid]]]);
  const HANDLE = 'alice@social.example';

  const steps = (): ProofStep[] => [
    { zone: '.', zoneRecord: root.zoneRecord(S), delegation: root.delegation('example', S, [ex.kid]) },
    { zone: 'example', zoneRecord: ex.zoneRecord(S), delegation: ex.delegation('social.example', S, [soc.kid]) },
    { zone: 'social.example', zoneRecord: soc.zoneRecord(S) },
  ];
  const handleRecord = soc.handle(HANDLE, 'https://home.example/alice', [user.public]);
  const denialRecord = soc.denial(null, null);

  it('accepts a valid chain to a handle record and to a denial', () => {
    const found = verifyProof({ steps: steps(), record: handleRecord, history: historyOf(handleRecord) }, HANDLE, anchors, now);
    expect(found).toMatchObject({ status: 'found', zone: 'social.example', endpoint: 'https://home.example/alice', keys: [user.public], ttl: 3600 });
    expect(found.exp).toBe(payloadOf(handleRecord).exp);
    const missing = verifyProof({ steps: steps(), record: denialRecord }, 'bob@social.example', anchors, now);
    expect(missing).toMatchObject({ status: 'not_found', zone: 'social.example', endpoint: null, keys: null, ttl: 300 });
    // Anchored directly at a zone (private deployment).
    const direct = verifyProof(
      { steps: steps().slice(2), record: handleRecord, history: historyOf(handleRecord) },
      HANDLE,
      new Map([['social.example', [soc.kid]]]),
      now,
    );
    expect(direct.status).toBe('found');
  });

  const cases: [string, () => { proof: unknown; handle?: string; expected?: 'answer' | 'denial'; anchors?: Map<string, string[]> }, string | string[]][] = [
    ['no proof', () => ({ proof: null }), 'verification_failed'],
    ['empty steps', () => ({ proof: { steps: [], record: handleRecord, history: historyOf(handleRecord) } }), 'verification_failed'],
    ['steps not an array', () => ({ proof: { steps: 'x', record: handleRecord, history: historyOf(handleRecord) } }), 'verification_failed'],
    ['no record', () => ({ proof: { steps: steps() } }), 'verification_failed'],
    [
      'more than 64 steps',
      () => ({ proof: { steps: Array.from({ length: 65 }, () => steps()[0]), record: handleRecord, history: historyOf(handleRecord) } }),
      'verification_failed',
    ],
    [
      'a first zone without a trust anchor',
      () => ({ proof: { steps: steps().slice(1), record: handleRecord, history: historyOf(handleRecord) } }),
      'no_trust_anchor',
    ],
    [
      'a first step that is not an object',
      () => ({ proof: { steps: [null], record: handleRecord, history: historyOf(handleRecord) } }),
      ['no_trust_anchor', 'verification_failed'],
    ],
    [
      'a root zone record signed by a key that is not the anchor',
      () => ({ proof: { steps: steps(), record: handleRecord, history: historyOf(handleRecord) }, anchors: new Map([['.', [ex.kid]]]) }),
      'verification_failed',
    ],
    [
      'a handle outside the anchored zone',
      () => ({
        proof: { steps: steps().slice(1), record: handleRecord, history: historyOf(handleRecord) },
        anchors: new Map([['example', [ex.kid]]]),
        handle: 'x@org',
      }),
      'verification_failed',
    ],
    [
      'a missing delegation',
      () => {
        const s = steps();
        delete s[0]!.delegation;
        return { proof: { steps: s, record: handleRecord, history: historyOf(handleRecord) } };
      },
      'verification_failed',
    ],
    [
      'a delegation to a different zone than the next step',
      () => {
        const s = steps();
        s[0]!.delegation = root.delegation('other', S, [ex.kid]);
        return { proof: { steps: s, record: handleRecord, history: historyOf(handleRecord) } };
      },
      'verification_failed',
    ],
    [
      'a delegation skipping to a deeper zone than the next step',
      () => {
        const s = steps();
        s[0]!.delegation = root.delegation('social.example', S, [ex.kid]);
        return { proof: { steps: s, record: handleRecord, history: historyOf(handleRecord) } };
      },
      'verification_failed',
    ],
    [
      'a delegation not on the way to the handle (next step matches it)',
      () => ({
        proof: {
          steps: [
            { zone: '.', zoneRecord: root.zoneRecord(S), delegation: root.delegation('other', S, [other.kid]) },
            { zone: 'other', zoneRecord: other.zoneRecord(S) },
          ],
          record: other.handle(HANDLE, 'https://x', [user.public]),
        },
      }),
      'verification_failed',
    ],
    [
      'a delegation whose ds does not name the next zone key',
      () => {
        const s = steps();
        s[0]!.delegation = root.delegation('example', S, [other.kid]);
        return { proof: { steps: s, record: handleRecord, history: historyOf(handleRecord) } };
      },
      'verification_failed',
    ],
    [
      'a delegation signed by a key not in the zone',
      () => {
        const s = steps();
        s[0]!.delegation = new ZoneSigner('.', freshKey(), at).delegation('example', S, [ex.kid]);
        return { proof: { steps: s, record: handleRecord, history: historyOf(handleRecord) } };
      },
      'verification_failed',
    ],
    [
      "a step whose zone record is another zone's",
      () => {
        const s = steps();
        s[1]!.zoneRecord = soc.zoneRecord(S);
        return { proof: { steps: s, record: handleRecord, history: historyOf(handleRecord) } };
      },
      'verification_failed',
    ],
    [
      'an extra delegation on the last step',
      () => {
        const s = steps();
        s[2]!.delegation = soc.delegation('x.social.example', S, [other.kid]);
        return { proof: { steps: s, record: handleRecord, history: historyOf(handleRecord) } };
      },
      'verification_failed',
    ],
    [
      'a denial where an answer is expected',
      () => ({ proof: { steps: steps(), record: denialRecord }, handle: 'bob@social.example', expected: 'answer' }),
      'verification_failed',
    ],
    ['a handle record without its history', () => ({ proof: { steps: steps(), record: handleRecord } }), 'verification_failed'],
    [
      'a handle record with a history that is not a list of entries',
      () => ({ proof: { steps: steps(), record: handleRecord, history: [42] } }),
      'verification_failed',
    ],
    [
      "a handle record with another handle's history",
      () => ({
        proof: { steps: steps(), record: handleRecord, history: historyOf(soc.handle('bob@social.example', 'https://home.example/alice', [user.public])) },
      }),
      'verification_failed',
    ],
    [
      'a handle record where a denial is expected',
      () => ({ proof: { steps: steps(), record: handleRecord, history: historyOf(handleRecord) }, expected: 'denial' }),
      'verification_failed',
    ],
    [
      'a delegation record as the final record',
      () => ({ proof: { steps: steps(), record: soc.delegation('x.social.example', S, [other.kid]) } }),
      'verification_failed',
    ],
    ['a zone record as the final record', () => ({ proof: { steps: steps(), record: soc.zoneRecord(S) } }), 'verification_failed'],
    [
      'a handle record for another handle',
      () => ({ proof: { steps: steps(), record: handleRecord, history: historyOf(handleRecord) }, handle: 'bob@social.example' }),
      'verification_failed',
    ],
    [
      "a record signed by the parent zone's key",
      () => ({ proof: { steps: steps(), record: ex.handle(HANDLE, 'https://x', [user.public]) } }),
      'verification_failed',
    ],
    [
      'an expired handle record',
      () => ({ proof: { steps: steps(), record: soc.handle(HANDLE, 'https://x', [user.public], { iat: now - 7200, exp: now - 1 }) } }),
      'verification_failed',
    ],
    [
      'a handle record signed in the future',
      () => ({ proof: { steps: steps(), record: soc.handle(HANDLE, 'https://x', [user.public], { iat: now + 3600 }) } }),
      'verification_failed',
    ],
    [
      'an expired zone record in the middle',
      () => {
        const s = steps();
        s[1]!.zoneRecord = ex.zoneRecord(S, { iat: now - 7200, exp: now - 1 });
        return { proof: { steps: s, record: handleRecord, history: historyOf(handleRecord) } };
      },
      'verification_failed',
    ],
    [
      "a denial listing the name among the zone's hashes",
      () => ({
        proof: { steps: steps(), record: soc.denial(null, null, { hashes: [nameHash(FAKE_SALT, 'bob@social.example')] }) },
        handle: 'bob@social.example',
      }),
      'verification_failed',
    ],
    [
      'a denial whose hashes are not ascending',
      () => ({ proof: { steps: steps(), record: soc.denial(null, null, { hashes: ['f'.repeat(64), '0'.repeat(64)] }) }, handle: 'bob@social.example' }),
      'verification_failed',
    ],
    [
      'a denial listing a hash outside its range',
      () => ({ proof: { steps: steps(), record: soc.denial(null, 'f'.repeat(64), { hashes: ['f'.repeat(64)] }) }, handle: 'bob@social.example' }),
      'verification_failed',
    ],
    [
      'a denial listing more hashes than allowed',
      () => ({
        proof: {
          steps: steps(),
          record: soc.denial(null, null, { hashes: Array.from({ length: DENIAL_MAX_HASHES + 1 }, (_, i) => i.toString(16).padStart(64, '0')) }),
        },
        handle: 'bob@social.example',
      }),
      'verification_failed',
    ],
    [
      'a denial whose gap does not cover the name',
      () => ({ proof: { steps: steps(), record: soc.denial('0'.repeat(64), '0'.repeat(63) + '1') }, handle: 'bob@social.example' }),
      'verification_failed',
    ],
    [
      'a denial with another salt than its zone',
      () => ({ proof: { steps: steps(), record: soc.denial(null, null, { salt: 'other' }) }, handle: 'bob@social.example' }),
      'verification_failed',
    ],
    ['a record that is not a JWS', () => ({ proof: { steps: steps(), record: 'garbage' } }), 'verification_failed'],
    ['a record with a payload that is not JSON', () => ({ proof: { steps: steps(), record: 'eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.AAAA' } }), 'verification_failed'],
    [
      'a zone record that is not a string',
      () => ({ proof: { steps: [{ zone: '.', zoneRecord: 42 }], record: handleRecord, history: historyOf(handleRecord) } }),
      'verification_failed',
    ],
    // Hostile input must give a typed error, not a TypeError.
    [
      'a null step after the first',
      () => ({ proof: { steps: [steps()[0], null], record: handleRecord, history: historyOf(handleRecord) } }),
      'verification_failed',
    ],
  ];
  it.each(cases)('refuses %s', (_what, make, code) => {
    const c = make();
    const got = errorCode(() => verifyProof(c.proof, c.handle ?? HANDLE, c.anchors ?? anchors, now, c.expected));
    expect(Array.isArray(code) ? code : [code]).toContain(got);
  });
});

describe('noCut gaps: only what the proof needs (issue 14, item 2)', () => {
  const now = Math.floor(Date.now() / 1000);
  const at = () => now;
  const S = ['https://ns.example'];
  const soc = new ZoneSigner('social.example', freshKey(), at);
  const anchors = new Map([['social.example', [soc.kid]]]);
  const steps = (): ProofStep[] => [{ zone: 'social.example', zoneRecord: soc.zoneRecord(S) }];
  const DEEP = 'bob@a.b.social.example';
  const hex = (n: bigint) => n.toString(16).padStart(64, '0');
  /** A gap covering exactly the hash of `name` (a range of three values around it). */
  const narrow = (name: string) => {
    const h = BigInt(`0x${nameHash(FAKE_SALT, name)}`);
    return soc.denial(hex(h - 1n), hex(h + 1n));
  };
  const record = narrow(DEEP);
  const A = narrow('a.b.social.example');
  const B = narrow('b.social.example');
  /** A gap covering both names between (and nothing asked otherwise, unless they are neighbours of the handle's hash). */
  const [lo, hi] = [nameHash(FAKE_SALT, 'a.b.social.example'), nameHash(FAKE_SALT, 'b.social.example')].sort();
  const wide = soc.denial(hex(BigInt(`0x${lo}`) - 1n), hex(BigInt(`0x${hi}`) + 1n));
  const elsewhere = soc.denial('0'.repeat(64), '0'.repeat(63) + '2');
  const check = (noCut: unknown, handle = DEEP, rec = record) => verifyProof({ steps: steps(), record: rec, noCut }, handle, anchors, now);
  const refusal = (noCut: unknown, handle = DEEP, rec = record): string => {
    try {
      check(noCut, handle, rec);
    } catch (err) {
      expect((err as IdnsError).code).toBe('verification_failed');
      return (err as IdnsError).message;
    }
    throw new Error('expected verification_failed');
  };

  it('accepts the gap of each name between, in any order, and keeps exactly those', () => {
    expect(check([A, B]).proof.noCut).toEqual([A, B]);
    expect(check([B, A]).proof.noCut).toEqual([B, A]);
    // Two gaps covering one name, each needed for some name (an honest server read during a split).
    expect(check([wide, A]).status).toBe('not_found');
  });

  it.each([
    ['a missing gap', () => [A], /does not prove that b\.social\.example/],
    ['a gap covering no name between', () => [A, B, elsewhere], /noCut/],
    ['a gap twice', () => [A, A], /twice/],
    ['the record itself', () => [A, B, record], /noCut/],
    ['more gaps than names between, before checking any', () => ['x', 'y', 'z'], /3 noCut gaps for 2 names/],
    ['junk', () => [A, 'x'.repeat(1000)], /./],
  ])('refuses %s', (_what, noCut, message) => {
    expect(refusal(noCut())).toMatch(message);
  });

  it('refuses any gap beside a denial that covers every name itself, or for a handle at the zone', () => {
    const everything = soc.denial(null, null);
    expect(check([], DEEP, everything).status).toBe('not_found');
    expect(refusal([A], DEEP, everything)).toMatch(/noCut/);
    expect(check([], 'bob@social.example', everything).status).toBe('not_found');
    expect(refusal([everything], 'bob@social.example', everything)).toMatch(/0 names/);
    expect(refusal([A], 'bob@social.example', everything)).toMatch(/0 names/);
  });

  it('refuses noCut gaps beside a handle record', () => {
    const handleRecord = soc.handle(DEEP, 'https://home.example/bob', [newUserKey().public]);
    expect(verifyProof({ steps: steps(), record: handleRecord, history: historyOf(handleRecord), noCut: [] }, DEEP, anchors, now).status).toBe('found');
    expect(errorCode(() => verifyProof({ steps: steps(), record: handleRecord, history: historyOf(handleRecord), noCut: [A] }, DEEP, anchors, now))).toBe(
      'verification_failed',
    );
  });

  it('keeps only the members it verified: padding on the proof or its steps is dropped', () => {
    const pad = 'p'.repeat(10_000);
    const r = verifyProof({ steps: steps().map((s) => ({ ...s, pad })), record, noCut: [A, B], pad }, DEEP, anchors, now);
    expect(JSON.stringify(r.proof)).not.toContain(pad);
    expect(Object.keys(r.proof).sort()).toEqual(['noCut', 'record', 'steps']);
    expect(Object.keys(r.proof.steps[0]!).sort()).toEqual(['zone', 'zoneRecord']);
  });
});

describe('ZoneVersions (no rollback of zone serials, RFC 1982)', () => {
  const record = (serial: number, digest = `d${serial}`) => ({ serial, digest });

  it('takes newer serials across the wrap, refuses older ones, and keeps a same-serial record with another digest as a fork', () => {
    const v = new ZoneVersions(10);
    v.check('z', record(2 ** 32 - 2), 'a');
    v.check('z', record(3), 'b'); // 5 serials later, across 2^32
    expect(v.serial('z')).toBe(3);
    expect(() => v.check('z', record(2 ** 32 - 1), 'c')).toThrow(/older than serial 3 seen before/);
    v.check('z', record(3), 'b again'); // the same version again
    expect(() => v.check('z', record(3, 'other'), 'd')).toThrow(/evidence of a fork/);
    expect(v.forks()).toEqual([{ zone: 'z', serial: 3, seen: 'b', offered: 'd' }]);
    // Other zones are their own.
    v.check('y', record(1), 'e');
    expect(v.serial('y')).toBe(1);
  });

  it('forgets the least recently advanced zones past its bound', () => {
    const v = new ZoneVersions(2);
    v.check('a', record(5), 'a5');
    v.check('b', record(5), 'b5');
    v.check('a', record(6), 'a6');
    v.check('c', record(1), 'c1');
    expect([v.serial('a'), v.serial('b'), v.serial('c')]).toEqual([6, undefined, 1]);
  });
});
