import { domainToASCII } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { IdnsError } from '../src/errors.js';
import { assureHostScripts, skeleton, type HostScriptsLevel } from '../src/names/host-scripts.js';
import { get, postChange, putChange, registerOk, resolveHandle } from './support/http.js';
import { newUserKey } from './support/keys.js';
import { runIdns } from './support/process.js';
import { startTestServer, type TestServer } from './support/server.js';

// Issue 14 item 10: UTS #39 checks of the hosts of new registrations.

function outcome(host: string, level: HostScriptsLevel): string {
  const ascii = domainToASCII(host);
  expect(ascii, `${host} is not a valid IDNA host`).not.toBe('');
  try {
    assureHostScripts(ascii, level);
    return 'accepted';
  } catch (err) {
    if (!(err instanceof IdnsError)) throw err;
    return err.code;
  }
}

function messageOf(host: string, level: HostScriptsLevel): string {
  try {
    assureHostScripts(domainToASCII(host), level);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`${host} was accepted`);
}

describe('assureHostScripts', () => {
  it.each<[string, string]>([
    ['pаypal.example', 'Latin with a Cyrillic а'],
    ['gοogle.example', 'Latin with a Greek omicron'],
    ['gօօgle.example', 'Latin with Armenian օ'],
    ['раураl.example', 'Cyrillic раура with a Latin l'],
    ['раура.example', 'all Cyrillic, confusable with ASCII "paypa"'],
    ['сосо.example', 'all Cyrillic "coco"'],
    ['αο.example', 'all Greek, confusable with "ao"'],
    ['ɡoogle.example', 'Latin IPA script g, confusable with "google"'],
    ['ıstanbul.example', 'Latin dotless ı, confusable with "istanbul"'],
    ['pay\u2800pal.example', 'a Braille blank, invisible'],
    ['ᏗᏯ.example', 'Cherokee, not a script recommended for identifiers'],
    ['a\u0301\u0301.example', 'the same combining mark twice'],
    ['a\u0300\u0301\u0302\u0303\u0304.example', 'five combining marks on one letter'],
    ['пример.pаypal.example', 'a look-alike in any label, not only the first'],
  ])('strict refuses %s (%s) with confusable_host', (host) => {
    expect(outcome(host, 'strict')).toBe('confusable_host');
    expect(outcome(host, 'moderate')).toBe('confusable_host');
  });

  it.each<[string, string]>([
    ['пример.example', 'a plain Cyrillic word'],
    ['ελληνικά.example', 'a plain Greek word'],
    ['münchen.example', 'Latin with diacritics'],
    ['straße.example', 'Latin ß'],
    ['日本語.example', 'Han'],
    ['例え.example', 'Han with Hiragana (Japanese)'],
    ['カタカナ漢字ひらがな.example', 'Han, Hiragana and Katakana in one label'],
    ['abc漢字.example', 'Latin with Han'],
    ['tokyo東京とうきょう.example', 'Latin with Japanese'],
    ['한국어abc.example', 'Latin with Hangul'],
    ['मराठी.example', 'Devanagari'],
    ['مثال.example', 'Arabic'],
    ['alice-2.example', 'plain ASCII'],
  ])('accepts %s (%s)', (host) => {
    expect(outcome(host, 'strict')).toBe('accepted');
    expect(outcome(host, 'moderate')).toBe('accepted');
  });

  it('strict (Highly Restrictive) refuses Latin mixed with a script other than Han/kana/Hangul/Bopomofo; moderate accepts it unless Cyrillic or Greek', () => {
    expect(outcome('shopदुकान.example', 'strict')).toBe('confusable_host');
    expect(outcome('shopदुकान.example', 'moderate')).toBe('accepted');
    expect(outcome('shopмагазин.example', 'moderate')).toBe('confusable_host');
    expect(outcome('shopκατάστημα.example', 'moderate')).toBe('confusable_host');
  });

  it('off accepts every look-alike', () => {
    for (const host of ['pаypal.example', 'раура.example', 'gοogle.example', 'pay\u2800pal.example']) expect(outcome(host, 'off')).toBe('accepted');
  });

  it('names the label, the scripts it mixes, or the ASCII name it imitates', () => {
    const mixed = messageOf('pаypal.example', 'strict');
    expect(mixed).toContain('"pаypal"');
    expect(mixed).toContain('Latin');
    expect(mixed).toContain('Cyrillic');
    expect(messageOf('раура.example', 'strict')).toContain('"paypa"');
    expect(messageOf('pay\u2800pal.example', 'strict')).toContain('U+2800');
  });

  it('computes the UTS #39 skeleton', () => {
    expect(skeleton('раураl')).toBe('paypal');
    expect(skeleton('paypal')).toBe('paypal');
    expect(skeleton('пример')).not.toMatch(/^[a-z]+$/);
  });
});

describe('registration over HTTP', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ zones: { example: {}, 'lax.example': { hostScripts: 'off' } } });
  });
  afterAll(async () => s?.close());

  it('refuses a look-alike host with 400 confusable_host, changing nothing; a plain Cyrillic or Japanese host is registered', async () => {
    const owner = newUserKey();
    const before = (await get(s.url, '/v1/zones/example')).json.record;
    for (const host of ['pаypal.example', 'раура.example', 'gοogle.example']) {
      const res = await postChange(
        s.url,
        signChangeRequest({ action: 'register', handle: `alice@${host}`, endpoint: 'https://social.example/a', keys: [owner.public] }, owner.private),
      );
      expect({ status: res.status, code: res.json?.error?.code }).toEqual({ status: 400, code: 'confusable_host' });
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect((await resolveHandle(s.url, `alice@${host}`)).status).toBe(404);
    }
    expect((await get(s.url, '/v1/zones/example')).json.record).toBe(before);
    await registerOk(s.url, owner, 'alice@пример.example');
    await registerOk(s.url, owner, 'alice@例え.example');
  });

  it('a zone with hostScripts off registers look-alikes', async () => {
    const owner = newUserKey();
    await registerOk(s.url, owner, 'alice@pаypal.lax.example');
  });

  it('existing handles keep working: a handle registered while the check was off can be updated after it is turned on', async () => {
    const owner = newUserKey();
    s.ctx.zones.setHostScripts('example', 'off');
    const reg = await registerOk(s.url, owner, 'old@gοogle.example');
    s.ctx.zones.setHostScripts('example', 'strict');
    const update = signChangeRequest(
      { action: 'update', handle: 'old@gοogle.example', endpoint: 'https://social.example/moved', keys: [owner.public], prev: reg.op },
      owner.private,
    );
    expect((await putChange(s.url, 'old@gοogle.example', update)).status).toBe(200);
    const another = await postChange(
      s.url,
      signChangeRequest({ action: 'register', handle: 'new@gοogle.example', endpoint: 'https://social.example/n', keys: [owner.public] }, owner.private),
    );
    expect(another.json?.error?.code).toBe('confusable_host');
  });
});

describe('CLI', () => {
  it('zone create --host-scripts and zone host-scripts set the level; zone show prints it', async () => {
    const { tempDir } = await import('./support/server.js');
    const tmp = tempDir('idns-hs-');
    try {
      const data = ['--data', tmp.dir];
      const created = await runIdns([
        'zone',
        'create',
        'idn.example',
        '--server-url',
        'https://ns.idn.example',
        '--host-scripts',
        'moderate',
        ...data,
        '--json',
      ]);
      expect(created.code, created.stderr).toBe(0);
      expect(JSON.parse(created.stdout)).toMatchObject({ hostScripts: 'moderate' });
      const set = await runIdns(['zone', 'host-scripts', 'idn.example', 'off', ...data]);
      expect(set.code, set.stderr).toBe(0);
      const shown = await runIdns(['zone', 'show', 'idn.example', ...data]);
      expect(shown.stdout).toContain('host scripts: off');
      const bad = await runIdns(['zone', 'host-scripts', 'idn.example', 'lax', ...data]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('strict, moderate or off');
    } finally {
      tmp.remove();
    }
  });
});
