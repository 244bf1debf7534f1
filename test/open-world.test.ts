import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { formatDocument, formatTxt, type Publication } from '../src/discovery/publication.js';
import { createResolver, type Resolver } from '../src/resolver/resolver.js';
import type { ResolverOptions } from '../src/resolver/options.js';
import { runIdns, spawnServer } from './support/process.js';
import { startDnsLab, startFakeDns, txtData, type DnsLab } from './support/dns-lab.js';
import { startHierarchy, type Hierarchy } from './support/hierarchy.js';
import { sendJson, startHttpsHosts, type HttpsHosts } from './support/https-hosts.js';
import { newUserKey, type UserKey } from './support/keys.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

/**
 * The open world end to end (issue 15): zones published in a real DNS lab (knot signing with DNSSEC, a
 * validating unbound, one with a wrong trust anchor) and on their domains' HTTPS (test hosts with a CA
 * made here), served by a real idns server; handles of hosts that publish nothing go to their
 * WebFinger; and a configured root keeps its delegations first.
 */

/** Zones the idns server holds, each published in the lab in its own way. */
const HELD = ['signed.test', 'plain.test', 'liar.test', 'hint.test', 'both.test'];
/** Hosts that answer WebFinger (and /.well-known/idns where a test wants it). */
const WEB_HOSTS = ['signed.test', 'plain.test', 'liar.test', 'hint.test', 'mastodon.test', 'down.test', 'both.test'];

let lab: DnsLab;
let idns: TestServer;
let hosts: HttpsHosts;
let owner: UserKey;
const kids = new Map<string, string>();
const resolvers: Resolver[] = [];
/** /.well-known/idns documents served, by host; a missing one is a 404. */
const documents = new Map<string, unknown>();
/** WebFinger requests each host received. */
const webfingerHits = new Map<string, number>();

const publication = (zone: string, over: Partial<Publication> = {}): Publication => ({ zone, ds: [kids.get(zone)!], servers: [idns.url], ...over });

function mastodonJrd(handle: string, host: string): unknown {
  const [user] = handle.split('@');
  return {
    subject: `acct:${handle}`,
    aliases: [`https://${host}/@${user}`, `https://${host}/users/${user}`],
    links: [
      { rel: 'http://webfinger.net/rel/profile-page', type: 'text/html', href: `https://${host}/@${user}` },
      { rel: 'self', type: 'application/activity+json', href: `https://${host}/users/${user}` },
      { rel: 'http://ostatus.org/schema/1.0/subscribe', template: `https://${host}/authorize_interaction?uri={uri}` },
    ],
  };
}

function webHost(name: string) {
  return (req: { url?: string }, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', `https://${name}`);
    if (url.pathname === '/.well-known/idns') {
      const doc = documents.get(name);
      if (doc === undefined) {
        res.writeHead(404).end();
        return;
      }
      sendJson(res, doc, { 'content-type': 'application/json' });
      return;
    }
    if (url.pathname === '/.well-known/webfinger') {
      webfingerHits.set(name, (webfingerHits.get(name) ?? 0) + 1);
      const handle = (url.searchParams.get('resource') ?? '').replace(/^acct:/, '');
      sendJson(res, mastodonJrd(handle, name));
      return;
    }
    res.writeHead(404).end();
  };
}

function resolver(options: ResolverOptions = {}): Resolver {
  const r = createResolver({
    discovery: { dnsServers: [`${lab.validating.host}:${lab.validating.port}`] },
    dispatcher: hosts.dispatcher,
    allowPrivate: true,
    ...options,
  });
  resolvers.push(r);
  return r;
}

async function register(handle: string, zone: string): Promise<void> {
  const jws = signChangeRequest({ action: 'register', handle, endpoint: `https://home.example/${handle}`, keys: [owner.public] }, owner.private);
  await idns.ctx.changes.submit(jws);
}

beforeAll(async () => {
  owner = newUserKey();
  idns = await startTestServer();
  for (const zone of HELD) {
    const info = idns.ctx.zones.create(zone, { servers: [idns.url] });
    kids.set(zone, info.keyThumbprints[0]!);
    await register(`alice@${zone}`, zone);
  }
  // A zone below a discovered one, delegated as in any hierarchy: found by walking down from signed.test.
  const child = idns.ctx.zones.create('sub.signed.test', { servers: [idns.url] });
  idns.ctx.zones.delegate('signed.test', 'sub.signed.test', { servers: [idns.url], ds: [child.keyThumbprints[0]!] });
  await register('carol@deep.sub.signed.test', 'sub.signed.test');
  hosts = startHttpsHosts(WEB_HOSTS);
  // idns servers are plain http on loopback: the test dispatcher connects those as they are.
  for (const name of WEB_HOSTS) await hosts.serve(name, webHost(name));
  const deadServers = ['http://127.0.0.1:9/'];
  lab = await startDnsLab({
    zones: {
      'signed.test': { signed: true, records: [{ name: '_idns', type: 'TXT', data: [txtData(formatTxt(publication('signed.test')))] }] },
      'down.test': {
        signed: true,
        records: [{ name: '_idns', type: 'TXT', data: [txtData(formatTxt({ zone: 'down.test', ds: [kids.get('signed.test')!], servers: deadServers }))] }],
      },
      'both.test': { signed: true, records: [{ name: '_idns', type: 'TXT', data: [txtData(formatTxt(publication('both.test')))] }] },
      'plain.test': { records: [{ name: '_idns', type: 'TXT', data: [txtData(formatTxt(publication('plain.test')))] }] },
      'liar.test': { records: [{ name: '_idns', type: 'TXT', data: [txtData(formatTxt(publication('liar.test')))] }] },
      'hint.test': { records: [{ name: '_idns', type: 'TXT', data: [txtData(formatTxt(publication('hint.test')))] }] },
      'mastodon.test': {},
    },
  });
  documents.set('plain.test', formatDocument(publication('plain.test')));
  // Names another key: whoever can change the DNS record cannot also speak for the domain's HTTPS.
  documents.set('liar.test', formatDocument(publication('liar.test', { ds: [kids.get('signed.test')!] })));
}, 120_000);

afterAll(async () => {
  for (const r of resolvers) await r.close();
  await lab?.stop();
  await hosts?.close();
  await idns?.close();
});

describe('zones found without a root', () => {
  it('resolves a zone anchored by DNSSEC through a validating DNS server', async () => {
    const r = await resolver().lookup('alice@signed.test');
    expect(r).toMatchObject({ handle: 'alice@signed.test', status: 'found', zone: 'signed.test', verified: true, anchor: 'dnssec' });
    expect(r.verified && r.proof.anchor).toEqual({ type: 'dnssec', name: '_idns.signed.test', ds: [kids.get('signed.test')] });
    // The library's short form, in the three spellings a microblog server meets.
    for (const spelling of ['alice@signed.test', '@alice@signed.test', 'acct:alice@signed.test']) {
      expect(await resolver().resolve(spelling)).toMatchObject({ handle: 'alice@signed.test', verified: true, anchor: 'dnssec', zone: 'signed.test' });
    }
  });

  it('walks idns delegations below the closest published zone', async () => {
    const r = await resolver().lookup('carol@deep.sub.signed.test');
    expect(r).toMatchObject({ status: 'found', zone: 'sub.signed.test', verified: true, anchor: 'dnssec' });
    expect(r.verified && r.proof.steps.map((s) => s.zone)).toEqual(['signed.test', 'sub.signed.test']);
    expect(r.verified && r.proof.anchor).toMatchObject({ type: 'dnssec', name: '_idns.signed.test' });
  });

  it('reports a missing handle of a discovered zone as a verified denial, the same way from resolve and resolveMany', async () => {
    const r = resolver();
    expect(await r.lookup('nobody@signed.test')).toMatchObject({ status: 'not_found', verified: true, anchor: 'dnssec' });
    await expect(r.resolve('nobody@signed.test')).rejects.toMatchObject({ code: 'handle_not_found' });
    const [one] = await r.resolveMany(['nobody@signed.test']);
    expect(one).toMatchObject({ handle: 'nobody@signed.test', error: { code: 'handle_not_found' } });
  });

  it('refuses a TXT record without DNSSEC when no HTTPS document confirms it', async () => {
    await expect(resolver().lookup('alice@hint.test')).rejects.toMatchObject({ code: 'anchor_refused' });
  });

  it('resolves a TXT record without DNSSEC that the HTTPS document confirms, anchored by https', async () => {
    const r = await resolver().lookup('alice@plain.test');
    expect(r).toMatchObject({ status: 'found', zone: 'plain.test', verified: true, anchor: 'https' });
    expect(r.verified && r.proof.anchor).toEqual({ type: 'https', url: 'https://plain.test/.well-known/idns', ds: [kids.get('plain.test')] });
  });

  it('refuses an HTTPS document that names another key than the TXT record', async () => {
    await expect(resolver().lookup('alice@liar.test')).rejects.toMatchObject({ code: 'anchor_refused' });
  });

  it('refuses a bogus DNSSEC answer (a validating server with the wrong trust anchor)', async () => {
    const r = resolver({ discovery: { dnsServers: [`${lab.wrongAnchor.host}:${lab.wrongAnchor.port}`] } });
    await expect(r.lookup('alice@signed.test')).rejects.toMatchObject({ code: 'dns_failed' });
    // Never downgraded to the host's WebFinger, though the bridge is on.
    await expect(r.lookup('alice@both.test')).rejects.toMatchObject({ code: 'dns_failed' });
    expect(webfingerHits.get('both.test') ?? 0).toBe(0);
  });

  it('with requireDnssec, accepts DNSSEC anchors only (no https anchor, no bridge)', async () => {
    const r = resolver({ discovery: { dnsServers: [`${lab.validating.host}:${lab.validating.port}`], requireDnssec: true } });
    expect(await r.lookup('alice@signed.test')).toMatchObject({ anchor: 'dnssec' });
    await expect(r.lookup('alice@plain.test')).rejects.toMatchObject({ code: 'anchor_refused' });
    await expect(r.lookup('gargron@mastodon.test')).rejects.toMatchObject({ code: 'no_trust_anchor' });
  });

  it('holds discovery to the lookup budget: a silent DNS server ends the lookup at the budget, not the DNS timeouts', async () => {
    const silent = await startFakeDns({ kind: 'silent' });
    try {
      const r = resolver({ discovery: { dnsServers: [`${silent.host}:${silent.port}`], dnsTimeoutMs: 5_000 }, limits: { lookupBudgetMs: 300 } });
      const started = performance.now();
      await expect(r.lookup('alice@signed.test')).rejects.toMatchObject({ code: 'budget_exceeded' });
      // DNS alone would take 2 attempts × 5 s; the lookup gives up at its budget (slack for a loaded machine).
      expect(performance.now() - started).toBeLessThan(4_000);
      expect(silent.queries.length).toBeGreaterThan(0);
    } finally {
      await silent.close();
    }
  });

  it('believes the AD flag only from servers named as validating: otherwise a signed TXT record still needs its HTTPS document', async () => {
    const r = resolver({ discovery: { dnsServers: [`${lab.validating.host}:${lab.validating.port}`], dnsServersValidate: false } });
    await expect(r.lookup('alice@signed.test')).rejects.toMatchObject({ code: 'anchor_refused' });
    expect(await r.lookup('alice@plain.test')).toMatchObject({ anchor: 'https' });
  });
});

describe('the WebFinger bridge', () => {
  it('resolves a handle whose host publishes no zone by WebFinger, marked unverified', async () => {
    const r = resolver();
    const result = await r.lookup('@Gargron@mastodon.test');
    expect(result).toEqual({
      handle: 'gargron@mastodon.test',
      status: 'found',
      zone: null,
      endpoint: 'https://mastodon.test/users/gargron',
      aliases: ['https://mastodon.test/@gargron', 'https://mastodon.test/users/gargron'],
      profile: 'https://mastodon.test/@gargron',
      subject: 'acct:gargron@mastodon.test',
      ttl: expect.any(Number),
      verified: false,
      source: 'webfinger',
      stale: false,
    });
    expect(await r.resolve('gargron@mastodon.test')).toMatchObject({ verified: false, source: 'webfinger', keys: [], zone: null });
  });

  it('never bridges a host that publishes a zone: servers all down is resolution_failed, though the host answers WebFinger', async () => {
    const before = webfingerHits.get('down.test') ?? 0;
    await expect(resolver().lookup('alice@down.test')).rejects.toMatchObject({ code: 'resolution_failed' });
    expect(webfingerHits.get('down.test') ?? 0).toBe(before);
  });

  it('is off with webfinger: false', async () => {
    await expect(resolver({ webfinger: false }).lookup('gargron@mastodon.test')).rejects.toMatchObject({ code: 'no_trust_anchor' });
  });

  it('honours a per-call AbortSignal and forceRefresh', async () => {
    const r = resolver();
    const aborted = AbortSignal.abort(new Error('gave up'));
    await expect(r.lookup('alice@signed.test', { signal: aborted })).rejects.toThrow('gave up');
    await r.lookup('gargron@mastodon.test');
    const hits = webfingerHits.get('mastodon.test')!;
    await r.lookup('gargron@mastodon.test');
    expect(webfingerHits.get('mastodon.test')).toBe(hits);
    await r.lookup('gargron@mastodon.test', { forceRefresh: true });
    expect(webfingerHits.get('mastodon.test')).toBe(hits + 1);
  });
});

describe('coexistence with a configured root', () => {
  let h: Hierarchy;
  beforeAll(async () => {
    h = await startHierarchy();
  }, 120_000);
  afterAll(async () => {
    await h?.close();
  });

  it("keeps the root's delegations first and tries DNS only for hosts the root verifiably does not delegate", async () => {
    const r = resolver({ trustAnchors: h.anchors, rootServers: h.rootServers, discovery: { dnsServers: [`${lab.validating.host}:${lab.validating.port}`] } });
    expect(await r.lookup('alice@social.example')).toMatchObject({ zone: 'social.example', anchor: 'configured', verified: true });
    // A denial from a delegated zone stands.
    expect(await r.lookup('nobody@social.example')).toMatchObject({ status: 'not_found', zone: 'social.example', anchor: 'configured' });
    // The root holds no zone for signed.test (its own verified denial): the domain's publication answers.
    expect(await r.lookup('alice@signed.test')).toMatchObject({ status: 'found', zone: 'signed.test', anchor: 'dnssec' });
    // Without discovery, the root's denial is the answer.
    const closed = resolver({ trustAnchors: h.anchors, rootServers: h.rootServers, discovery: false });
    expect(await closed.lookup('alice@signed.test')).toMatchObject({ status: 'not_found', zone: '.' });
  });

  it("the resolver role's operator page says how the zone was anchored", async () => {
    const dnsServer = `${lab.validating.host}:${lab.validating.port}`;
    const server = await startTestServer({
      config: {
        resolver: {
          rootServers: [],
          forwarders: [],
          anchors: {},
          discovery: { dnsServers: [dnsServer], requireDnssec: false },
          webfinger: true,
          allowPrivate: true,
          cache: {},
          limits: {},
        },
      },
    });
    try {
      const page = await (await fetch(`${server.url}/?lookup=${encodeURIComponent('acct:alice@signed.test')}`)).text();
      expect(page).toContain('anchored by DNSSEC at _idns.signed.test');
      expect(page).toContain('data-outcome="found"');
      const body = (await (await fetch(`${server.url}/v1/lookup/alice@signed.test`)).json()) as Record<string, unknown>;
      expect(body).toMatchObject({ verified: true, anchor: 'dnssec', proof: { anchor: { type: 'dnssec', name: '_idns.signed.test' } } });
      // The resolver role's WebFinger answers for a handle of any discovered zone.
      const jrd = (await (await fetch(`${server.url}/.well-known/webfinger?resource=acct:alice@signed.test`)).json()) as {
        subject: string;
        links: { rel: string; href: string }[];
      };
      expect(jrd.subject).toBe('acct:alice@signed.test');
      expect(jrd.links).toContainEqual(expect.objectContaining({ rel: 'self', href: 'https://home.example/alice@signed.test' }));
    } finally {
      await server.close();
    }
  });

  it('idns serve --dns runs the resolver role with no root, and says so at start', async () => {
    const dnsServer = `${lab.validating.host}:${lab.validating.port}`;
    const data = tempDir();
    const server = await spawnServer([
      '--listen',
      '127.0.0.1:0',
      '--data',
      data.dir,
      '--dns',
      '--dns-server',
      dnsServer,
      '--no-webfinger-fallback',
      '--allow-private',
    ]);
    try {
      // The start lines follow the URL line; the lookup below is answered only once they are all written.
      const body = (await (await fetch(`${server.url}/v1/lookup/${encodeURIComponent('@alice@signed.test')}`)).json()) as Record<string, unknown>;
      expect(body).toMatchObject({ handle: 'alice@signed.test', verified: true, anchor: 'dnssec' });
      // mastodon.test's DNS denial is not signed, so only its HTTPS can say it publishes nothing, and this
      // process cannot reach it: not known to be unpublished, so an error, never a WebFinger answer.
      const none = await fetch(`${server.url}/v1/lookup/gargron@mastodon.test`);
      expect(((await none.json()) as { error: { code: string } }).error.code).toBe('network_error');
      expect(server.output()).toContain(`resolver: without a root, zones found through DNS (validating servers ${dnsServer})`);
      expect(server.output()).not.toContain('WebFinger bridge on');
    } finally {
      await server.stop();
      data.remove();
    }
  });

  it('idns lookup --dns prints how the zone was anchored', async () => {
    const dnsServer = `${lab.validating.host}:${lab.validating.port}`;
    const out = await runIdns(['lookup', 'acct:alice@signed.test', '--dns', '--dns-server', dnsServer, '--allow-private']);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('anchored by DNSSEC at _idns.signed.test');
    const json = await runIdns(['lookup', 'alice@signed.test', '--dns', '--dns-server', dnsServer, '--allow-private', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ verified: true, anchor: 'dnssec', zone: 'signed.test' });
    const refused = await runIdns(['lookup', 'alice@hint.test', '--dns', '--dns-server', dnsServer, '--require-dnssec', '--allow-private']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/anchor_refused|not anchored|DNSSEC/);
  });
});

describe('createResolver() with no options', () => {
  it('works on the internet as it is: discovery through the system resolvers (AD not believed) and the bridge', async () => {
    const r = createResolver();
    resolvers.push(r);
    expect(r.options.discovery).toEqual({ dnsServers: null, validating: false, requireDnssec: false, dnsTimeoutMs: 2_000 });
    expect(r.options.webfinger).toBe(true);
    expect(r.options.anchors.size).toBe(0);
    // A configured root turns discovery off unless asked for; requireDnssec rules the bridge out.
    const closed = createResolver({ trustAnchors: { '.': ['A'.repeat(43)] }, rootServers: ['https://root.example'] });
    resolvers.push(closed);
    expect([closed.options.discovery, closed.options.webfinger]).toEqual([null, false]);
    const strict = createResolver({ discovery: { requireDnssec: true } });
    resolvers.push(strict);
    expect(strict.options.webfinger).toBe(false);
    expect(() => createResolver({ discovery: false })).toThrow(TypeError);
    expect(() => createResolver({ discovery: { dnsServers: ['dns.example'] } })).toThrow(expect.objectContaining({ code: 'invalid_config' }));
  });
});
