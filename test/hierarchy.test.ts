import { calculateJwkThumbprint, compactVerify, importJWK, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createResolver } from '../src/resolver/resolver.js';
import { startHierarchy, resolveQueries, verified, type Hierarchy } from './support/hierarchy.js';
import { startNoise, type Noise } from './support/noise.js';

describe('resolution through the hierarchy', () => {
  let h: Hierarchy;
  let noise: Noise;
  beforeAll(async () => {
    h = await startHierarchy();
    // Malformed and oversized requests hit every server for as long as these tests run.
    noise = startNoise(() => [...h.zones.values()].flatMap((z) => [z.a.url, z.b.url]));
  });
  afterAll(async () => {
    const seen = await noise.stop();
    await h.close();
    expect(seen.sent).toBeGreaterThan(50);
    expect(seen.serverErrors, seen.serverErrors.join('\n')).toEqual([]);
    expect(seen.problems, `garbage answered with anything but a JSON error:\n${seen.problems.join('\n')}`).toEqual([]);
  });

  const resolver = () => createResolver({ trustAnchors: h.anchors, rootServers: h.rootServers, allowPrivate: true });

  it.each([
    ['dave@org', '.'],
    ['bob@example', 'example'],
    ['alice@social.example', 'social.example'],
    ['carol@news.example', 'news.example'],
    ['eve@deep.skip.example.org', 'skip.example.org'],
  ])('resolves %s from zone %s, verified from the root anchor', async (handle, zone) => {
    const r = createResolver({ trustAnchors: h.anchors, rootServers: h.rootServers, allowPrivate: true });
    const result = await r.resolve(handle);
    expect(result).toMatchObject({ handle, zone, endpoint: `https://home.example/${handle}`, keys: [h.owner.public], stale: false });
    expect(result.ttl).toBeGreaterThan(0);
    await r.close();
  });

  it('answers "does not exist" only with a verified denial from the authoritative zone', async () => {
    const r = resolver();
    const result = verified(await r.lookup('nobody@social.example'));
    expect(result.status).toBe('not_found');
    expect(result.zone).toBe('social.example');
    expect(result.proof.steps.map((s) => s.zone)).toEqual(['.', 'example', 'social.example']);
    await expect(r.resolve('nobody@social.example')).rejects.toMatchObject({ code: 'handle_not_found' });
    await r.close();
  });

  it('produces a proof chain that jose alone verifies, each key vouched for by the step above', async () => {
    const r = resolver();
    const { proof } = verified(await r.lookup('alice@social.example'));
    let trusted = h.anchors.get('.')!;
    let payload: Record<string, unknown> = {};
    for (const [i, step] of proof.steps.entries()) {
      const zonePayload = JSON.parse(Buffer.from(step.zoneRecord.split('.')[1]!, 'base64url').toString()) as { keys: JWK[] };
      const kid = JSON.parse(Buffer.from(step.zoneRecord.split('.')[0]!, 'base64url').toString()).kid as string;
      expect(trusted).toContain(kid);
      const jwk = zonePayload.keys.find(async (k) => (await calculateJwkThumbprint(k)) === kid)!;
      expect(await calculateJwkThumbprint(jwk)).toBe(kid);
      const key = await importJWK(jwk, 'EdDSA');
      await compactVerify(step.zoneRecord, key);
      const signed = i < proof.steps.length - 1 ? step.delegation! : proof.record;
      payload = JSON.parse(new TextDecoder().decode((await compactVerify(signed, key)).payload)) as Record<string, unknown>;
      if (i < proof.steps.length - 1) {
        expect(payload.name).toBe(proof.steps[i + 1]!.zone);
        trusted = payload.ds as string[];
      }
    }
    expect(payload).toMatchObject({ type: 'handle', handle: 'alice@social.example' });
    await r.close();
  });

  it('answers repeated lookups from the cache, and starts later lookups at the closest cached zone cut', async () => {
    const r = resolver();
    verified(await r.lookup('alice@social.example'));
    const before = r.upstreamRequests;
    expect(before).toBe(3);
    verified(await r.lookup('alice@social.example'));
    expect(r.upstreamRequests).toBe(before);
    // A sibling name in the same zone: the cut for social.example is cached, so one request.
    verified(await r.lookup('zed@social.example'));
    expect(r.upstreamRequests).toBe(before + 1);
    // A name in news.example: example's cut is cached, so two requests (example, news.example).
    verified(await r.lookup('carol@news.example'));
    expect(r.upstreamRequests).toBe(before + 3);
    await r.close();
  });

  it('sends one upstream request per zone for 1,000 concurrent lookups of one uncached name', async () => {
    const r = resolver();
    const queriesBefore = await resolveQueries(h);
    const results = await Promise.all(Array.from({ length: 1000 }, () => r.lookup('carol@news.example')));
    expect(results.every((x) => x.status === 'found' && x.endpoint === 'https://home.example/carol@news.example')).toBe(true);
    expect(r.upstreamRequests).toBe(3);
    expect((await resolveQueries(h)) - queriesBefore).toBe(3);
    await r.close();
  });

  it('resolves a batch of handles, each with its own result or error; a missing handle is handle_not_found, as resolve throws', async () => {
    const r = resolver();
    const results = await r.resolveMany(['alice@social.example', 'nobody@example', 'not a handle', 'acct:dave@org']);
    expect(results[0]).toMatchObject({
      handle: 'alice@social.example',
      result: { handle: 'alice@social.example', verified: true, anchor: 'configured', zone: 'social.example' },
    });
    expect(results[1]).toMatchObject({ handle: 'nobody@example', error: { code: 'handle_not_found' } });
    await expect(r.resolve('nobody@example')).rejects.toMatchObject({ code: 'handle_not_found' });
    expect(results[2]).toMatchObject({ handle: 'not a handle', error: { code: 'invalid_handle' } });
    expect(results[3]).toMatchObject({ handle: 'acct:dave@org', result: { handle: 'dave@org', zone: '.' } });
    // lookupMany keeps the denial with its proof (the resolver role's POST /v1/lookup serves it).
    const full = await r.lookupMany(['nobody@example']);
    expect(full[0]).toMatchObject({ handle: 'nobody@example', result: { status: 'not_found', zone: 'example', verified: true } });
    await expect(r.resolveMany(Array.from({ length: 101 }, (_, i) => `u${i}@example`))).rejects.toMatchObject({ code: 'invalid_request' });
    await r.close();
  });

  it('fails over to the second server of a zone when the first is down', async () => {
    const news = h.zones.get('news.example')!;
    const r = resolver();
    await news.a.server.close();
    try {
      const result = await r.resolve('carol@news.example');
      expect(result.endpoint).toBe('https://home.example/carol@news.example');
    } finally {
      await r.close();
    }
  });
});

describe('the package entry point', () => {
  it('exports createResolver for microblog servers, working through the hierarchy', async () => {
    const h = await startHierarchy();
    try {
      // Self-reference through package.json "exports", exactly as `import { createResolver } from 'idns'`.
      const idns = await import('idns');
      const r = idns.createResolver({ trustAnchors: Object.fromEntries(h.anchors), rootServers: h.rootServers, allowPrivate: true });
      const found = await r.resolve('alice@social.example');
      expect(found.endpoint).toBe('https://home.example/alice@social.example');
      await expect(r.resolve('nobody@social.example')).rejects.toBeInstanceOf(idns.IdnsError);
      await r.close();
    } finally {
      await h.close();
    }
  });
});
