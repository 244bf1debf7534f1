import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseChangeRequest } from '../src/records/change-request.js';
import { parseEndpoint } from '../src/records/urls.js';
import { assureValidChange } from '../src/authority/rules.js';
import { parseServerUrls } from '../src/authority/settings.js';
import { checkAnswer } from '../src/client/answers.js';
import { signChangeRequest } from '../src/client/requests.js';
import { IdnsError } from '../src/errors.js';
import { isNormalHandle, parseHandle } from '../src/names/handle.js';
import { isNormalZoneName, parseZoneName } from '../src/names/zone.js';
import { developmentRecordSchemas, recordSchemas } from '../src/records/schemas.js';
import { verifyProof } from '../src/resolver/proof.js';
import { createResolver, type Resolver } from '../src/resolver/resolver.js';
import { cleanupEachTest } from './support/cleanup.js';
import { FAKE_DIGEST, FAKE_OP, FAKE_SALT, freshKey, zoneReply, ZoneSigner } from './support/fake-server.js';
import { verified, type Hierarchy, hierarchyResolver } from './support/hierarchy.js';
import { startHostileZone, type HostileZone } from './support/hostile-zone.js';
import { runIdns } from './support/process.js';
import { startTestServer } from './support/server.js';
import { newUserKey } from './support/keys.js';

/** A zone record payload the schema accepts, with `changes` applied. */
function zonePayload(changes: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    type: 'zone',
    zone: 'example',
    serial: 1,
    iat: 1_800_000_000,
    exp: 1_800_086_400,
    primary: 'https://ns.example/',
    servers: ['https://ns.example/'],
    keys: [freshKey().publicJwk],
    refresh: 3600,
    retry: 300,
    expire: 604_800,
    minimum: 300,
    ttl: 3600,
    digest: FAKE_DIGEST,
    denial: { alg: 'sha256', salt: FAKE_SALT },
    ...changes,
  };
}

/**
 * Issue 14, item 3: a verifier enforces the record schema exactly as the authority does. A hostile zone
 * (the real key of a real, properly delegated zone) signs handle records with endpoints the protocol
 * forbids; the resolver, the library's verifiers and `idns resolve` refuse every one with
 * verification_failed, and the authority refuses the same endpoints in requests (one shared validator).
 */

/** Endpoints no zone may sign, in any mode (the development mode included). */
const FORBIDDEN_ALWAYS: [string, string][] = [
  ['cloud metadata over http', 'http://169.254.169.254/latest/meta-data/'],
  ['cloud metadata over https', 'https://169.254.169.254/latest/meta-data/'],
  ['a private IPv4 literal', 'https://10.0.0.1/inbox'],
  ['a public IPv4 literal', 'https://93.184.216.34/'],
  ['an IPv4 literal in hex', 'https://0xa9.0xfe.0xa9.0xfe/'],
  ['an IPv4 literal as one number', 'https://2852039166/'],
  ['an IPv4-mapped IPv6 literal', 'https://[::ffff:169.254.169.254]/'],
  ['a NAT64 IPv6 literal', 'https://[64:ff9b::a9fe:a9fe]/'],
  ['an IPv6 literal', 'https://[2001:db8::1]/'],
  ['a file URL', 'file:///etc/passwd'],
  ['a javascript URL', 'javascript:alert(1)'],
  ['a gopher URL', 'gopher://home.example:70/_x'],
  ['a data URL', 'data:text/html,<script>1</script>'],
  ['an ftp URL', 'ftp://home.example/'],
  ['credentials', 'https://user:pass@home.example/alice'],
  ['a user name', 'https://user@home.example/alice'],
  ['a fragment', 'https://home.example/alice#x'],
  ['not a URL at all', 'not a url'],
  ['an empty string', ''],
  ['a relative URL', '/users/alice'],
  ['a scheme without slashes', 'https:home.example/alice'],
  ['a backslash (other parsers read another host)', 'https://evil.example\\@home.example/'],
  ['a leading space', ' https://home.example/'],
  ['a tab inside', 'https://home.exa\tmple/'],
  ['a newline inside', 'https://home.example/\nx'],
  ['non-ASCII', 'https://hоme.example/'],
  ['a public host over http', 'http://home.example/alice'],
  ['a private address over http', 'http://10.1.2.3/'],
  ['too long', `https://home.example/${'a'.repeat(2048)}`],
];
/** Loopback endpoints: only development zones sign them, only verifiers in development mode accept them. */
const LOOPBACK: [string, string][] = [
  ['loopback http', 'http://127.0.0.1:3000/users/dev'],
  ['localhost http', 'http://localhost:3000/users/dev'],
  ['IPv6 loopback http', 'http://[::1]:3000/'],
  ['loopback https', 'https://127.0.0.1/'],
  ['localhost https', 'https://localhost/'],
];
const GOOD = ['https://home.example/alice', 'https://home.example:8443/users/alice?x=1', 'https://xn--bcher-kva.example/'];

function schemaAccepts(endpoint: string, development: boolean): boolean {
  const record = {
    v: 1,
    type: 'handle',
    zone: 'example',
    serial: 1,
    iat: 1_800_000_000,
    exp: 1_800_086_400,
    handle: 'alice@example',
    endpoint,
    keys: [newUserKey().public],
    ttl: 3600,
    op: FAKE_OP,
    genesis: FAKE_OP,
    seq: 1,
  };
  return (development ? developmentRecordSchemas : recordSchemas).handle.safeParse(record).success;
}

function authorityAccepts(endpoint: string, development: boolean): boolean {
  try {
    parseEndpoint(endpoint, development);
    return true;
  } catch (err) {
    expect(err).toBeInstanceOf(IdnsError);
    expect((err as IdnsError).code).toBe('invalid_endpoint');
    return false;
  }
}

describe('one endpoint rule for the authority and the verifier', () => {
  it.each([...FORBIDDEN_ALWAYS, ...LOOPBACK, ...GOOD.map((g) => ['allowed', g] as [string, string])])(
    '%s (%j): both sides agree in both modes',
    (_name, endpoint) => {
      for (const development of [false, true]) expect(schemaAccepts(endpoint, development)).toBe(authorityAccepts(endpoint, development));
    },
  );

  it('refuses every forbidden endpoint, loopback outside development, and accepts public https URLs', () => {
    for (const [, e] of FORBIDDEN_ALWAYS) expect([e, authorityAccepts(e, false), authorityAccepts(e, true)]).toEqual([e, false, false]);
    for (const [, e] of LOOPBACK) expect([e, authorityAccepts(e, false), authorityAccepts(e, true)]).toEqual([e, false, true]);
    for (const e of GOOD) expect([e, authorityAccepts(e, false)]).toEqual([e, true]);
  });

  it('the authority refuses a signed change request with a forbidden endpoint (invalid_endpoint)', () => {
    const user = newUserKey();
    for (const [, endpoint] of FORBIDDEN_ALWAYS.filter(([, e]) => e.length <= 2048)) {
      const jws = signChangeRequest({ action: 'register', handle: 'alice@example', endpoint, keys: [user.public] }, user.private);
      let code: string | undefined;
      try {
        assureValidChange(parseChangeRequest(jws), null, Math.floor(Date.now() / 1000), { allowLoopbackEndpoints: true, hostScripts: 'strict' });
      } catch (err) {
        code = (err as IdnsError).code;
      }
      expect([endpoint, code]).toEqual([endpoint, 'invalid_endpoint']);
    }
  });

  it('server URLs: the zone settings and the zone/delegation schemas apply the same rule', () => {
    const zone = (servers: string[]) => zonePayload({ primary: servers[0], servers });
    for (const url of [
      'https://ns1.example/',
      'http://127.0.0.1:8053',
      'javascript:alert(1)',
      'https://u:p@ns1.example/',
      'https://ns1.example/?q',
      'https://ns1.example/#f',
      'file:///x',
      ' https://ns1.example',
      'nope',
    ]) {
      let authority = true;
      try {
        parseServerUrls([url], 'servers');
      } catch {
        authority = false;
      }
      expect([url, recordSchemas.zone.safeParse(zone([url])).success]).toEqual([url, authority]);
    }
  });
});

describe('record fields held to what the authority signs', () => {
  const signer = new ZoneSigner('example', freshKey());
  const user = newUserKey();
  const valid = {
    v: 1,
    type: 'handle',
    zone: 'example',
    serial: 1,
    iat: 1_800_000_000,
    exp: 1_800_086_400,
    handle: 'alice@example',
    endpoint: 'https://home.example/alice',
    keys: [user.public],
    ttl: 3600,
    op: FAKE_OP,
    genesis: FAKE_OP,
    seq: 1,
  };
  const keys = Array.from({ length: 9 }, () => newUserKey().public);
  it.each([
    ['a handle not in normalised form (upper case)', { handle: 'Alice@example' }],
    ['a handle with a Unicode host', { handle: 'alice@bücher.example' }],
    ['a handle that is not a handle', { handle: 'alice' }],
    ['9 keys (the authority allows 8)', { keys }],
    ['the same key twice', { keys: [user.public, user.public] }],
    ['a key whose x is not canonical base64url', { keys: [{ ...user.public, x: `${user.public.x.slice(0, 42)}B` }] }],
    ['a key whose x has a character outside base64url', { keys: [{ ...user.public, x: `${user.public.x.slice(0, 42)}+` }] }],
    ['a ttl beyond 7 days', { ttl: 7 * 86400 + 1 }],
    ['an op that is not a request id', { op: 'x' }],
    ['a genesis that is not a request id', { genesis: 'x' }],
    ['no genesis', { genesis: undefined }],
    ['a seq of 0', { seq: 0 }],
    ['a seq past the most entries a history holds', { seq: 10_001 }],
    ['a seq that is not an integer', { seq: 1.5 }],
    ['an exp before iat', { exp: 1_799_999_999 }],
    ['a signature valid for more than a year', { exp: 1_800_000_000 + 366 * 86400 }],
    ['a zone name not normalised', { zone: 'Example' }],
  ])('a handle record with %s is refused', (_name, change) => {
    expect(recordSchemas.handle.safeParse({ ...valid, ...change }).success).toBe(false);
    expect(recordSchemas.handle.safeParse(valid).success).toBe(true);
  });

  it.each([
    ['a name that is not normalised', { name: 'Child.example' }],
    ['a name that is not below the zone', { name: 'other' }],
    ['a name equal to the zone', { name: 'example' }],
    ['a ds that is not a thumbprint', { ds: ['abc'] }],
    ['9 ds thumbprints (the authority allows 8)', { ds: Array.from({ length: 9 }, () => freshKey().kid) }],
    ['the same ds twice', { ds: [signer.kid, signer.kid] }],
    ['a ttl beyond 7 days', { ttl: 7 * 86400 + 1 }],
    ['a server URL with credentials', { servers: ['https://u:p@ns.child.example/'] }],
    ['a javascript: server', { servers: ['javascript:alert(1)'] }],
  ])('a delegation with %s is refused', (_name, change) => {
    const d = {
      v: 1,
      type: 'delegation',
      zone: 'example',
      serial: 1,
      iat: 1_800_000_000,
      exp: 1_800_086_400,
      name: 'child.example',
      servers: ['https://ns.child.example/'],
      ds: [signer.kid],
      ttl: 3600,
    };
    expect(recordSchemas.delegation.safeParse(d).success).toBe(true);
    expect(recordSchemas.delegation.safeParse({ ...d, ...change }).success).toBe(false);
  });

  it.each([
    ['refresh beyond 30 days', { refresh: 30 * 86400 + 1 }],
    ['refresh 0', { refresh: 0 }],
    ['expire beyond 90 days', { expire: 90 * 86400 + 1 }],
    ['minimum beyond a day', { minimum: 86401 }],
    ['a digest that is not a SHA-256 in base64url', { digest: 'x' }],
    ['a salt that is not 16 hex digits', { denial: { alg: 'sha256', salt: 'salt' } }],
    ['9 keys', { keys: Array.from({ length: 9 }, () => freshKey().publicJwk) }],
  ])('a zone record with %s is refused', (_name, change) => {
    const z = zonePayload({ keys: [signer.key.publicJwk], refresh: 30 * 86400 });
    expect(recordSchemas.zone.safeParse(z).success).toBe(true);
    expect(recordSchemas.zone.safeParse({ ...z, ...change }).success).toBe(false);
  });

  it('a denial whose ttl exceeds the largest minimum is refused', () => {
    const d = {
      v: 1,
      type: 'denial',
      zone: 'example',
      serial: 1,
      iat: 1_800_000_000,
      exp: 1_800_086_400,
      after: null,
      next: null,
      hashes: [],
      hash: { alg: 'sha256', salt: FAKE_SALT },
      ttl: 86400,
    };
    expect(recordSchemas.denial.safeParse(d).success).toBe(true);
    expect(recordSchemas.denial.safeParse({ ...d, ttl: 86401 }).success).toBe(false);
  });
});

describe('the cheap normal-form checks the schemas use', () => {
  const normal = (parse: () => string, text: string) => {
    try {
      return parse() === text;
    } catch {
      return false;
    }
  };
  const text = fc.oneof(
    fc.string({ unit: fc.constantFrom('a', 'Z', '0', '9', '-', '.', '_', '@', 'x', 'n', 'é', '\u212a', ' '), maxLength: 40 }),
    fc.stringMatching(/^[a-z0-9_.-]{1,8}@(?:[a-z0-9-]{1,6}\.){0,3}[a-z0-9-]{1,6}$/),
    fc.constantFrom(
      'alice@xn--bcher-kva.example',
      'a@xn--bcher.example',
      'a@ab--cd.example',
      'a@1.2.3.4',
      'a@example.123',
      'a@0x7f',
      `a@${'a'.repeat(63)}.example`,
      `a@${'a'.repeat(64)}.example`,
      'a@example.',
      '.',
      'a..b@x',
    ),
  );
  it('isNormalHandle and isNormalZoneName agree with parseHandle and parseZoneName (fuzz)', () => {
    fc.assert(
      fc.property(text, (t) => {
        expect(isNormalHandle(t)).toBe(normal(() => parseHandle(t).handle, t));
        const host = t.slice(t.indexOf('@') + 1);
        expect(isNormalZoneName(host)).toBe(normal(() => parseZoneName(host), host));
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 3000), seed: 20261205 },
    );
  });
});

describe('a hostile zone signing forbidden endpoints with its real, delegated key', () => {
  const ZONE = 'hostile.example';
  let z: HostileZone;
  let h: Hierarchy;
  /** handle → the endpoint its record carries. */
  const endpoints = new Map<string, string>();
  const cases: [string, string, string][] = [...FORBIDDEN_ALWAYS, ...LOOPBACK].map(([name, e], i) => [name, e, `h${i}@${ZONE}`]);
  const cleanups = cleanupEachTest();

  beforeAll(async () => {
    for (const [, e, handle] of cases) endpoints.set(handle, e);
    z = await startHostileZone(ZONE, (handle, { h, signer }) => signer.handle(handle, endpoints.get(handle) ?? 'https://home.example/', [h.owner.public]), {
      allowLoopbackEndpoints: true,
    });
    h = z.h;
  }, 60_000);
  afterAll(() => z?.close());

  function resolver(): Resolver {
    // allowPrivate: the test servers are on loopback. It is also the verifier's development mode, in
    // which loopback endpoints pass; everything else stays forbidden.
    const r = createResolver({ trustAnchors: h.anchors, rootServers: h.rootServers, allowPrivate: true, limits: { requestTimeoutMs: 2000 } });
    cleanups.push(() => r.close());
    return r;
  }

  it.each(cases.filter(([, e]) => FORBIDDEN_ALWAYS.some(([, f]) => f === e)))(
    '%s: the resolver and the library refuse it (verification_failed)',
    async (_name, _e, handle) => {
      const r = resolver();
      const refused = await r.lookup(handle).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(refused).toBeInstanceOf(IdnsError);
      expect((refused as IdnsError).code, (refused as IdnsError).message).toBe('verification_failed');
      // Never cached as an answer: asked again, it is refused again.
      await expect(r.resolve(handle)).rejects.toMatchObject({ code: 'verification_failed' });
      expect(r.cacheSize).toBeLessThan(20);
      // The resolver still resolves a good handle afterwards.
      await expect(r.resolve('alice@social.example')).resolves.toMatchObject({ endpoint: 'https://home.example/alice@social.example' });
    },
  );

  it('loopback endpoints: accepted only in development mode (resolver allowPrivate); the strict verifier refuses the same proof', async () => {
    const r = resolver();
    for (const [name, e, handle] of cases.filter(([, e]) => LOOPBACK.some(([, l]) => l === e))) {
      const found = verified(await r.lookup(handle));
      expect([name, found.endpoint]).toEqual([name, e]);
      const now = Math.floor(Date.now() / 1000);
      expect(() => verifyProof(found.proof, handle, h.anchors, now)).toThrow(expect.objectContaining({ code: 'verification_failed' }));
      expect(verifyProof(found.proof, handle, h.anchors, now, undefined, { allowLoopbackEndpoints: true }).endpoint).toBe(e);
      // The library's check of an authoritative answer: the same rule.
      const body = zoneReply('answer', ZONE, found.proof.record, found.proof.steps.at(-1)!.zoneRecord);
      expect(() => checkAnswer(body, handle, new Map())).toThrow(expect.objectContaining({ code: 'verification_failed' }));
      expect(checkAnswer(body, handle, new Map(), undefined, { allowLoopbackEndpoints: true }).status).toBe('answer');
    }
  });

  it('idns resolve refuses forbidden endpoints, and loopback ones without --allow-private', async () => {
    // A sample of the forms (each is a whole CLI start); the CLI verifies with the library's checkAnswer,
    // which the cases above cover form by form.
    const sample = [
      'cloud metadata over http',
      'a file URL',
      'a javascript URL',
      'a gopher URL',
      'credentials',
      'not a URL at all',
      'a public IPv4 literal',
      'loopback http',
    ];
    const picked = cases.filter(([name]) => sample.includes(name));
    expect(picked).toHaveLength(sample.length);
    for (let i = 0; i < picked.length; i += 4) {
      await Promise.all(
        picked.slice(i, i + 4).map(async ([name, e, handle]) => {
          const strict = await runIdns(['resolve', handle, '--server', z.fake.url], { timeoutMs: 60_000 });
          expect([name, strict.code, strict.stderr]).toEqual([name, 1, expect.stringContaining('verification_failed')]);
          if (LOOPBACK.some(([, l]) => l === e)) {
            const dev = await runIdns(['resolve', handle, '--server', z.fake.url, '--allow-private', '--json'], { timeoutMs: 60_000 });
            expect([name, dev.code]).toEqual([name, 0]);
            expect(JSON.parse(dev.stdout).endpoint).toBe(e);
          }
        }),
      );
    }
  }, 180_000);

  it('the WebFinger route of a resolver-role server refuses it too', async () => {
    const server = await startTestServer({
      config: {
        resolver: hierarchyResolver(h),
      },
    });
    cleanups.push(() => server.close());
    const [, , handle] = cases[0]!;
    const res = await fetch(`${server.url}/.well-known/webfinger?resource=acct:${handle}`);
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('verification_failed');
  });
});

describe('owner-set links of a handle record (profile, alsoKnownAs, movedTo): one rule for the authority and the verifier', () => {
  const user = newUserKey();
  const record = (links: Record<string, unknown>) => ({
    v: 1,
    type: 'handle',
    zone: 'example',
    serial: 1,
    iat: 1_800_000_000,
    exp: 1_800_086_400,
    handle: 'alice@example',
    endpoint: 'https://home.example/alice',
    keys: [user.public],
    ttl: 3600,
    op: FAKE_OP,
    genesis: FAKE_OP,
    seq: 1,
    ...links,
  });
  const schemaAccepts = (links: Record<string, unknown>, development = false) =>
    (development ? developmentRecordSchemas : recordSchemas).handle.safeParse(record(links)).success;
  /** The authority's verdict on a register request with these links, in a zone with or without loopback endpoints. */
  const authorityCode = (links: Record<string, unknown>, development = false): string | null => {
    const jws = signChangeRequest(
      { action: 'register', handle: 'alice@example', endpoint: 'https://home.example/alice', keys: [user.public], ...links },
      user.private,
    );
    try {
      assureValidChange(parseChangeRequest(jws), null, Math.floor(Date.now() / 1000), { allowLoopbackEndpoints: development, hostScripts: 'strict' });
      return null;
    } catch (err) {
      expect(err).toBeInstanceOf(IdnsError);
      return (err as IdnsError).code;
    }
  };

  const VALID: [string, Record<string, unknown>][] = [
    ['none', {}],
    ['a profile page', { profile: 'https://home.example/@alice' }],
    ['handles and URLs', { alsoKnownAs: ['alice@old.example', 'https://old.example/users/alice'] }],
    ['eight entries', { alsoKnownAs: Array.from({ length: 8 }, (_, i) => `a${i}@example.net`) }],
    ['an entry of 2,048 characters', { alsoKnownAs: [`https://home.example/${'a'.repeat(2048 - 'https://home.example/'.length)}`] }],
    ['a move', { movedTo: 'alice@new.example' }],
    ['all three', { profile: 'https://home.example/@alice', alsoKnownAs: ['alice@new.example'], movedTo: 'alice@new.example' }],
  ];
  const INVALID: [string, Record<string, unknown>][] = [
    ['nine alsoKnownAs entries', { alsoKnownAs: Array.from({ length: 9 }, (_, i) => `a${i}@example.net`) }],
    ['an entry over 2,048 characters', { alsoKnownAs: [`https://home.example/${'a'.repeat(2048)}`] }],
    ['an empty alsoKnownAs', { alsoKnownAs: [] }],
    ['an entry twice', { alsoKnownAs: ['bob@example.net', 'bob@example.net'] }],
    ['the handle itself in alsoKnownAs', { alsoKnownAs: ['alice@example'] }],
    ['a handle not in normal form', { alsoKnownAs: ['Bob@Example.net'] }],
    ['an acct: URI instead of a handle', { alsoKnownAs: ['acct:bob@example.net'] }],
    ['an empty entry', { alsoKnownAs: [''] }],
    ['a move to the handle itself', { movedTo: 'alice@example' }],
    ['a move to a handle not in normal form', { movedTo: 'Alice@New.example' }],
    ['a move to a URL', { movedTo: 'https://new.example/alice' }],
    ['an empty move', { movedTo: '' }],
    ['a profile over http', { profile: 'http://home.example/@alice' }],
    ['a profile that is not a string', { profile: 5 }],
    ['alsoKnownAs that is not a list', { alsoKnownAs: 'bob@example.net' }],
    ...FORBIDDEN_ALWAYS.map(([name, url]): [string, Record<string, unknown>] => [`an alsoKnownAs entry: ${name}`, { alsoKnownAs: [url] }]),
    ...FORBIDDEN_ALWAYS.map(([name, url]): [string, Record<string, unknown>] => [`a profile: ${name}`, { profile: url }]),
  ];

  it.each(VALID)('accepts %s on both sides', (_name, links) => {
    expect(schemaAccepts(links)).toBe(true);
    expect(authorityCode(links)).toBe(null);
  });

  it.each(INVALID)('refuses %s on both sides (verifier: schema; authority: invalid_request)', (_name, links) => {
    expect(schemaAccepts(links)).toBe(false);
    expect(schemaAccepts(links, true)).toBe(false);
    // The authority refuses at the latest when parsing (form) or judging (zone rules): one code either way.
    let code: string | null;
    try {
      code = authorityCode(links, true);
    } catch (err) {
      code = (err as IdnsError).code;
    }
    expect(code).toBe('invalid_request');
  });

  it('loopback URLs: only development zones sign them and only development verifiers accept them', () => {
    for (const links of [{ profile: 'http://127.0.0.1:3000/@dev' }, { alsoKnownAs: ['http://localhost:3000/users/dev'] }]) {
      expect([links, schemaAccepts(links), schemaAccepts(links, true)]).toEqual([links, false, true]);
      expect([links, authorityCode(links), authorityCode(links, true)]).toEqual([links, 'invalid_request', null]);
    }
  });

  it('a delete request carries no links', () => {
    const payload = { v: 1, action: 'delete', handle: 'alice@example', prev: FAKE_OP, iat: Math.floor(Date.now() / 1000), movedTo: 'alice@new.example' };
    const key = newUserKey();
    const jws = signChangeRequest({ action: 'delete', handle: 'alice@example', prev: FAKE_OP }, key.private);
    expect(() => parseChangeRequest(jws)).not.toThrow();
    const forged = `${jws.split('.')[0]}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${jws.split('.')[2]}`;
    expect(() => parseChangeRequest(forged)).toThrow(expect.objectContaining({ code: 'invalid_request' }));
  });
});
