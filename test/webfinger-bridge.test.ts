import { lookup as dnsLookup } from 'node:dns/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { WebFingerBridge, type WebFingerBridgeOptions } from '../src/discovery/webfinger.js';
import { IdnsError } from '../src/errors.js';
import { isPrivateAddress } from '../src/resolver/address-policy.js';
import { cleanupEachTest } from './support/cleanup.js';
import { sendJson, startHttpsHosts, type HttpsHosts } from './support/https-hosts.js';

/**
 * The WebFinger bridge against real HTTPS hosts on loopback (test CA, real TLS, real names through the
 * test dispatcher), with the real address policy (allowPrivate false unless a case says otherwise).
 */

const NAMES = ['social.example', 'other.example', 'example.org', 'evil.example', 'victim.example'];

/** The JRD mastodon.social serves for an account, in its real shape (Mastodon 4). */
function mastodonJrd(user: string, domain: string, webDomain = domain): Record<string, unknown> {
  return {
    subject: `acct:${user}@${domain}`,
    aliases: [`https://${webDomain}/@${user}`, `https://${webDomain}/users/${user}`],
    links: [
      { rel: 'http://webfinger.net/rel/profile-page', type: 'text/html', href: `https://${webDomain}/@${user}` },
      { rel: 'self', type: 'application/activity+json', href: `https://${webDomain}/users/${user}` },
      { rel: 'http://ostatus.org/schema/1.0/subscribe', template: `https://${webDomain}/authorize_interaction?uri={uri}` },
      { rel: 'http://webfinger.net/rel/avatar', type: 'image/png', href: `https://files.${webDomain}/accounts/avatars/000/000/001/original/a.png` },
    ],
  };
}

/** The `resource` query parameter of a request URL. */
function resourceOf(url: string): string | null {
  return new URL(url, 'https://x').searchParams.get('resource');
}

/** A handler that answers each account's Mastodon JRD from a table, 404 for the others. */
function accounts(table: Record<string, Record<string, unknown>>, headers: Record<string, string> = {}) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const jrd = table[resourceOf(req.url ?? '') ?? ''];
    if (jrd === undefined) sendJson(res, { error: 'not found' }, {}, 404);
    else sendJson(res, jrd, headers);
  };
}

/** The typed error a promise rejects with. */
async function failure(p: Promise<unknown>): Promise<IdnsError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(IdnsError);
  return err as IdnsError;
}

/** Resolves once `host` has received `n` requests (the host's handler calls `arrived`). */
function progress(): { arrived: () => void; reached: (n: number) => Promise<void> } {
  let count = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  return {
    arrived() {
      count += 1;
      for (const w of waiters.filter((x) => x.n <= count)) w.resolve();
    },
    reached: (n) => (count >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }))),
  };
}

describe('WebFinger bridge', () => {
  let hosts: HttpsHosts;
  const cleanups = cleanupEachTest();

  beforeAll(() => {
    hosts = startHttpsHosts(NAMES);
  });
  afterAll(async () => {
    await hosts.close();
  });

  function bridge(options: WebFingerBridgeOptions = {}): WebFingerBridge {
    const b = new WebFingerBridge({ dispatcher: hosts.dispatcher, ...options });
    cleanups.push(() => b.close());
    return b;
  }

  it('resolves a Mastodon-shaped JRD: endpoint, aliases, profile page, unverified, from webfinger', async () => {
    const host = await hosts.serve('social.example', accounts({ 'acct:alice@social.example': mastodonJrd('alice', 'social.example') }));
    const r = await bridge().lookup('alice@social.example');
    expect(r).toEqual({
      handle: 'alice@social.example',
      endpoint: 'https://social.example/users/alice',
      aliases: ['https://social.example/@alice', 'https://social.example/users/alice'],
      profile: 'https://social.example/@alice',
      subject: 'acct:alice@social.example',
      ttl: 3600,
      verified: false,
      source: 'webfinger',
    });
    expect(host.requests).toHaveLength(1);
    expect(host.requests[0]!.url).toBe('/.well-known/webfinger?resource=acct%3Aalice%40social.example');
    expect(host.requests[0]!.headers.accept).toBe('application/jrd+json, application/json');
    expect(host.requests[0]!.headers.host).toBe('social.example');
  });

  it("matches the subject case-insensitively (Mastodon keeps the user name's case) and accepts the ld+json ActivityStreams type", async () => {
    const jrd = mastodonJrd('Alice', 'social.example');
    (jrd.links as { rel: string; type?: string }[])[1]!.type = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"';
    await hosts.serve('social.example', accounts({ 'acct:alice@social.example': jrd }));
    const r = await bridge().lookup('alice@social.example');
    expect(r.endpoint).toBe('https://social.example/users/Alice');
    expect(r.subject).toBe('acct:alice@social.example');
  });

  it('follows a redirect to another https host, checked like the first URL', async () => {
    const first = await hosts.serve('social.example', (req, res) => {
      res.writeHead(301, { location: `https://other.example/.well-known/webfinger?resource=${encodeURIComponent(resourceOf(req.url!)!)}` });
      res.end();
    });
    const second = await hosts.serve('other.example', accounts({ 'acct:alice@social.example': mastodonJrd('alice', 'social.example', 'other.example') }));
    const r = await bridge().lookup('alice@social.example');
    expect(r.endpoint).toBe('https://other.example/users/alice');
    expect(r.subject).toBe('acct:alice@social.example');
    expect(first.requests).toHaveLength(1);
    expect(second.requests).toHaveLength(1);
  });

  it('follows a personal domain that redirects to the account at a server, and names that account as the subject', async () => {
    // A static redirect with the resource rewritten, as personal domains point at a Mastodon account.
    await hosts.serve('example.org', (_req, res) => {
      res.writeHead(302, { location: 'https://social.example/.well-known/webfinger?resource=acct%3Aalice%40social.example' });
      res.end();
    });
    const server = await hosts.serve('social.example', accounts({ 'acct:alice@social.example': mastodonJrd('alice', 'social.example') }));
    const r = await bridge().lookup('me@example.org');
    expect(r).toMatchObject({
      handle: 'me@example.org',
      subject: 'acct:alice@social.example',
      endpoint: 'https://social.example/users/alice',
      verified: false,
    });
    // The server was asked once through the redirect, and once to confirm the account it names.
    expect(server.requests.map((q) => resourceOf(q.url))).toEqual(['acct:alice@social.example', 'acct:alice@social.example']);
  });

  it("fails with webfinger_failed when the host's certificate is not trusted", async () => {
    await hosts.serve('social.example', accounts({ 'acct:alice@social.example': mastodonJrd('alice', 'social.example') }));
    const err = await failure(bridge({ dispatcher: hosts.dispatcherTrusting() }).lookup('alice@social.example'));
    expect(err.code).toBe('webfinger_failed');
    expect(err.message).toMatch(/certificate/i);
  });

  it('refuses a redirect to http, and never contacts its target', async () => {
    await hosts.serve('social.example', (_req, res) => {
      res.writeHead(302, { location: 'http://other.example/.well-known/webfinger?resource=acct:alice@social.example' });
      res.end();
    });
    const other = await hosts.serve('other.example', accounts({}));
    const err = await failure(bridge().lookup('alice@social.example'));
    expect(err.code).toBe('address_refused');
    expect(err.message).toMatch(/https only/);
    expect(other.requests).toHaveLength(0);
  });

  it('refuses a redirect to a loopback address under the address policy', async () => {
    await hosts.serve('social.example', (_req, res) => {
      res.writeHead(307, { location: 'https://127.0.0.1/.well-known/webfinger?resource=acct:alice@social.example' });
      res.end();
    });
    const b = bridge();
    const err = await failure(b.lookup('alice@social.example'));
    expect(err.code).toBe('address_refused');
    expect(b.requests).toBe(1);
  });

  it('refuses a handle whose host is loopback (localhost) when private addresses are not allowed, before any request', async () => {
    const b = bridge();
    const err = await failure(b.lookup('alice@localhost'));
    expect(err.code).toBe('address_refused');
    expect(b.requests).toBe(0);
    // The bridge's own dispatcher carries the address policy too.
    const own = new WebFingerBridge();
    cleanups.push(() => own.close());
    expect((await failure(own.lookup('alice@localhost'))).code).toBe('address_refused');
  });

  it("refuses a host name that resolves to a private address, at connect time (the bridge's own dispatcher carries publicOnlyLookup)", async () => {
    // The machine's own name resolves through /etc/hosts to a loopback or private address (127.0.1.1 on
    // Debian, 127.0.0.1 in gVisor, the container's 172.x in Docker); the text check cannot know that.
    let name: string | undefined;
    for (const candidate of [hostname(), 'vm', 'runsc']) {
      const found = await dnsLookup(candidate, { all: true }).catch(() => []);
      if (found.length > 0 && found.every((a) => isPrivateAddress(a.address))) {
        name = candidate.toLowerCase();
        break;
      }
    }
    expect(name, 'a host name of this machine that resolves to a private address').toBeDefined();
    const own = new WebFingerBridge();
    cleanups.push(() => own.close());
    const err = await failure(own.lookup(`alice@${name}`));
    expect(err.code).toBe('address_refused');
    expect(err.message).toMatch(/resolves to a private address/);
    expect(own.requests).toBe(1);
  });

  it('follows at most maxRedirects redirects', async () => {
    const host = await hosts.serve('social.example', (req, res) => {
      res.writeHead(302, { location: `/.well-known/webfinger?resource=acct:alice@social.example&hop=${host.requests.length}` });
      res.end();
    });
    const err = await failure(bridge().lookup('alice@social.example'));
    expect(err.code).toBe('webfinger_failed');
    expect(err.message).toMatch(/more than 3 redirects/);
    expect(host.requests).toHaveLength(4);
    const once = await failure(bridge({ maxRedirects: 1 }).lookup('bob@social.example'));
    expect(once.message).toMatch(/more than 1 redirects/);
    expect(host.requests).toHaveLength(4 + 2);
  });

  it('refuses a body over maxBytes, declared or streamed', async () => {
    const big = { ...mastodonJrd('alice', 'social.example'), properties: { pad: 'x'.repeat(70 * 1024) } };
    await hosts.serve('social.example', (req, res) => {
      if (resourceOf(req.url!) === 'acct:alice@social.example') return sendJson(res, big);
      // No Content-Length: the bound must hold while reading.
      res.writeHead(200, { 'content-type': 'application/jrd+json' });
      res.write(JSON.stringify(big).slice(0, 40 * 1024));
      res.end(JSON.stringify(big).slice(40 * 1024));
    });
    const b = bridge();
    const declared = await failure(b.lookup('alice@social.example'));
    expect(declared.code).toBe('webfinger_failed');
    expect(declared.message).toMatch(/larger than 65536 bytes/);
    const streamed = await failure(b.lookup('bob@social.example'));
    expect(streamed.code).toBe('webfinger_failed');
    expect(streamed.message).toMatch(/larger than 65536 bytes/);
    // A smaller bound is the caller's to set.
    await hosts.serve('social.example', accounts({ 'acct:carol@social.example': mastodonJrd('carol', 'social.example') }));
    expect((await failure(bridge({ maxBytes: 256 }).lookup('carol@social.example'))).message).toMatch(/larger than 256 bytes/);
  });

  it('bounds a host that never finishes its body by the lookup time limit', async () => {
    const host = await hosts.serve('social.example', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/jrd+json' });
      res.write('{"subject":"acct:alice@social.example","links":['); // and never a byte more
    });
    const err = await failure(bridge({ timeoutMs: 1000 }).lookup('alice@social.example'));
    expect(err.code).toBe('webfinger_failed');
    expect(err.message).toMatch(/within 1000 ms/);
    expect(host.requests.length).toBeLessThanOrEqual(1);
  });

  it('fails with webfinger_failed for a JRD without a self link of an ActivityPub type', async () => {
    const jrd = mastodonJrd('alice', 'social.example');
    jrd.links = [
      ...(jrd.links as { rel: string }[]).filter((l) => l.rel !== 'self'),
      { rel: 'self', type: 'text/html', href: 'https://social.example/@alice' },
    ];
    await hosts.serve('social.example', accounts({ 'acct:alice@social.example': jrd }));
    const err = await failure(bridge().lookup('alice@social.example'));
    expect(err.code).toBe('webfinger_failed');
    expect(err.message).toMatch(/no self link/);
  });

  it('refuses JRDs outside the bounds, not JSON, or with an endpoint no record could carry', async () => {
    const cases: [string, unknown, RegExp][] = [
      ['links', { ...mastodonJrd('a', 'social.example'), links: Array.from({ length: 65 }, () => ({ rel: 'x' })) }, /more than 64 links/],
      [
        'aliases',
        { ...mastodonJrd('a', 'social.example'), aliases: Array.from({ length: 33 }, (_, i) => `https://social.example/${i}`) },
        /more than 32 aliases/,
      ],
      ['long', { ...mastodonJrd('a', 'social.example'), aliases: [`https://social.example/${'a'.repeat(2048)}`] }, /longer than 2048/],
      ['typed', { ...mastodonJrd('a', 'social.example'), links: [{ rel: 'self', type: 'application/activity+json', href: 42 }] }, /not a string/],
      ['array', [mastodonJrd('a', 'social.example')], /not a JSON object/],
      ['html', '<html>hello</html>', /not valid JSON/],
      ['twice', '{"subject":"acct:twice@social.example","subject":"acct:twice@social.example"}', /twice|I-JSON/],
      [
        'ip',
        { subject: 'acct:ip@social.example', links: [{ rel: 'self', type: 'application/activity+json', href: 'https://169.254.169.254/users/ip' }] },
        /IP address/,
      ],
      [
        'http',
        { subject: 'acct:http@social.example', links: [{ rel: 'self', type: 'application/activity+json', href: 'http://social.example/users/http' }] },
        /https/,
      ],
    ];
    await hosts.serve('social.example', (req, res) => {
      const name = resourceOf(req.url!)!.slice(5).split('@')[0]!;
      sendJson(res, cases.find(([n]) => n === name)![1] as never);
    });
    const b = bridge();
    for (const [name, , why] of cases) {
      const err = await failure(b.lookup(`${name}@social.example`));
      expect(err.code, name).toBe('webfinger_failed');
      expect(err.message, name).toMatch(why);
    }
  });

  it('answers handle_not_found for a 404 or 410, remembered for 60 s', async () => {
    const clock = new ManualClock();
    const host = await hosts.serve('social.example', (req, res) => {
      if (resourceOf(req.url!) === 'acct:gone@social.example') return sendJson(res, '', {}, 410);
      sendJson(res, '<html>no</html>', { 'content-type': 'text/html' }, 404);
    });
    const b = bridge({ clock });
    expect((await failure(b.lookup('nobody@social.example'))).code).toBe('handle_not_found');
    expect((await failure(b.lookup('gone@social.example'))).code).toBe('handle_not_found');
    expect(host.requests).toHaveLength(2);
    clock.advance(59_000);
    expect((await failure(b.lookup('nobody@social.example'))).code).toBe('handle_not_found');
    expect(host.requests).toHaveLength(2);
    clock.advance(2_000);
    expect((await failure(b.lookup('nobody@social.example'))).code).toBe('handle_not_found');
    expect(host.requests).toHaveLength(3);
  });

  it('fails with webfinger_failed for other statuses, without caching them', async () => {
    const host = await hosts.serve('social.example', (_req, res) => sendJson(res, '{}', {}, 503));
    const b = bridge();
    const err = await failure(b.lookup('alice@social.example'));
    expect(err.code).toBe('webfinger_failed');
    expect(err.message).toMatch(/HTTP 503/);
    await failure(b.lookup('alice@social.example'));
    expect(host.requests).toHaveLength(2);
  });

  it('answers from the cache without a request; forceRefresh asks again', async () => {
    const clock = new ManualClock();
    const host = await hosts.serve('social.example', accounts({ 'acct:alice@social.example': mastodonJrd('alice', 'social.example') }));
    const b = bridge({ clock });
    await b.lookup('alice@social.example');
    clock.advance(1000);
    const hit = await b.lookup('alice@social.example');
    expect(hit.ttl).toBe(3599);
    expect(hit.endpoint).toBe('https://social.example/users/alice');
    expect(host.requests).toHaveLength(1);
    const fresh = await b.lookup('alice@social.example', { forceRefresh: true });
    expect(fresh.ttl).toBe(3600);
    expect(host.requests).toHaveLength(2);
    clock.advance(3600_000);
    await b.lookup('alice@social.example');
    expect(host.requests).toHaveLength(3);
  });

  it('takes the TTL from Cache-Control max-age within [60 s, 1 day]', async () => {
    const clock = new ManualClock();
    const cases: Record<string, [string, number]> = {
      mastodon: ['max-age=259200, public', 86_400], // what Mastodon sends: 3 days, held 1 day
      short: ['max-age=5', 60],
      nostore: ['no-store', 60],
      nocache: ['no-cache, max-age=600', 60],
      plain: ['public, max-age=120', 120],
    };
    await hosts.serve('social.example', (req, res) => {
      const user = resourceOf(req.url!)!.slice(5).split('@')[0]!;
      sendJson(res, mastodonJrd(user, 'social.example'), { 'cache-control': cases[user]![0] });
    });
    const b = bridge({ clock });
    for (const [user, [, ttl]] of Object.entries(cases)) expect((await b.lookup(`${user}@social.example`)).ttl, user).toBe(ttl);
    const host = await hosts.serve('social.example', accounts({ 'acct:plain@social.example': mastodonJrd('plain', 'social.example') }));
    clock.advance(119_000);
    await b.lookup('plain@social.example');
    expect(host.requests).toHaveLength(0);
    clock.advance(2_000);
    await b.lookup('plain@social.example');
    expect(host.requests).toHaveLength(1);
  });

  it('bounds the cache by entries', async () => {
    const host = await hosts.serve('social.example', (req, res) => sendJson(res, mastodonJrd(resourceOf(req.url!)!.slice(5).split('@')[0]!, 'social.example')));
    const b = bridge({ maxEntries: 2 });
    for (const user of ['a', 'b', 'c']) await b.lookup(`${user}@social.example`);
    await b.lookup('c@social.example');
    await b.lookup('b@social.example');
    expect(host.requests).toHaveLength(3);
    await b.lookup('a@social.example'); // evicted, the least recently used
    expect(host.requests).toHaveLength(4);
  });

  it('coalesces concurrent lookups of one handle into one request', async () => {
    const held: (() => void)[] = [];
    const arrivals = progress();
    const host = await hosts.serve('social.example', (req, res) => {
      held.push(() => accounts({ 'acct:alice@social.example': mastodonJrd('alice', 'social.example') })(req, res));
      arrivals.arrived();
    });
    const b = bridge();
    const one = b.lookup('alice@social.example');
    const two = b.lookup('alice@social.example');
    await arrivals.reached(1);
    for (const release of held.splice(0)) release();
    const [r1, r2] = await Promise.all([one, two]);
    expect(r1).toEqual(r2);
    expect(host.requests).toHaveLength(1);
    expect(b.requests).toBe(1);
  });

  it("ends a caller's wait when its signal aborts, and cancels the request once no caller waits", async () => {
    const arrivals = progress();
    let closed: () => void = () => {};
    const requestClosed = new Promise<void>((resolve) => (closed = resolve));
    await hosts.serve('social.example', (req) => {
      req.socket.on('close', () => closed());
      arrivals.arrived(); // never answered
    });
    const b = bridge();
    const first = new AbortController();
    const second = new AbortController();
    const p1 = b.lookup('alice@social.example', { signal: first.signal });
    const p2 = b.lookup('alice@social.example', { signal: second.signal });
    await arrivals.reached(1);
    const reason = new Error('the caller gave up');
    first.abort(reason);
    await expect(p1).rejects.toBe(reason);
    second.abort(reason);
    await expect(p2).rejects.toBe(reason);
    await requestClosed; // the request was cancelled, its connection closed
    // An aborted signal is refused before any request.
    await expect(b.lookup('bob@social.example', { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(b.requests).toBe(1);
  });

  it('keeps the shared request for the callers still waiting when one aborts', async () => {
    const held: (() => void)[] = [];
    const arrivals = progress();
    await hosts.serve('social.example', (req, res) => {
      held.push(() => accounts({ 'acct:alice@social.example': mastodonJrd('alice', 'social.example') })(req, res));
      arrivals.arrived();
    });
    const b = bridge();
    const quitter = new AbortController();
    const p1 = b.lookup('alice@social.example', { signal: quitter.signal });
    const p2 = b.lookup('alice@social.example');
    await arrivals.reached(1);
    quitter.abort(new Error('bye'));
    await expect(p1).rejects.toThrow('bye');
    for (const release of held.splice(0)) release();
    expect((await p2).endpoint).toBe('https://social.example/users/alice');
    expect(b.requests).toBe(1);
  });

  it("believes a subject naming another account only when that account's host names the same actor (Mastodon split domain)", async () => {
    // Mastodon with LOCAL_DOMAIN example.org and WEB_DOMAIN social.example, queried at the WEB_DOMAIN.
    const jrd = mastodonJrd('alice', 'example.org', 'social.example');
    await hosts.serve('social.example', accounts({ 'acct:alice@social.example': jrd }));
    const local = await hosts.serve('example.org', accounts({ 'acct:alice@example.org': jrd }));
    const r = await bridge().lookup('alice@social.example');
    expect(r.subject).toBe('acct:alice@example.org');
    expect(r.handle).toBe('alice@social.example');
    expect(r.endpoint).toBe('https://social.example/users/alice');
    expect(local.requests.map((q) => resourceOf(q.url))).toEqual(['acct:alice@example.org']);

    // A host claiming someone else's account: the account's own host names another actor.
    await hosts.serve(
      'evil.example',
      accounts({
        'acct:mallory@evil.example': {
          ...mastodonJrd('victim', 'victim.example'),
          links: [{ rel: 'self', type: 'application/activity+json', href: 'https://evil.example/users/mallory' }],
        },
      }),
    );
    await hosts.serve('victim.example', accounts({ 'acct:victim@victim.example': mastodonJrd('victim', 'victim.example') }));
    const err = await failure(bridge().lookup('mallory@evil.example'));
    expect(err.code).toBe('webfinger_failed');
    expect(err.message).toMatch(/does not confirm/);

    // A subject that is no account at all, and not listed as an alias.
    await hosts.serve(
      'evil.example',
      accounts({ 'acct:mallory@evil.example': { ...mastodonJrd('mallory', 'evil.example'), subject: 'https://evil.example/users/mallory' } }),
    );
    expect((await failure(bridge().lookup('mallory@evil.example'))).message).toMatch(/neither acct:mallory@evil.example/);

    // Listing acct:<handle> among the aliases is the host's own word, as RFC 7033 allows.
    await hosts.serve(
      'evil.example',
      accounts({
        'acct:mallory@evil.example': {
          ...mastodonJrd('mallory', 'evil.example'),
          subject: 'https://evil.example/users/mallory',
          aliases: ['acct:mallory@evil.example'],
        },
      }),
    );
    expect((await bridge().lookup('mallory@evil.example')).subject).toBe('acct:mallory@evil.example');
  });

  it('refuses an invalid handle with invalid_handle and sends nothing', async () => {
    const b = bridge();
    expect((await failure(b.lookup('not a handle'))).code).toBe('invalid_handle');
    expect(b.requests).toBe(0);
  });

  it('reaches a loopback host only with allowPrivate (tests, private deployments), and still only over https', async () => {
    await hosts.serve('localhost', accounts({ 'acct:alice@localhost': mastodonJrd('alice', 'localhost') }));
    const strict = await failure(bridge().lookup('alice@localhost'));
    expect(strict.code).toBe('address_refused');
    const r = await bridge({ allowPrivate: true }).lookup('alice@localhost');
    expect(r.endpoint).toBe('https://localhost/users/alice');
    // Private addresses allowed is not http allowed.
    const other = await hosts.serve('other.example', accounts({}));
    await hosts.serve('localhost', (_req, res) => {
      res.writeHead(302, { location: 'http://other.example/.well-known/webfinger?resource=acct:bob@localhost' });
      res.end();
    });
    expect((await failure(bridge({ allowPrivate: true }).lookup('bob@localhost'))).code).toBe('address_refused');
    expect(other.requests).toHaveLength(0);
  });
});
