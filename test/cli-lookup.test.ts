import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { verifyProof } from '../src/resolver/proof.js';
import { createResolver } from '../src/resolver/resolver.js';
import { startHierarchy, type Hierarchy, hierarchyResolver } from './support/hierarchy.js';
import { runIdns } from './support/process.js';
import { startTestServer, type TestServer } from './support/server.js';

describe('idns lookup and idns resolve through the hierarchy', () => {
  let h: Hierarchy;
  let resolverServer: TestServer;
  let rootKid: string;
  beforeAll(async () => {
    h = await startHierarchy();
    rootKid = h.anchors.get('.')![0]!;
    resolverServer = await startTestServer({
      config: {
        resolver: hierarchyResolver(h),
      },
    });
  });
  afterAll(async () => {
    await resolverServer.close();
    await h.close();
  });

  const rootArgs = () => h.rootServers.flatMap((u) => ['--root', u]);

  it('walks from the root anchor and prints the verified record and the chain of trust', async () => {
    const r = await runIdns(['lookup', 'alice@social.example', ...rootArgs(), '--anchor', `.=${rootKid}`, '--allow-private']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('endpoint: https://home.example/alice@social.example');
    expect(r.stdout).toMatch(/1\. zone \.: signed by key \S+ \(trusted via your anchors\)/);
    expect(r.stdout).toContain('3. zone social.example');
    const json = await runIdns(['lookup', 'alice@social.example', ...rootArgs(), '--anchor', `.=${rootKid}`, '--allow-private', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      status: 'found',
      zone: 'social.example',
      proof: { steps: [{ zone: '.' }, { zone: 'example' }, { zone: 'social.example' }] },
    });
  });

  it('exits 3 on a verified denial', async () => {
    const r = await runIdns(['lookup', 'nobody@news.example', ...rootArgs(), '--anchor', `.=${rootKid}`, '--allow-private']);
    expect(r.code).toBe(3);
    expect(r.stdout).toContain('does not exist (verified denial from zone news.example)');
  });

  it('explains failures precisely: a wrong anchor, refused loopback addresses, a missing anchor', async () => {
    const wrong = await runIdns(['lookup', 'alice@social.example', ...rootArgs(), '--anchor', `.=${'A'.repeat(43)}`, '--allow-private']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/not among the trusted keys.*\(verification_failed\)/);
    const refused = await runIdns(['lookup', 'alice@social.example', ...rootArgs(), '--anchor', `.=${rootKid}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('(address_refused)');
    const missing = await runIdns(['lookup', 'alice@social.example', ...rootArgs()]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--anchor');
  });

  it('asks a resolver and checks its proof against the given anchor', async () => {
    const ok = await runIdns(['lookup', 'carol@news.example', '--resolver', resolverServer.url, '--anchor', `.=${rootKid}`]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('endpoint: https://home.example/carol@news.example');
    const bad = await runIdns(['lookup', 'carol@news.example', '--resolver', resolverServer.url, '--anchor', `.=${'B'.repeat(42)}A`]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('verification_failed');
    const unanchored = await runIdns(['lookup', 'carol@news.example', '--resolver', resolverServer.url]);
    expect(unanchored.code).toBe(0);
    expect(unanchored.stdout).toContain("the resolver's anchor");
  });

  it('shows a referral from a parent with idns resolve (exit 4)', async () => {
    const example = h.zones.get('example')!;
    const r = await runIdns(['resolve', 'alice@social.example', '--server', example.a.url]);
    expect(r.code).toBe(4);
    expect(r.stdout).toContain('is in zone social.example, delegated by example');
  });

  it('serves WebFinger for handles of other zones through the resolver role', async () => {
    const res = await fetch(`${resolverServer.url}/.well-known/webfinger?resource=acct:alice@social.example`);
    expect(res.status).toBe(200);
    const jrd = (await res.json()) as { subject: string; links: { href: string }[] };
    expect(jrd.subject).toBe('acct:alice@social.example');
    expect(jrd.links[0]!.href).toBe('https://home.example/alice@social.example');
    const missing = await fetch(`${resolverServer.url}/.well-known/webfinger?resource=acct:nobody@social.example`);
    expect(missing.status).toBe(404);
  });

  it('reports a move and the aliases of a handle, verified, and never follows the move', async () => {
    const moved = 'mover@social.example';
    await h.zones.get('social.example')!.a.ctx.changes.submit(
      signChangeRequest(
        {
          action: 'register',
          handle: moved,
          endpoint: 'https://home.example/mover',
          keys: [h.owner.public],
          profile: 'https://home.example/@mover',
          alsoKnownAs: ['carol@news.example', 'https://old.example/users/mover'],
          movedTo: 'carol@news.example',
        },
        h.owner.private,
      ),
    );
    const r = await runIdns(['lookup', moved, '--resolver', resolverServer.url, '--anchor', `.=${rootKid}`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(`${moved} (moved to carol@news.example)`);
    expect(r.stdout).toContain('endpoint: https://home.example/mover');
    expect(r.stdout).toContain('profile: https://home.example/@mover');
    expect(r.stdout).toContain('also known as: carol@news.example https://old.example/users/mover');
    // Reported, not followed: the answer is the moved handle's own record.
    expect(r.stdout).not.toContain('home.example/carol');
    const json = JSON.parse((await runIdns(['lookup', moved, '--resolver', resolverServer.url, '--anchor', `.=${rootKid}`, '--json'])).stdout);
    expect(json).toMatchObject({
      handle: moved,
      status: 'found',
      endpoint: 'https://home.example/mover',
      movedTo: 'carol@news.example',
      alsoKnownAs: ['carol@news.example', 'https://old.example/users/mover'],
      profile: 'https://home.example/@mover',
    });

    // The library's verifier gives the same fields from the proof alone.
    const body = (await (await fetch(`${resolverServer.url}/v1/lookup/${moved}`)).json()) as { proof: unknown };
    // The resolver role's own body carries them, as does a walk of idns lookup --root and the library's resolve().
    expect(body).toMatchObject({
      movedTo: 'carol@news.example',
      alsoKnownAs: ['carol@news.example', 'https://old.example/users/mover'],
      profile: 'https://home.example/@mover',
    });
    const walked = JSON.parse((await runIdns(['lookup', moved, '--root', ...h.rootServers, '--anchor', `.=${rootKid}`, '--allow-private', '--json'])).stdout);
    expect(walked).toMatchObject({
      movedTo: 'carol@news.example',
      alsoKnownAs: ['carol@news.example', 'https://old.example/users/mover'],
      profile: 'https://home.example/@mover',
    });
    const library = createResolver({ trustAnchors: h.anchors, rootServers: h.rootServers, allowPrivate: true });
    try {
      expect(await library.resolve(moved)).toMatchObject({
        handle: moved,
        endpoint: 'https://home.example/mover',
        movedTo: 'carol@news.example',
        alsoKnownAs: ['carol@news.example', 'https://old.example/users/mover'],
        profile: 'https://home.example/@mover',
      });
      // A handle without owner links: exactly the plain members, none of the links' keys.
      const plain = await library.resolve('alice@social.example');
      expect(Object.keys(plain)).toEqual([
        'handle',
        'endpoint',
        'keys',
        'ttl',
        'stale',
        'verified',
        'witnessed',
        'anchor',
        'zone',
        'genesis',
        'operatorAsserted',
      ]);
      expect(plain).toMatchObject({ handle: 'alice@social.example', endpoint: 'https://home.example/alice@social.example', verified: true, witnessed: false });
    } finally {
      await library.close();
    }
    const verified = verifyProof(body.proof, moved, new Map([['.', [rootKid]]]), Math.floor(Date.now() / 1000), undefined, { allowLoopbackEndpoints: true });
    expect(verified).toMatchObject({
      status: 'found',
      movedTo: 'carol@news.example',
      alsoKnownAs: ['carol@news.example', 'https://old.example/users/mover'],
      profile: 'https://home.example/@mover',
    });
    // A handle without links has none.
    const plain = JSON.parse((await runIdns(['lookup', 'carol@news.example', '--resolver', resolverServer.url, '--anchor', `.=${rootKid}`, '--json'])).stdout);
    for (const field of ['movedTo', 'alsoKnownAs', 'profile']) expect(plain).not.toHaveProperty(field);

    // The resolver role's WebFinger shows them too, from the verified record.
    const jrd = (await (await fetch(`${resolverServer.url}/.well-known/webfinger?resource=acct:${moved}`)).json()) as {
      aliases: string[];
      properties: Record<string, string>;
    };
    expect(jrd.aliases).toEqual(['https://home.example/@mover', 'https://home.example/mover', 'acct:carol@news.example', 'https://old.example/users/mover']);
    expect(jrd.properties['https://idns.dev/ns/movedTo']).toBe('acct:carol@news.example');
  });

  it('answers GET and POST /v1/lookup on the resolver role', async () => {
    const one = await fetch(`${resolverServer.url}/v1/lookup/bob@example`);
    expect(one.status).toBe(200);
    expect(one.headers.get('cache-control')).toMatch(/max-age=\d+/);
    expect(await one.json()).toMatchObject({ handle: 'bob@example', status: 'found', zone: 'example', stale: false });
    const batch = await fetch(`${resolverServer.url}/v1/lookup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ handles: ['bob@example', 'nobody@example', 'bad handle'] }),
    });
    expect(batch.status).toBe(200);
    const body = (await batch.json()) as { results: Record<string, unknown>[] };
    expect(body.results[0]).toMatchObject({ handle: 'bob@example', status: 'found' });
    expect(body.results[1]).toMatchObject({ handle: 'nobody@example', status: 'not_found' });
    expect(body.results[2]).toMatchObject({ handle: 'bad handle', error: { code: 'invalid_handle' } });
    const tooMany = await fetch(`${resolverServer.url}/v1/lookup`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ handles: Array.from({ length: 101 }, (_, i) => `u${i}@example`) }),
    });
    expect(tooMany.status).toBe(400);
    const notResolver = await fetch(`${h.zones.get('example')!.a.url}/v1/lookup/bob@example`);
    expect(notResolver.status).toBe(421);
  });
});
