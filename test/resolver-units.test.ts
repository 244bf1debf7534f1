import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { DENIAL_MAX_HASHES, nameHash } from '../src/records/denial.js';
import { IdnsError } from '../src/errors.js';
import { assureAllowedUrl, isPrivateAddress, publicOnlyLookup } from '../src/resolver/address-policy.js';
import { LruCache } from '../src/resolver/cache.js';
import { verifyProof, type ProofStep } from '../src/resolver/proof.js';
import { ServerSelector } from '../src/resolver/servers.js';
import { FAKE_SALT, freshKey, payloadOf, ZoneSigner } from './support/fake-server.js';
import { newUserKey } from './support/keys.js';

/** The typed error code `fn` throws (fails the test when it returns or throws something untyped). */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof IdnsError) return err.code;
    throw new Error(`expected an IdnsError, got ${String(err)}`);
  }
  throw new Error('expected an error, got a result');
}

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
    'http://ns.example.com',
    'ftp://ns.example.com',
    'not a url',
  ])('refuses %s without allowPrivate', (url) => {
    expect(codeOf(() => assureAllowedUrl(url, false))).toBe('address_refused');
  });

  it.each(['https://ns.example.com', 'https://ns.example.com:8443/base', 'https://8.8.8.8', 'https://[2606:4700:4700::1111]'])('allows %s', (url) => {
    expect(assureAllowedUrl(url, false).toString()).toBe(new URL(url).toString());
  });

  it.each(['http://127.0.0.1:8053', 'http://localhost:8053', 'https://[::1]', 'http://10.0.0.1'])('allows %s with allowPrivate', (url) => {
    expect(() => assureAllowedUrl(url, true)).not.toThrow();
  });

  it('refuses other schemes even with allowPrivate', () => {
    expect(codeOf(() => assureAllowedUrl('ftp://127.0.0.1', true))).toBe('address_refused');
    expect(codeOf(() => assureAllowedUrl('file:///etc/passwd', true))).toBe('address_refused');
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
});

describe('LruCache', () => {
  it('evicts the least recently used entry, a hit making an entry recent (to the second)', () => {
    const c = new LruCache<string>(2);
    c.set('a', 'A', 0, 10_000, 0, Infinity);
    c.set('b', 'B', 0, 10_000, 0, Infinity);
    expect(c.get('a', 1000)?.value).toBe('A');
    c.set('c', 'C', 1000, 10_000, 0, Infinity);
    expect(c.size).toBe(2);
    expect(c.get('b', 1000)).toBeUndefined();
    expect(c.get('a', 1000)?.value).toBe('A');
    expect(c.get('c', 1000)?.value).toBe('C');
    // An entry's place is refreshed at most once a second: 'a', last moved at 1000, stays the older of
    // the two despite a hit at 1500, so it goes first; a hit a second later moves 'c' again.
    expect(c.get('a', 1500)?.value).toBe('A');
    c.set('d', 'D', 1500, 10_000, 0, Infinity);
    expect(c.get('a', 1500)).toBeUndefined();
    expect(c.get('c', 2000)?.value).toBe('C');
    c.set('e', 'E', 2000, 10_000, 0, Infinity);
    expect(c.get('d', 2000)).toBeUndefined();
    expect(c.get('c', 2000)?.value).toBe('C');
  });

  it('bounds freshness by the hard limit (signature expiry) and drops entries past their stale window', () => {
    const c = new LruCache<string>(10);
    c.set('a', 'A', 0, 10_000, 5_000, 4_000);
    const e = c.get('a', 1)!;
    expect(e.expiresAt).toBe(4_000);
    expect(e.staleUntil).toBe(4_000);
    expect(c.get('a', 4_000)).toBeUndefined();
    expect(c.size).toBe(0);
    c.set('b', 'B', 0, 1_000, 5_000, Infinity);
    expect(c.get('b', 5_999)?.expiresAt).toBe(1_000);
    expect(c.get('b', 6_000)).toBeUndefined();
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
    const found = verifyProof({ steps: steps(), record: handleRecord }, HANDLE, anchors, now);
    expect(found).toMatchObject({ status: 'found', zone: 'social.example', endpoint: 'https://home.example/alice', keys: [user.public], ttl: 3600 });
    expect(found.exp).toBe(payloadOf(handleRecord).exp);
    const missing = verifyProof({ steps: steps(), record: denialRecord }, 'bob@social.example', anchors, now);
    expect(missing).toMatchObject({ status: 'not_found', zone: 'social.example', endpoint: null, keys: null, ttl: 300 });
    // Anchored directly at a zone (private deployment).
    const direct = verifyProof({ steps: steps().slice(2), record: handleRecord }, HANDLE, new Map([['social.example', [soc.kid]]]), now);
    expect(direct.status).toBe('found');
  });

  const cases: [string, () => { proof: unknown; handle?: string; expected?: 'answer' | 'denial'; anchors?: Map<string, string[]> }, string | string[]][] = [
    ['no proof', () => ({ proof: null }), 'verification_failed'],
    ['empty steps', () => ({ proof: { steps: [], record: handleRecord } }), 'verification_failed'],
    ['steps not an array', () => ({ proof: { steps: 'x', record: handleRecord } }), 'verification_failed'],
    ['no record', () => ({ proof: { steps: steps() } }), 'verification_failed'],
    ['more than 64 steps', () => ({ proof: { steps: Array.from({ length: 65 }, () => steps()[0]), record: handleRecord } }), 'verification_failed'],
    ['a first zone without a trust anchor', () => ({ proof: { steps: steps().slice(1), record: handleRecord } }), 'no_trust_anchor'],
    ['a first step that is not an object', () => ({ proof: { steps: [null], record: handleRecord } }), ['no_trust_anchor', 'verification_failed']],
    ['a root zone record signed by a key that is not the anchor', () => ({ proof: { steps: steps(), record: handleRecord }, anchors: new Map([['.', [ex.kid]]]) }), 'verification_failed'],
    ['a handle outside the anchored zone', () => ({ proof: { steps: steps().slice(1), record: handleRecord }, anchors: new Map([['example', [ex.kid]]]), handle: 'x@org' }), 'verification_failed'],
    [
      'a missing delegation',
      () => {
        const s = steps();
        delete s[0]!.delegation;
        return { proof: { steps: s, record: handleRecord } };
      },
      'verification_failed',
    ],
    [
      'a delegation to a different zone than the next step',
      () => {
        const s = steps();
        s[0]!.delegation = root.delegation('other', S, [ex.kid]);
        return { proof: { steps: s, record: handleRecord } };
      },
      'verification_failed',
    ],
    [
      'a delegation skipping to a deeper zone than the next step',
      () => {
        const s = steps();
        s[0]!.delegation = root.delegation('social.example', S, [ex.kid]);
        return { proof: { steps: s, record: handleRecord } };
      },
      'verification_failed',
    ],
    [
      'a delegation not on the way to the handle (next step matches it)',
      () => ({
        proof: { steps: [{ zone: '.', zoneRecord: root.zoneRecord(S), delegation: root.delegation('other', S, [other.kid]) }, { zone: 'other', zoneRecord: other.zoneRecord(S) }], record: other.handle(HANDLE, 'https://x', [user.public]) },
      }),
      'verification_failed',
    ],
    [
      'a delegation whose ds does not name the next zone key',
      () => {
        const s = steps();
        s[0]!.delegation = root.delegation('example', S, [other.kid]);
        return { proof: { steps: s, record: handleRecord } };
      },
      'verification_failed',
    ],
    [
      'a delegation signed by a key not in the zone',
      () => {
        const s = steps();
        s[0]!.delegation = new ZoneSigner('.', freshKey(), at).delegation('example', S, [ex.kid]);
        return { proof: { steps: s, record: handleRecord } };
      },
      'verification_failed',
    ],
    [
      "a step whose zone record is another zone's",
      () => {
        const s = steps();
        s[1]!.zoneRecord = soc.zoneRecord(S);
        return { proof: { steps: s, record: handleRecord } };
      },
      'verification_failed',
    ],
    [
      'an extra delegation on the last step',
      () => {
        const s = steps();
        s[2]!.delegation = soc.delegation('x.social.example', S, [other.kid]);
        return { proof: { steps: s, record: handleRecord } };
      },
      'verification_failed',
    ],
    ['a denial where an answer is expected', () => ({ proof: { steps: steps(), record: denialRecord }, handle: 'bob@social.example', expected: 'answer' }), 'verification_failed'],
    ['a handle record where a denial is expected', () => ({ proof: { steps: steps(), record: handleRecord }, expected: 'denial' }), 'verification_failed'],
    ['a delegation record as the final record', () => ({ proof: { steps: steps(), record: soc.delegation('x.social.example', S, [other.kid]) } }), 'verification_failed'],
    ['a zone record as the final record', () => ({ proof: { steps: steps(), record: soc.zoneRecord(S) } }), 'verification_failed'],
    ['a handle record for another handle', () => ({ proof: { steps: steps(), record: handleRecord }, handle: 'bob@social.example' }), 'verification_failed'],
    ["a record signed by the parent zone's key", () => ({ proof: { steps: steps(), record: ex.handle(HANDLE, 'https://x', [user.public]) } }), 'verification_failed'],
    ['an expired handle record', () => ({ proof: { steps: steps(), record: soc.handle(HANDLE, 'https://x', [user.public], { iat: now - 7200, exp: now - 1 }) } }), 'verification_failed'],
    ['a handle record signed in the future', () => ({ proof: { steps: steps(), record: soc.handle(HANDLE, 'https://x', [user.public], { iat: now + 3600 }) } }), 'verification_failed'],
    [
      'an expired zone record in the middle',
      () => {
        const s = steps();
        s[1]!.zoneRecord = ex.zoneRecord(S, { iat: now - 7200, exp: now - 1 });
        return { proof: { steps: s, record: handleRecord } };
      },
      'verification_failed',
    ],
    ['a denial listing the name among the zone\'s hashes', () => ({ proof: { steps: steps(), record: soc.denial(null, null, { hashes: [nameHash(FAKE_SALT, 'bob@social.example')] }) }, handle: 'bob@social.example' }), 'verification_failed'],
    ['a denial whose hashes are not ascending', () => ({ proof: { steps: steps(), record: soc.denial(null, null, { hashes: ['f'.repeat(64), '0'.repeat(64)] }) }, handle: 'bob@social.example' }), 'verification_failed'],
    ['a denial listing a hash outside its range', () => ({ proof: { steps: steps(), record: soc.denial(null, 'f'.repeat(64), { hashes: ['f'.repeat(64)] }) }, handle: 'bob@social.example' }), 'verification_failed'],
    ['a denial listing more hashes than allowed', () => ({ proof: { steps: steps(), record: soc.denial(null, null, { hashes: Array.from({ length: DENIAL_MAX_HASHES + 1 }, (_, i) => i.toString(16).padStart(64, '0')) }) }, handle: 'bob@social.example' }), 'verification_failed'],
    ['a denial whose gap does not cover the name', () => ({ proof: { steps: steps(), record: soc.denial('0'.repeat(64), '0'.repeat(63) + '1') }, handle: 'bob@social.example' }), 'verification_failed'],
    ['a denial with another salt than its zone', () => ({ proof: { steps: steps(), record: soc.denial(null, null, { salt: 'other' }) }, handle: 'bob@social.example' }), 'verification_failed'],
    ['a record that is not a JWS', () => ({ proof: { steps: steps(), record: 'garbage' } }), 'verification_failed'],
    ['a record with a payload that is not JSON', () => ({ proof: { steps: steps(), record: 'eyJhbGciOiJFZERTQSJ9.bm90IGpzb24.AAAA' } }), 'verification_failed'],
    ['a zone record that is not a string', () => ({ proof: { steps: [{ zone: '.', zoneRecord: 42 }], record: handleRecord } }), 'verification_failed'],
    // Hostile input must give a typed error, not a TypeError.
    ['a null step after the first', () => ({ proof: { steps: [steps()[0], null], record: handleRecord } }), 'verification_failed'],
  ];
  it.each(cases)('refuses %s', (_what, make, code) => {
    const c = make();
    const got = codeOf(() => verifyProof(c.proof, c.handle ?? HANDLE, c.anchors ?? anchors, now, c.expected));
    expect(Array.isArray(code) ? code : [code]).toContain(got);
  });
});
