import { createHash, generateKeyPairSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { CompactSign, compactVerify, generateKeyPair, exportJWK, importJWK } from 'jose';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requestId as requestIdOf } from '../src/records/change-request.js';
import { checkAnswer } from '../src/client/answers.js';
import { signChangeRequest } from '../src/client/requests.js';
import { ManualClock } from '../src/clock.js';
import { OPERATION_TYP } from '../src/records/jws.js';
import { bridgedJrd, PROFILE_PAGE_REL } from '../src/http/routes/webfinger.js';
import type { PublicJwk } from '../src/records/keys.js';
import {
  deleteChange,
  get,
  HTTP_TIMEOUT_MS,
  maxAge,
  payloadOf,
  postChange,
  putChange,
  registerOk,
  resolveHandle,
  send,
  type HttpResult,
} from './support/http.js';
import { newUserKey, type UserKey } from './support/keys.js';
import { startTestServer, type TestServer } from './support/server.js';
import { errorCode } from './support/errors.js';

// One real server, several zones with different policies; each test uses its own handles.
let s: TestServer;

beforeAll(async () => {
  s = await startTestServer({
    zones: {
      'example.com': {},
      'example.org': {},
      'invite.example': { policy: 'invite' },
      'closed.example': { policy: 'closed' },
      'bulk.example': {},
      localhost: { allowLoopbackEndpoints: true },
    },
  });
});
afterAll(async () => s?.close());

/** The zone key thumbprints as a trust anchor, so checkAnswer reports `anchored`. */
function anchors(...zones: string[]): Map<string, string[]> {
  return new Map(zones.map((z) => [z, s.ctx.zones.info(z).keyThumbprints]));
}

/** The independent name hash of docs/protocol.md section 4: hex SHA-256(salt || 0x00 || handle). */
function nameHashOf(salt: string, handle: string): string {
  return createHash('sha256')
    .update(Buffer.concat([Buffer.from(salt, 'utf8'), Buffer.from([0]), Buffer.from(handle, 'utf8')]))
    .digest('hex');
}

/** Flips one bit of the decoded signature bytes (not of a base64 character, which might be padding bits). */
function tamperSignature(jws: string): string {
  const [h, p, sig] = jws.split('.') as [string, string, string];
  const bytes = Buffer.from(sig, 'base64url');
  bytes[10] = bytes[10]! ^ 0x01;
  return `${h}.${p}.${bytes.toString('base64url')}`;
}

/** Replaces a JWS payload, keeping the original header and signature. */
function withPayload(jws: string, payload: unknown): string {
  const [h, , sig] = jws.split('.') as [string, string, string];
  return `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${sig}`;
}

/** What must not change when a request is refused: each zone's signed record (serial, digest) and each handle's answer. */
async function snapshot(zones: string[], handles: string[]): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const z of zones) {
    const r = await get(s.url, `/v1/zones/${z}`);
    expect(r.status).toBe(200);
    out[`zone ${z}`] = { serial: r.json.serial, record: r.json.record };
  }
  for (const h of handles) {
    const r = await resolveHandle(s.url, h);
    out[`handle ${h}`] = { status: r.status, body: r.text };
  }
  return out;
}

/** Runs `act`, asserts it was refused with `status` and the JSON error `code`, and that nothing changed. */
async function expectRefusedUnchanged(
  watch: { zones: string[]; handles: string[] },
  act: () => Promise<HttpResult>,
  status: number,
  code: string,
): Promise<HttpResult> {
  const before = await snapshot(watch.zones, watch.handles);
  const res = await act();
  expect({ status: res.status, code: res.json?.error?.code }).toEqual({ status, code });
  expect(typeof res.json.error.message).toBe('string');
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(await snapshot(watch.zones, watch.handles)).toEqual(before);
  return res;
}

describe('answers and denials', () => {
  const alice = newUserKey();
  const others = Array.from({ length: 6 }, () => newUserKey());
  let aliceReg: { op: string; serial: number; record: string };

  beforeAll(async () => {
    aliceReg = await registerOk(s.url, alice, 'alice@example.com', { endpoint: 'https://social.example/users/alice' });
    // Several handles, so a denial lists several name hashes and does not cover every name.
    for (const [i, k] of others.entries()) await registerOk(s.url, k, `other${i}@example.com`);
  });

  it('answers a registered handle with a record that checkAnswer verifies against the zone key', async () => {
    const res = await resolveHandle(s.url, 'alice@example.com');
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'answer', zone: 'example.com', record: aliceReg.record });
    const zone = await get(s.url, '/v1/zones/example.com');
    expect(res.json.serial).toBe(zone.json.serial);
    expect(res.json.zoneRecord).toBe(zone.json.record);

    const checked = checkAnswer(res.json, 'alice@example.com', anchors('example.com'));
    expect(checked.status).toBe('answer');
    expect(checked.anchored).toBe(true);
    if (checked.status !== 'answer') throw new Error('unreachable');
    expect(checked.record).toMatchObject({
      handle: 'alice@example.com',
      endpoint: 'https://social.example/users/alice',
      keys: [alice.public],
      op: aliceReg.op,
    });
  });

  it('answers the handle under any spelling of the same normalised name', async () => {
    const res = await resolveHandle(s.url, 'Alice@Example.COM');
    expect(res.status).toBe(200);
    expect(res.json.record).toBe(aliceReg.record);
  });

  it('denies an unknown handle with a signed denial that covers its name hash', async () => {
    const res = await resolveHandle(s.url, 'nobody@example.com');
    expect(res.status).toBe(404);
    expect(res.json).toMatchObject({ status: 'denial', zone: 'example.com' });
    const checked = checkAnswer(res.json, 'nobody@example.com', anchors('example.com'));
    expect(checked.status).toBe('denial');
    expect(checked.anchored).toBe(true);

    // The gap, checked independently of src/: hash as docs/protocol.md section 4 defines it.
    const denial = payloadOf(res.json.record);
    const zoneRecord = payloadOf(res.json.zoneRecord);
    expect(denial.type).toBe('denial');
    expect(denial.hash).toEqual(zoneRecord.denial);
    const h = nameHashOf(zoneRecord.denial.salt, 'nobody@example.com');
    expect(denial.after === null || denial.after < h).toBe(true);
    expect(denial.next === null || h < denial.next).toBe(true);
    // The denial lists the zone's name hashes in its range, ascending, and this name's is not among them.
    const listed = denial.hashes as string[];
    expect(listed).toEqual([...listed].sort());
    expect(listed).not.toContain(h);
    // With seven handles, alice's hash is listed or bounds the range.
    expect([denial.after, ...listed, denial.next]).toContain(nameHashOf(zoneRecord.denial.salt, 'alice@example.com'));
    // A denial names no handle.
    expect(res.json.record.includes('other')).toBe(false);
    expect(JSON.stringify(denial)).not.toMatch(/@/);
  });

  it('refuses a real denial presented for a handle that exists (verification_failed)', async () => {
    const res = await resolveHandle(s.url, 'nobody@example.com');
    // alice's hash is one of the zone's names: listed in the denial or one of its bounds, never covered.
    expect(errorCode(() => checkAnswer(res.json, 'alice@example.com', anchors('example.com')))).toBe('verification_failed');
    expect(checkAnswer(res.json, 'nobody@example.com', anchors('example.com')).status).toBe('denial');
  });

  it('refuses a denial whose range or list was altered (verification_failed)', async () => {
    const res = await resolveHandle(s.url, 'nobody@example.com');
    const denial = payloadOf(res.json.record);
    // Widen the range to the whole hash space and empty the list, which would "deny" every name, alice included.
    const widened = { ...res.json, record: withPayload(res.json.record, { ...denial, after: null, next: null, hashes: [] }) };
    expect(errorCode(() => checkAnswer(widened, 'alice@example.com', anchors('example.com')))).toBe('verification_failed');
    const shifted = { ...res.json, record: withPayload(res.json.record, { ...denial, after: '0'.repeat(64) }) };
    expect(errorCode(() => checkAnswer(shifted, 'nobody@example.com', anchors('example.com')))).toBe('verification_failed');
    // The untouched denial still verifies, so the failures above come from the alteration.
    expect(checkAnswer(res.json, 'nobody@example.com', anchors('example.com')).status).toBe('denial');
  });

  it("refuses one handle's answer presented for another handle (verification_failed)", async () => {
    const res = await resolveHandle(s.url, 'alice@example.com');
    expect(errorCode(() => checkAnswer(res.json, 'other0@example.com', anchors('example.com')))).toBe('verification_failed');
  });

  it('sets Cache-Control max-age to the handle ttl (3600) for an answer and the zone minimum (300) for a denial', async () => {
    const answer = await resolveHandle(s.url, 'alice@example.com');
    expect(maxAge(answer.headers['cache-control'])).toBe(3600);
    expect(answer.json.ttl).toBe(3600);
    const denial = await resolveHandle(s.url, 'nobody@example.com');
    expect(maxAge(denial.headers['cache-control'])).toBe(300);
    expect(denial.json.ttl).toBe(300);
  });

  it('answers If-None-Match with a matching ETag with 304 and no body, for answers and denials', async () => {
    for (const h of ['alice@example.com', 'nobody@example.com']) {
      const first = await resolveHandle(s.url, h);
      const etag = first.headers.etag;
      expect(etag).toMatch(/^"[^"]+"$/);
      const again = await resolveHandle(s.url, h, { 'if-none-match': etag! });
      expect(again.status).toBe(304);
      expect(again.text).toBe('');
      expect(again.headers.etag).toBe(etag);
      const other = await resolveHandle(s.url, h, { 'if-none-match': '"something-else"' });
      expect(other.status).toBe(first.status);
      expect(other.text).toBe(first.text);
    }
  });

  it('matches If-None-Match as RFC 9110 says: a list of tags, a weak tag, and *', async () => {
    const first = await resolveHandle(s.url, 'alice@example.com');
    const etag = first.headers.etag!;
    expect(first.headers['cache-control']).toBeDefined();
    const statuses: Record<string, number> = {};
    for (const header of [`"other", ${etag}`, `W/${etag}`, '*']) {
      const res = await resolveHandle(s.url, 'alice@example.com', { 'if-none-match': header });
      statuses[header] = res.status;
      if (res.status === 304) expect(maxAge(res.headers['cache-control'])).toBe(3600);
    }
    expect(statuses).toEqual({ [`"other", ${etag}`]: 304, [`W/${etag}`]: 304, '*': 304 });
    // A list that does not contain the tag still gets the body.
    expect((await resolveHandle(s.url, 'alice@example.com', { 'if-none-match': '"a", "b"' })).status).toBe(200);
  });

  it('changes the ETag after an update, so a stale If-None-Match gets the new answer', async () => {
    const owner = newUserKey();
    const reg = await registerOk(s.url, owner, 'etag@example.com');
    const before = await resolveHandle(s.url, 'etag@example.com');
    const update = signChangeRequest(
      { action: 'update', handle: 'etag@example.com', endpoint: 'https://other.example/etag', keys: [owner.public], prev: reg.op },
      owner.private,
    );
    expect((await putChange(s.url, 'etag@example.com', update)).status).toBe(200);
    const after = await resolveHandle(s.url, 'etag@example.com', { 'if-none-match': before.headers.etag! });
    expect(after.status).toBe(200);
    expect(after.headers.etag).not.toBe(before.headers.etag);
    expect(payloadOf(after.json.record).endpoint).toBe('https://other.example/etag');
  });
});

describe('WebFinger', () => {
  const wf = (query: string) => get(s.url, `/.well-known/webfinger${query}`);
  const endpoint = 'https://social.example/users/wanda';

  beforeAll(async () => {
    await registerOk(s.url, newUserKey(), 'wanda@example.com', { endpoint });
  });

  it('returns a JRD with the subject, a self link to the endpoint, CORS * and application/jrd+json', async () => {
    const res = await wf(`?resource=${encodeURIComponent('acct:wanda@example.com')}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/jrd\+json/);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    expect(res.json.subject).toBe('acct:wanda@example.com');
    const self = (res.json.links as { rel: string; href: string }[]).filter((l) => l.rel === 'self');
    expect(self).toHaveLength(1);
    expect(self[0]!.href).toBe(endpoint);
    // The signed record rides along and is the one /v1/resolve serves.
    const answer = await resolveHandle(s.url, 'wanda@example.com');
    expect(res.json.properties['https://idns.dev/ns/record']).toBe(answer.json.record);
  });

  it('normalises the resource handle', async () => {
    const res = await wf(`?resource=${encodeURIComponent('acct:Wanda@EXAMPLE.com')}`);
    expect(res.status).toBe(200);
    expect(res.json.subject).toBe('acct:wanda@example.com');
  });

  it('answers an unknown handle with a 404 JSON error that carries CORS', async () => {
    const res = await wf(`?resource=${encodeURIComponent('acct:ghost@example.com')}`);
    expect(res.status).toBe(404);
    expect(res.json.error.code).toBe('handle_not_found');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['access-control-allow-origin']).toBe('*');
  });

  it.each([
    ['missing resource', ''],
    ['empty resource', '?resource='],
    ['mailto: URI', `?resource=${encodeURIComponent('mailto:x')}`],
    ['an http URL of a public host', `?resource=${encodeURIComponent('http://social.example/users/wanda')}`],
    ['an https URL with credentials', `?resource=${encodeURIComponent('https://u:p@social.example/users/wanda')}`],
    ['an https URL with a fragment', `?resource=${encodeURIComponent('https://social.example/users/wanda#x')}`],
    ['an https URL of an IP address', `?resource=${encodeURIComponent('https://169.254.169.254/latest')}`],
    ['an https URL over 2,048 characters', `?resource=${encodeURIComponent(`https://social.example/${'a'.repeat(2048)}`)}`],
    ['an ftp URL', `?resource=${encodeURIComponent('ftp://social.example/wanda')}`],
    ['space in the handle', `?resource=${encodeURIComponent('acct:bad handle@x')}`],
    ['two @', `?resource=${encodeURIComponent('acct:a@b@c')}`],
    ['acct: with no handle', `?resource=${encodeURIComponent('acct:')}`],
  ])('refuses a bad resource (%s) with 400 invalid_resource and CORS', async (_name, query) => {
    const res = await wf(query);
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('invalid_resource');
    expect(res.headers['access-control-allow-origin']).toBe('*');
  });

  it('answers 421 not_authoritative for a handle in no zone held here', async () => {
    const res = await wf(`?resource=${encodeURIComponent('acct:x@example.net')}`);
    expect(res.status).toBe(421);
    expect(res.json.error.code).toBe('not_authoritative');
    expect(res.headers['access-control-allow-origin']).toBe('*');
  });

  it('filters links by rel', async () => {
    const acct = `resource=${encodeURIComponent('acct:wanda@example.com')}`;
    const self = await wf(`?${acct}&rel=self`);
    expect(self.json.links.map((l: { rel: string }) => l.rel)).toEqual(['self']);
    const profile = await wf(`?${acct}&rel=${encodeURIComponent('http://webfinger.net/rel/profile-page')}`);
    expect(profile.status).toBe(200);
    expect(profile.json.links).toEqual([]);
    expect(profile.json.subject).toBe('acct:wanda@example.com');
    const both = await wf(`?${acct}&rel=${encodeURIComponent('http://webfinger.net/rel/profile-page')}&rel=self`);
    expect(both.json.links.map((l: { rel: string }) => l.rel)).toEqual(['self']);
  });
});

describe('WebFinger: Mastodon-shaped JRD and lookup by actor URL', () => {
  const wf = (query: string) => get(s.url, `/.well-known/webfinger${query}`);
  const acct = (handle: string) => `?resource=${encodeURIComponent(`acct:${handle}`)}`;
  const byUrl = (url: string) => `?resource=${encodeURIComponent(url)}`;
  const actor = 'https://social.example/users/mona';
  const profile = 'https://social.example/@mona';
  let mona: UserKey;
  let monaOp: string;

  beforeAll(async () => {
    mona = newUserKey();
    const jws = signChangeRequest(
      {
        action: 'register',
        handle: 'mona@example.com',
        endpoint: actor,
        keys: [mona.public],
        profile,
        alsoKnownAs: ['mona@example.org', 'https://old.example/users/mona'],
        movedTo: 'mona@example.org',
      },
      mona.private,
    );
    const res = await postChange(s.url, jws);
    expect(res.status, res.text).toBe(201);
    monaOp = res.json.op;
  });

  it('has aliases (profile, actor, alsoKnownAs), a profile-page link, the self link, the record and the move', async () => {
    const res = await wf(acct('mona@example.com'));
    expect(res.status).toBe(200);
    const record = (await resolveHandle(s.url, 'mona@example.com')).json.record;
    expect(res.json).toEqual({
      subject: 'acct:mona@example.com',
      aliases: [profile, actor, 'acct:mona@example.org', 'https://old.example/users/mona'],
      links: [
        { rel: 'http://webfinger.net/rel/profile-page', type: 'text/html', href: profile },
        { rel: 'self', type: 'application/activity+json', href: actor },
      ],
      properties: { 'https://idns.dev/ns/record': record, 'https://idns.dev/ns/movedTo': 'acct:mona@example.org' },
    });
    // The links are the owner's: signed in the record the JRD carries.
    expect(payloadOf(record)).toMatchObject({ profile, alsoKnownAs: ['mona@example.org', 'https://old.example/users/mona'], movedTo: 'mona@example.org' });
  });

  it('a handle without links has its actor URL as its only alias and no profile-page link', async () => {
    await registerOk(s.url, newUserKey(), 'nils@example.com', { endpoint: 'https://social.example/users/nils' });
    const res = await wf(acct('nils@example.com'));
    expect(res.json.aliases).toEqual(['https://social.example/users/nils']);
    expect(res.json.links).toEqual([{ rel: 'self', type: 'application/activity+json', href: 'https://social.example/users/nils' }]);
    expect(Object.keys(res.json.properties)).toEqual(['https://idns.dev/ns/record']);
  });

  it('filters links by rel, the profile page included', async () => {
    const only = await wf(`${acct('mona@example.com')}&rel=${encodeURIComponent('http://webfinger.net/rel/profile-page')}`);
    expect(only.json.links).toEqual([{ rel: 'http://webfinger.net/rel/profile-page', type: 'text/html', href: profile }]);
    expect(only.json.aliases).toHaveLength(4);
    const self = await wf(`${acct('mona@example.com')}&rel=self`);
    expect(self.json.links.map((l: { rel: string }) => l.rel)).toEqual(['self']);
  });

  it('answers resource=<actor URL> with the JRD of the handle whose endpoint it is', async () => {
    const res = await wf(byUrl(actor));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/jrd\+json/);
    expect(res.headers['access-control-allow-origin']).toBe('*');
    expect(maxAge(res.headers['cache-control'])).toBeGreaterThan(0);
    expect(res.json).toEqual((await wf(acct('mona@example.com'))).json);
    // Exactly the endpoint: another URL of the same server, or the profile page, names no handle.
    for (const other of [`${actor}/`, 'https://social.example/users/MONA', profile, 'https://social.example/users/nobody']) {
      const miss = await wf(byUrl(other));
      expect([other, miss.status, miss.json.error?.code]).toEqual([other, 404, 'handle_not_found']);
      expect(miss.headers['access-control-allow-origin']).toBe('*');
    }
  });

  it('follows the endpoint through updates and deletion (the index is kept with the record)', async () => {
    const key = newUserKey();
    const first = 'https://social.example/users/otto';
    const second = 'https://elsewhere.example/actors/otto';
    const reg = await registerOk(s.url, key, 'otto@example.org', { endpoint: first });
    expect((await wf(byUrl(first))).json.subject).toBe('acct:otto@example.org');
    const update = signChangeRequest({ action: 'update', handle: 'otto@example.org', endpoint: second, keys: [key.public], prev: reg.op }, key.private);
    const updated = await putChange(s.url, 'otto@example.org', update);
    expect(updated.status).toBe(200);
    expect((await wf(byUrl(first))).status).toBe(404);
    expect((await wf(byUrl(second))).json.subject).toBe('acct:otto@example.org');
    const del = signChangeRequest({ action: 'delete', handle: 'otto@example.org', prev: updated.json.op }, key.private);
    expect((await deleteChange(s.url, 'otto@example.org', del)).status).toBe(200);
    expect((await wf(byUrl(second))).status).toBe(404);
  });

  it('answers 404 when several handles held here share the endpoint: an endpoint names no handle by itself', async () => {
    const shared = 'https://social.example/users/twin';
    await registerOk(s.url, newUserKey(), 'twin@example.com', { endpoint: shared });
    expect((await wf(byUrl(shared))).json.subject).toBe('acct:twin@example.com');
    // Anyone may list someone else's actor URL as their endpoint; that must not take over the answer.
    await registerOk(s.url, newUserKey(), 'copycat@example.org', { endpoint: shared });
    const res = await wf(byUrl(shared));
    expect(res.status).toBe(404);
    expect(res.json.error.code).toBe('handle_not_found');
    expect(res.json.error.message).toContain('more than one handle');
  });

  it('sets, keeps and clears the links by signed updates over HTTP; a bad one is refused and changes nothing', async () => {
    const key = newUserKey();
    const handle = 'ute@example.com';
    const endpoint = 'https://social.example/users/ute';
    let op = (await registerOk(s.url, key, handle, { endpoint })).op;
    const update = async (links: Record<string, unknown>) => {
      const res = await putChange(
        s.url,
        handle,
        signChangeRequest({ action: 'update', handle, endpoint, keys: [key.public], prev: op, ...links }, key.private),
      );
      if (res.status === 200) op = res.json.op;
      return res;
    };
    const current = async () => payloadOf((await resolveHandle(s.url, handle)).json.record);

    expect((await update({ alsoKnownAs: ['ute@example.org'], movedTo: 'ute@example.org', profile: 'https://social.example/@ute' })).status).toBe(200);
    expect(await current()).toMatchObject({ alsoKnownAs: ['ute@example.org'], movedTo: 'ute@example.org', profile: 'https://social.example/@ute' });
    expect((await wf(acct(handle))).json.properties['https://idns.dev/ns/movedTo']).toBe('acct:ute@example.org');

    for (const [name, links] of [
      ['a move to itself', { movedTo: handle }],
      ['nine aliases', { alsoKnownAs: Array.from({ length: 9 }, (_, i) => `u${i}@example.org`) }],
      ['an alias URL over http', { alsoKnownAs: ['http://social.example/users/ute'] }],
      ['an alias of the handle itself', { alsoKnownAs: [handle] }],
      ['a profile with a fragment', { profile: 'https://social.example/@ute#top' }],
    ] as [string, Record<string, unknown>][]) {
      const serial = (await resolveHandle(s.url, handle)).json.serial;
      const res = await update(links);
      expect([name, res.status, res.json.error?.code]).toEqual([name, 400, 'invalid_request']);
      expect((await resolveHandle(s.url, handle)).json.serial).toBe(serial);
    }

    // A request states the whole new state: links left out are cleared.
    expect((await update({ alsoKnownAs: ['ute@example.org'] })).status).toBe(200);
    const kept = await current();
    expect(kept.alsoKnownAs).toEqual(['ute@example.org']);
    expect(kept).not.toHaveProperty('movedTo');
    expect(kept).not.toHaveProperty('profile');
    expect((await update({})).status).toBe(200);
    const cleared = await current();
    for (const field of ['alsoKnownAs', 'movedTo', 'profile']) expect(cleared).not.toHaveProperty(field);
    const jrd = (await wf(acct(handle))).json;
    expect(jrd.aliases).toEqual([endpoint]);
    expect(jrd.properties).not.toHaveProperty('https://idns.dev/ns/movedTo');
  });

  it('gives a bridged handle (resolver role) the same JRD shape from what its host said, without properties', () => {
    const bridged = {
      handle: 'me@example.org',
      status: 'found' as const,
      zone: null,
      endpoint: 'https://social.example/users/alice',
      aliases: ['https://social.example/@alice', 'https://social.example/users/alice'],
      profile: 'https://social.example/@alice',
      subject: 'acct:alice@social.example',
      ttl: 60,
      verified: false as const,
      source: 'webfinger' as const,
      stale: false,
    };
    expect(bridgedJrd(bridged, [])).toEqual({
      subject: 'acct:alice@social.example',
      aliases: ['https://social.example/@alice', 'https://social.example/users/alice'],
      links: [
        { rel: 'http://webfinger.net/rel/profile-page', type: 'text/html', href: 'https://social.example/@alice' },
        { rel: 'self', type: 'application/activity+json', href: 'https://social.example/users/alice' },
      ],
    });
    const { profile: _p, ...noProfile } = bridged;
    expect(bridgedJrd(noProfile, ['self']).links).toEqual([{ rel: 'self', type: 'application/activity+json', href: 'https://social.example/users/alice' }]);
    expect(bridgedJrd(noProfile, [PROFILE_PAGE_REL]).links).toEqual([]);
  });

  it('refuses a delete request that carries links', async () => {
    const payload = { v: 1, action: 'delete', handle: 'mona@example.com', prev: monaOp, iat: Math.floor(Date.now() / 1000), movedTo: 'mona@example.org' };
    const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
      .setProtectedHeader({ alg: 'EdDSA', typ: OPERATION_TYP, kid: mona.kid })
      .sign(await importJWK({ ...mona.private }, 'EdDSA'));
    const res = await deleteChange(s.url, 'mona@example.com', jws);
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('invalid_request');
    expect((await resolveHandle(s.url, 'mona@example.com')).status).toBe(200);
  });
});

describe('GET /v1/zones/{zone}', () => {
  it('returns the signed zone record whose payload serial matches, verifiable with jose', async () => {
    const before = await get(s.url, '/v1/zones/example.org');
    expect(before.status).toBe(200);
    expect(before.json.zone).toBe('example.org');
    const p = payloadOf(before.json.record);
    expect(p).toMatchObject({ v: 1, type: 'zone', zone: 'example.org', serial: before.json.serial });
    const key = await importJWK(p.keys[0], 'EdDSA');
    await compactVerify(before.json.record, key, { algorithms: ['EdDSA'] });

    const reg = await registerOk(s.url, newUserKey(), 'zed@example.org');
    const after = await get(s.url, '/v1/zones/example.org');
    expect(after.json.serial).toBe(before.json.serial + 1);
    expect(after.json.serial).toBe(reg.serial);
    expect(payloadOf(after.json.record).serial).toBe(after.json.serial);
    expect(payloadOf(after.json.record).digest).not.toBe(p.digest);
  });

  it('answers 404 zone_not_found for a zone not held here', async () => {
    for (const z of ['nope.example', 'example.net', '_root']) {
      const res = await get(s.url, `/v1/zones/${z}`);
      expect(res.status).toBe(404);
      expect(res.json.error.code).toBe('zone_not_found');
    }
  });
});

describe('several zones on one server', () => {
  it('answers each handle from its own zone, and a zone key does not vouch for the other zone', async () => {
    const kc = newUserKey();
    const ko = newUserKey();
    await registerOk(s.url, kc, 'multi@example.com', { endpoint: 'https://com.example/multi' });
    await registerOk(s.url, ko, 'multi@example.org', { endpoint: 'https://org.example/multi' });
    const com = await resolveHandle(s.url, 'multi@example.com');
    const org = await resolveHandle(s.url, 'multi@example.org');
    expect(com.json.zone).toBe('example.com');
    expect(org.json.zone).toBe('example.org');
    const cc = checkAnswer(com.json, 'multi@example.com', anchors('example.com'));
    const co = checkAnswer(org.json, 'multi@example.org', anchors('example.org'));
    if (cc.status !== 'answer' || co.status !== 'answer') throw new Error('expected answers');
    expect(cc.record.endpoint).toBe('https://com.example/multi');
    expect(co.record.endpoint).toBe('https://org.example/multi');
    expect(s.ctx.zones.info('example.com').keyThumbprints).not.toEqual(s.ctx.zones.info('example.org').keyThumbprints);
    // example.org's answer anchored at example.com's key must not verify.
    const wrongAnchor = new Map([['example.org', s.ctx.zones.info('example.com').keyThumbprints]]);
    expect(errorCode(() => checkAnswer(org.json, 'multi@example.org', wrongAnchor))).toBe('verification_failed');
  });

  it('puts a handle under sub.example.com in example.com', async () => {
    const k = newUserKey();
    const ok = await registerOk(s.url, k, 'deep@sub.example.com');
    expect(payloadOf(ok.record).zone).toBe('example.com');
    const res = await resolveHandle(s.url, 'deep@sub.example.com');
    expect(res.status).toBe(200);
    expect(res.json.zone).toBe('example.com');
    expect(checkAnswer(res.json, 'deep@sub.example.com', anchors('example.com')).status).toBe('answer');
    const denied = await resolveHandle(s.url, 'ghost@a.b.sub.example.com');
    expect(denied.status).toBe(404);
    expect(denied.json.zone).toBe('example.com');
    expect(checkAnswer(denied.json, 'ghost@a.b.sub.example.com', anchors('example.com')).status).toBe('denial');
  });

  it('answers 421 not_authoritative for x@example.net', async () => {
    const res = await resolveHandle(s.url, 'x@example.net');
    expect(res.status).toBe(421);
    expect(res.json.error.code).toBe('not_authoritative');
  });
});

describe('bad input and faults: refused with the JSON error, nothing changes', () => {
  const carol = newUserKey();
  let carolOp: string;
  const watch = { zones: ['example.com', 'invite.example', 'closed.example'], handles: ['carol@example.com', 'newbie@example.com'] };
  const newbie = newUserKey();
  const newbieRegister = (extra: Partial<{ endpoint: string; keys: unknown[]; invite: string; handle: string }> = {}, clock?: ManualClock) =>
    signChangeRequest(
      {
        action: 'register',
        handle: extra.handle ?? 'newbie@example.com',
        endpoint: extra.endpoint ?? 'https://social.example/newbie',
        keys: (extra.keys ?? [newbie.public]) as PublicJwk[],
        ...(extra.invite === undefined ? {} : { invite: extra.invite }),
      },
      newbie.private,
      clock,
    );
  const carolUpdate = (endpoint: string, prev = carolOp, key: UserKey = carol, clock?: ManualClock) =>
    signChangeRequest({ action: 'update', handle: 'carol@example.com', endpoint, keys: [carol.public], prev }, key.private, clock);

  beforeAll(async () => {
    carolOp = (await registerOk(s.url, carol, 'carol@example.com')).op;
  });

  it('body over 64 KiB: 413 payload_too_large', async () => {
    const raw = JSON.stringify({ request: 'x'.repeat(70 * 1024) });
    await expectRefusedUnchanged(watch, () => send(s.url, 'POST', '/v1/handles', { raw }), 413, 'payload_too_large');
    // Also when the size is not announced (chunked body): the limit is enforced while reading.
    await expectRefusedUnchanged(
      watch,
      async () => {
        const res = await request(`${s.url}/v1/handles/carol@example.com`, {
          method: 'PUT',
          headers: { 'content-type': 'application/json' },
          body: Readable.from([Buffer.from('{"request":"'), Buffer.alloc(70 * 1024, 'x'), Buffer.from('"}')]),
          signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
        });
        const text = await res.body.text();
        return { status: res.statusCode, headers: { 'content-type': String(res.headers['content-type']) }, text, json: JSON.parse(text) };
      },
      413,
      'payload_too_large',
    );
  });

  it('malformed JSON: 400 invalid_json', async () => {
    await expectRefusedUnchanged(watch, () => send(s.url, 'POST', '/v1/handles', { raw: `{"request": "${newbieRegister()}"` }), 400, 'invalid_json');
    await expectRefusedUnchanged(watch, () => send(s.url, 'PUT', '/v1/handles/carol@example.com', { raw: 'request=abc' }), 400, 'invalid_json');
  });

  it.each([
    ['an empty object', '{}'],
    ['request not a string', '{"request": 5}'],
    ['an array', '[]'],
    ['a string', '"abc"'],
    ['null', 'null'],
    ['a misspelt member', '{"req": "a.b.c"}'],
  ])('body not {request} (%s): 400 invalid_request', async (_name, raw) => {
    await expectRefusedUnchanged(watch, () => send(s.url, 'POST', '/v1/handles', { raw }), 400, 'invalid_request');
  });

  it.each([
    ['no dots', 'not-a-jws'],
    ['two parts', 'eyJhbGciOiJFZERTQSJ9.e30'],
    ['four parts', 'a.b.c.d'],
    ['not base64url', 'a+b.c/d.e=f'],
    ['header not JSON', `${Buffer.from('nope').toString('base64url')}.${Buffer.from('{}').toString('base64url')}.${Buffer.alloc(64).toString('base64url')}`],
    ['alg none', `${Buffer.from('{"alg":"none","typ":"idns-op"}').toString('base64url')}.${Buffer.from('{}').toString('base64url')}.`],
  ])('a JWS that does not parse (%s): 400 invalid_jws', async (_name, jws) => {
    await expectRefusedUnchanged(watch, () => postChange(s.url, jws), 400, 'invalid_jws');
  });

  it('a request signed with ES256 (not Ed25519): 400 invalid_jws', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const payload = {
      v: 1,
      action: 'register',
      handle: 'newbie@example.com',
      endpoint: 'https://social.example/n',
      keys: [await exportJWK(publicKey)],
      prev: null,
      iat: Math.floor(Date.now() / 1000),
    };
    const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
      .setProtectedHeader({ alg: 'ES256', typ: OPERATION_TYP, jwk: await exportJWK(publicKey) })
      .sign(privateKey);
    await expectRefusedUnchanged(watch, () => postChange(s.url, jws), 400, 'invalid_jws');
  });

  it('a signature that does not verify: 403 invalid_signature (register and update)', async () => {
    await expectRefusedUnchanged(watch, () => postChange(s.url, tamperSignature(newbieRegister())), 403, 'invalid_signature');
    await expectRefusedUnchanged(
      watch,
      () => putChange(s.url, 'carol@example.com', tamperSignature(carolUpdate('https://evil.example/'))),
      403,
      'invalid_signature',
    );
  });

  it('a key that is not Ed25519, or carries a private member: 400 invalid_key', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    const x25519 = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
    const ed448 = generateKeyPairSync('ed448').publicKey.export({ format: 'jwk' });
    for (const bad of [rsa, p256, x25519, ed448, newbie.private, { ...newbie.public, x: 'AAAA' }]) {
      await expectRefusedUnchanged(watch, () => postChange(s.url, newbieRegister({ keys: [newbie.public, bad] })), 400, 'invalid_key');
    }
    // The same on update: carol cannot add an RSA key either.
    const update = signChangeRequest(
      { action: 'update', handle: 'carol@example.com', endpoint: 'https://x.example/', keys: [carol.public, rsa as unknown as PublicJwk], prev: carolOp },
      carol.private,
    );
    await expectRefusedUnchanged(watch, () => putChange(s.url, 'carol@example.com', update), 400, 'invalid_key');
  });

  it('a handle in a zone not hosted here: 421 not_authoritative', async () => {
    await expectRefusedUnchanged(watch, () => postChange(s.url, newbieRegister({ handle: 'newbie@example.net' })), 421, 'not_authoritative');
  });

  it('a duplicate registration: 409 handle_exists (and the same request again: 409 replayed)', async () => {
    const mallory = newUserKey();
    const dup = signChangeRequest(
      { action: 'register', handle: 'carol@example.com', endpoint: 'https://evil.example/', keys: [mallory.public] },
      mallory.private,
    );
    await expectRefusedUnchanged(watch, () => postChange(s.url, dup), 409, 'handle_exists');
    // Also under another spelling of the same handle.
    const dup2 = signChangeRequest(
      { action: 'register', handle: 'CAROL@Example.Com', endpoint: 'https://evil.example/', keys: [mallory.public] },
      mallory.private,
    );
    await expectRefusedUnchanged(watch, () => postChange(s.url, dup2), 409, 'handle_exists');
  });

  it('an update signed by a key not on the handle: 403 unauthorized_key', async () => {
    const mallory = newUserKey();
    const forged = signChangeRequest(
      { action: 'update', handle: 'carol@example.com', endpoint: 'https://evil.example/', keys: [mallory.public], prev: carolOp },
      mallory.private,
    );
    await expectRefusedUnchanged(watch, () => putChange(s.url, 'carol@example.com', forged), 403, 'unauthorized_key');
    const del = signChangeRequest({ action: 'delete', handle: 'carol@example.com', prev: carolOp }, mallory.private);
    await expectRefusedUnchanged(watch, () => deleteChange(s.url, 'carol@example.com', del), 403, 'unauthorized_key');
  });

  it('a replayed update: 409 replayed', async () => {
    const owner = newUserKey();
    const reg = await registerOk(s.url, owner, 'replay@example.com');
    const update = signChangeRequest(
      { action: 'update', handle: 'replay@example.com', endpoint: 'https://social.example/v2', keys: [owner.public], prev: reg.op },
      owner.private,
    );
    expect((await putChange(s.url, 'replay@example.com', update)).status).toBe(200);
    const w = { zones: watch.zones, handles: [...watch.handles, 'replay@example.com'] };
    await expectRefusedUnchanged(w, () => putChange(s.url, 'replay@example.com', update), 409, 'replayed');
    // And a replayed registration.
    await expectRefusedUnchanged(w, () => postChange(s.url, reg.jws), 409, 'replayed');
    // An older update replayed after a newer one is recognised in the handle's history, not called stale.
    const again = signChangeRequest(
      { action: 'update', handle: 'replay@example.com', endpoint: 'https://social.example/v3', keys: [owner.public], prev: requestIdOf(update) },
      owner.private,
    );
    expect((await putChange(s.url, 'replay@example.com', again)).status).toBe(200);
    await expectRefusedUnchanged(w, () => putChange(s.url, 'replay@example.com', update), 409, 'replayed');
  });

  it('a re-encoded copy of an accepted request (same signature bytes, other base64url padding bits) is refused and cannot resurrect a deleted handle', async () => {
    const owner = newUserKey();
    const h = 'phoenix@example.com';
    const reg = await registerOk(s.url, owner, h);
    const del = signChangeRequest({ action: 'delete', handle: h, prev: reg.op }, owner.private);
    expect((await deleteChange(s.url, h, del)).status).toBe(200);
    // The last of the 86 base64url characters of an Ed25519 signature carries 4 unused bits: 15 other spellings decode to the same bytes.
    const [hd, pl, sig] = reg.jws.split('.') as [string, string, string];
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const variant = [...alphabet]
      .map((c) => `${sig.slice(0, -1)}${c}`)
      .find((v) => v !== sig && Buffer.from(v, 'base64url').equals(Buffer.from(sig, 'base64url')));
    expect(variant).toBeDefined();
    const replay = `${hd}.${pl}.${variant!}`;
    // Within the iat window, the owner's deleted handle must not come back by a replay of her old registration.
    const before = await snapshot(['example.com'], [h]);
    const res = await postChange(s.url, replay);
    // Either fix is right: recognise the copy as the same request (409 replayed), or refuse non-canonical base64url (400 invalid_jws).
    expect([
      { status: 409, code: 'replayed' },
      { status: 400, code: 'invalid_jws' },
    ]).toContainEqual({ status: res.status, code: res.json?.error?.code });
    expect(await snapshot(['example.com'], [h])).toEqual(before);
  });

  it('a stale prev: 409 stale_prev with the current op in details', async () => {
    const res = await expectRefusedUnchanged(
      watch,
      () => putChange(s.url, 'carol@example.com', carolUpdate('https://social.example/c2', 'A'.repeat(43))),
      409,
      'stale_prev',
    );
    expect(res.json.error.details.current).toBe(carolOp);
  });

  it('iat more than 5 minutes off: 400 iat_out_of_range', async () => {
    for (const offset of [10 * 60_000, -10 * 60_000]) {
      const clock = new ManualClock(Date.now() + offset);
      await expectRefusedUnchanged(watch, () => postChange(s.url, newbieRegister({}, clock)), 400, 'iat_out_of_range');
      const res = await expectRefusedUnchanged(
        watch,
        () => putChange(s.url, 'carol@example.com', carolUpdate('https://social.example/c3', carolOp, carol, clock)),
        400,
        'iat_out_of_range',
      );
      expect(Math.abs(res.json.error.details.serverTime - Date.now() / 1000)).toBeLessThan(60);
    }
  });

  it('an invite code used twice: 403 invite_invalid on the second', async () => {
    const { code } = s.ctx.zones.createInvite('invite.example');
    const first = newUserKey();
    await registerOk(s.url, first, 'first@invite.example', { invite: code });
    const second = newUserKey();
    const again = signChangeRequest(
      { action: 'register', handle: 'second@invite.example', endpoint: 'https://social.example/2', keys: [second.public], invite: code },
      second.private,
    );
    const w = { zones: watch.zones, handles: ['first@invite.example', 'second@invite.example'] };
    await expectRefusedUnchanged(w, () => postChange(s.url, again), 403, 'invite_invalid');
    // A code never issued, and a code of another zone, are refused the same way.
    const forged = signChangeRequest(
      { action: 'register', handle: 'second@invite.example', endpoint: 'https://social.example/2', keys: [second.public], invite: 'inv_made_up' },
      second.private,
    );
    await expectRefusedUnchanged(w, () => postChange(s.url, forged), 403, 'invite_invalid');
  });

  it('a code of another zone is not valid here: 403 invite_invalid, and the code stays usable in its zone', async () => {
    s.ctx.zones.setPolicy('example.org', 'invite');
    try {
      const { code } = s.ctx.zones.createInvite('example.org');
      const k = newUserKey();
      const wrongZone = signChangeRequest(
        { action: 'register', handle: 'cross@invite.example', endpoint: 'https://social.example/x', keys: [k.public], invite: code },
        k.private,
      );
      await expectRefusedUnchanged({ zones: watch.zones, handles: ['cross@invite.example'] }, () => postChange(s.url, wrongZone), 403, 'invite_invalid');
      await registerOk(s.url, k, 'cross@example.org', { invite: code });
    } finally {
      s.ctx.zones.setPolicy('example.org', 'open');
    }
  });

  it('no invite in an invite zone: 403 invite_required', async () => {
    await expectRefusedUnchanged(watch, () => postChange(s.url, newbieRegister({ handle: 'newbie@invite.example' })), 403, 'invite_required');
  });

  it('a closed zone: 403 registration_closed', async () => {
    await expectRefusedUnchanged(watch, () => postChange(s.url, newbieRegister({ handle: 'newbie@closed.example' })), 403, 'registration_closed');
  });

  it.each([
    ['ftp', 'ftp://files.example/newbie'],
    ['javascript', 'javascript:alert(1)'],
    ['data', 'data:text/plain,hi'],
    ['not a URL', 'social.example/newbie'],
    ['http on a public host', 'http://social.example/newbie'],
    ['credentials', 'https://user:pw@social.example/newbie'],
    ['fragment', 'https://social.example/newbie#x'],
    ['http loopback in a zone that does not allow it', 'http://127.0.0.1:3000/newbie'],
  ])('an endpoint that is not allowed (%s): 400 invalid_endpoint', async (_name, endpoint) => {
    await expectRefusedUnchanged(watch, () => postChange(s.url, newbieRegister({ endpoint })), 400, 'invalid_endpoint');
    await expectRefusedUnchanged(watch, () => putChange(s.url, 'carol@example.com', carolUpdate(endpoint)), 400, 'invalid_endpoint');
  });

  it('a PUT whose path names another handle than the signed one: 400 handle_mismatch', async () => {
    const w = { zones: watch.zones, handles: [...watch.handles, 'alice@example.com'] };
    await expectRefusedUnchanged(w, () => putChange(s.url, 'alice@example.com', carolUpdate('https://social.example/m')), 400, 'handle_mismatch');
    const del = signChangeRequest({ action: 'delete', handle: 'carol@example.com', prev: carolOp }, carol.private);
    await expectRefusedUnchanged(w, () => deleteChange(s.url, 'alice@example.com', del), 400, 'handle_mismatch');
  });

  it('a request whose action does not fit the method: 400 invalid_request', async () => {
    await expectRefusedUnchanged(watch, () => postChange(s.url, carolUpdate('https://social.example/p')), 400, 'invalid_request');
    await expectRefusedUnchanged(watch, () => putChange(s.url, 'newbie@example.com', newbieRegister()), 400, 'invalid_request');
    await expectRefusedUnchanged(watch, () => deleteChange(s.url, 'carol@example.com', carolUpdate('https://social.example/p')), 400, 'invalid_request');
  });

  it('carol is still intact and updatable after every refusal above', async () => {
    const res = await putChange(s.url, 'carol@example.com', carolUpdate('https://social.example/carol-final'));
    expect(res.status).toBe(200);
    carolOp = res.json.op;
    const answer = await resolveHandle(s.url, 'carol@example.com');
    expect(payloadOf(answer.json.record).endpoint).toBe('https://social.example/carol-final');
  });
});

describe('changes', () => {
  it('accepts an http loopback endpoint in a zone that allows loopback endpoints (development)', async () => {
    const k = newUserKey();
    const jws = signChangeRequest({ action: 'register', handle: 'dev@localhost', endpoint: 'http://127.0.0.1:3000/users/dev', keys: [k.public] }, k.private);
    const res = await postChange(s.url, jws);
    expect({ status: res.status, body: res.json }).toMatchObject({ status: 201, body: { handle: 'dev@localhost', zone: 'localhost' } });
    expect(payloadOf((await resolveHandle(s.url, 'dev@localhost')).json.record).endpoint).toBe('http://127.0.0.1:3000/users/dev');
  });

  it('two concurrent updates with the same prev: exactly one wins, the other gets 409 stale_prev', async () => {
    const owner = newUserKey();
    const reg = await registerOk(s.url, owner, 'race@example.com');
    const a = signChangeRequest(
      { action: 'update', handle: 'race@example.com', endpoint: 'https://a.example/race', keys: [owner.public], prev: reg.op },
      owner.private,
    );
    const b = signChangeRequest(
      { action: 'update', handle: 'race@example.com', endpoint: 'https://b.example/race', keys: [owner.public], prev: reg.op },
      owner.private,
    );
    const results = await Promise.all([putChange(s.url, 'race@example.com', a), putChange(s.url, 'race@example.com', b)]);
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 409]);
    const winner = results.find((r) => r.status === 200)!;
    const loser = results.find((r) => r.status === 409)!;
    expect(loser.json.error.code).toBe('stale_prev');
    expect(loser.json.error.details.current).toBe(winner.json.op);
    const answer = await resolveHandle(s.url, 'race@example.com');
    expect(answer.json.record).toBe(winner.json.record);
    expect(payloadOf(answer.json.record).op).toBe(winner.json.op);
    const log = await get(s.url, '/v1/handles/race@example.com/log');
    expect(log.json.operations.map((o: { action: string }) => o.action)).toEqual(['register', 'update']);
  });

  it('the log lists register, update and delete in order with their signed requests; the handle can then be registered afresh', async () => {
    const first = newUserKey();
    const h = 'loggy@example.com';
    const reg = await registerOk(s.url, first, h);
    const update = signChangeRequest(
      { action: 'update', handle: h, endpoint: 'https://moved.example/loggy', keys: [first.public], prev: reg.op },
      first.private,
    );
    const up = await putChange(s.url, h, update);
    expect(up.status).toBe(200);
    expect(up.json).toMatchObject({ handle: h, zone: 'example.com', action: 'update', serial: reg.serial + 1 });
    const del = signChangeRequest({ action: 'delete', handle: h, prev: up.json.op }, first.private);
    const gone = await deleteChange(s.url, h, del);
    expect(gone.status).toBe(200);
    expect(gone.json).toMatchObject({ handle: h, action: 'delete', record: null });

    const log = await get(s.url, `/v1/handles/${h}/log`);
    expect(log.status).toBe(200);
    expect(log.json.handle).toBe(h);
    const ops = log.json.operations as { seq: number; op: string; action: string; request: string }[];
    expect(ops.map((o) => o.action)).toEqual(['register', 'update', 'delete']);
    expect(ops.map((o) => o.request)).toEqual([reg.jws, update, del]);
    expect(ops.map((o) => o.op)).toEqual([reg.op, up.json.op, gone.json.op]);
    expect(ops.map((o) => o.seq)).toEqual([1, 2, 3]);

    const denied = await resolveHandle(s.url, h);
    expect(denied.status).toBe(404);
    expect(checkAnswer(denied.json, h, anchors('example.com')).status).toBe('denial');
    // The old owner cannot act on the deleted handle.
    const late = signChangeRequest({ action: 'update', handle: h, endpoint: 'https://late.example/', keys: [first.public], prev: gone.json.op }, first.private);
    expect((await putChange(s.url, h, late)).json.error.code).toBe('handle_not_found');

    const second = newUserKey();
    const again = signChangeRequest({ action: 'register', handle: h, endpoint: 'https://new.example/loggy', keys: [second.public] }, second.private);
    expect(payloadOf(again).prev).toBeNull();
    // Within the zone's tombstone cool-down only the former keys may take it back (tombstones.test.ts);
    // with none, anyone may register it afresh.
    expect((await postChange(s.url, again)).json.error.code).toBe('handle_reserved');
    s.ctx.zones.setTombstoneCooldown('example.com', 0);
    let re;
    try {
      re = await postChange(s.url, again);
    } finally {
      s.ctx.zones.setTombstoneCooldown('example.com', 30 * 24 * 3600);
    }
    expect(re.status).toBe(201);
    const answer = await resolveHandle(s.url, h);
    const checked = checkAnswer(answer.json, h, anchors('example.com'));
    if (checked.status !== 'answer') throw new Error('expected an answer');
    expect(checked.record.keys).toEqual([second.public]);
    expect(checked.record.op).toBe(re.json.op);
    // The previous owner's key is no longer on the handle.
    const hijack = signChangeRequest({ action: 'update', handle: h, endpoint: 'https://evil.example/', keys: [first.public], prev: re.json.op }, first.private);
    expect((await putChange(s.url, h, hijack)).json.error.code).toBe('unauthorized_key');
    const log2 = await get(s.url, `/v1/handles/${h}/log`);
    expect(log2.json.operations.map((o: { action: string }) => o.action)).toEqual(['register', 'update', 'delete', 'register']);
  });

  it('the log of a handle that never existed is 404 handle_not_found', async () => {
    const res = await get(s.url, '/v1/handles/never@example.com/log');
    expect(res.status).toBe(404);
    expect(res.json.error.code).toBe('handle_not_found');
  });

  it('the operator path registers in a closed zone; the public path cannot', async () => {
    const k = newUserKey();
    const jws = signChangeRequest(
      { action: 'register', handle: 'staff@closed.example', endpoint: 'https://social.example/staff', keys: [k.public] },
      k.private,
    );
    expect(errorCode(() => s.ctx.changes.applyNow(jws))).toBe('registration_closed');
    expect((await resolveHandle(s.url, 'staff@closed.example')).status).toBe(404);
    const result = s.ctx.changes.applyNow(jws, { operator: true });
    expect(result).toMatchObject({ handle: 'staff@closed.example', zone: 'closed.example', action: 'register' });
    const answer = await resolveHandle(s.url, 'staff@closed.example');
    expect(answer.status).toBe(200);
    expect(answer.json.record).toBe(result.record);
    expect(checkAnswer(answer.json, 'staff@closed.example', anchors('closed.example')).status).toBe('answer');
  });

  it('100 concurrent registrations all succeed, each with its own serial, and all resolve', async () => {
    const before = (await get(s.url, '/v1/zones/bulk.example')).json.serial as number;
    const keys = Array.from({ length: 100 }, () => newUserKey());
    const results = await Promise.all(
      keys.map((k, i) =>
        postChange(
          s.url,
          signChangeRequest({ action: 'register', handle: `user${i}@bulk.example`, endpoint: `https://social.example/u${i}`, keys: [k.public] }, k.private),
        ),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(Array(100).fill(201));
    const serials = results.map((r) => r.json.serial as number);
    expect(new Set(serials).size).toBe(100);
    expect([...serials].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => before + 1 + i));
    expect((await get(s.url, '/v1/zones/bulk.example')).json.serial).toBe(before + 100);
    const a = anchors('bulk.example');
    const answers = await Promise.all(keys.map((_, i) => resolveHandle(s.url, `user${i}@bulk.example`)));
    answers.forEach((res, i) => {
      expect(res.status).toBe(200);
      const checked = checkAnswer(res.json, `user${i}@bulk.example`, a);
      if (checked.status !== 'answer') throw new Error('expected an answer');
      expect(checked.record.keys).toEqual([keys[i]!.public]);
      expect(checked.record.serial).toBe(results[i]!.json.serial);
    });
  });
});
