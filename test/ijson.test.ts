import fc from 'fast-check';
import { sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseChangeRequest } from '../src/records/change-request.js';
import { parseImportLine } from '../src/authority/import-line.js';
import { IdnsError } from '../src/errors.js';
import { parseIJson } from '../src/records/ijson.js';
import { decodeCompact, OPERATION_TYP, RECORD_TYP } from '../src/records/jws.js';
import { signingKeyFromJwk, type SigningKey } from '../src/records/keys.js';
import { verifyZoneRecord } from '../src/records/verify.js';
import { createResolver } from '../src/resolver/resolver.js';
import { cleanupEachTest } from './support/cleanup.js';
import { FAKE_OP, sendJson, startFakeServer, ZoneSigner, type FakeServer } from './support/fake-server.js';
import { type Hierarchy } from './support/hierarchy.js';
import { startHostileZone, type HostileZone } from './support/hostile-zone.js';
import { postChange, putChange, resolveHandle } from './support/http.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, type TestServer } from './support/server.js';

/**
 * Issue 14, item 7: signed JSON is I-JSON (RFC 7493). A JWS whose header or payload repeats a member (at
 * any depth, also when the repeat is spelt with escapes), is not UTF-8 or holds a lone surrogate is
 * refused: invalid_jws by the authority (HTTP 400), verification_failed by verifiers and secondaries.
 */

const b64 = (text: string | Buffer) => Buffer.from(text).toString('base64url');

/** A compact JWS over exactly these header and payload texts, with a genuine signature by `key`. */
function signRaw(headerText: string, payloadText: string | Buffer, key: SigningKey): string {
  const input = `${b64(headerText)}.${b64(payloadText)}`;
  return `${input}.${b64(sign(null, Buffer.from(input), key.privateKey))}`;
}

function errorOf(fn: () => unknown): IdnsError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(IdnsError);
    return err as IdnsError;
  }
  throw new Error('expected a typed error');
}

describe('parseIJson', () => {
  const refused: [string, string | Buffer, RegExp][] = [
    ['a member twice', '{"a":1,"a":2}', /"a" twice/],
    ['a member twice with equal values', '{"handle":"x","handle":"x"}', /"handle" twice/],
    ['a member twice in a nested object', '{"keys":[{"kty":"OKP","x":"a","x":"b"}]}', /"x" twice/],
    ['a member twice three levels down', '{"a":{"b":{"c":1,"c":1}}}', /"c" twice/],
    ['a member twice spelt with an escape', '{"handle":"a","hand\\u006ce":"b"}', /"handle" twice/],
    ['a member twice, both spelt with escapes', '{"\\u0061":1,"\\u0061":2}', /"a" twice/],
    ['a member twice with whitespace before the colon', '{"a" :1, "a"\n:2}', /"a" twice/],
    ['__proto__ twice', '{"__proto__":1,"__proto__":2}', /"__proto__" twice/],
    ['a member twice among many', `{${Array.from({ length: 40 }, (_, i) => `"m${i}":${i}`).join(',')},"m7":0}`, /"m7" twice/],
    ['an escaped lone high surrogate in a value', '{"a":"\\ud800"}', /lone surrogate/],
    ['an escaped lone low surrogate in a key', '{"\\udc00":1}', /lone surrogate/],
    ['a lone surrogate in a top-level string', '"\\ud83d"', /lone surrogate/],
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), /UTF-8/],
    ['a UTF-8-encoded surrogate', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]), /UTF-8/],
    ['an overlong UTF-8 quote', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc0, 0xa2, 0x22, 0x7d]), /UTF-8/],
    ['not JSON', '{"a":', /not valid JSON/],
  ];
  it.each(refused)('refuses %s', (_name, input, message) => {
    const err = errorOf(() => parseIJson(input, 'the test', 'invalid_jws'));
    expect(err.code).toBe('invalid_jws');
    expect(err.message).toMatch(message);
  });

  const accepted: [string, string][] = [
    ['equal names in different objects', '{"a":{"x":1},"b":{"x":2},"x":[{"x":3},{"x":4}]}'],
    ['a colon and quotes inside strings', '{"a":"x:y\\"z:","b":"https://h.example:8443/a:b"}'],
    ['names that differ only by an escaped backslash', '{"a":1,"a\\\\":2,"\\\\a":3}'],
    ['an escaped quote in a name', '{"a\\"":1,"a":2}'],
    ['a surrogate pair, escaped and raw', '{"a":"\\ud83d\\ude00","b":"😀"}'],
    ['a bare value', '42'],
    ['an empty object and array', '{"a":{},"b":[],"c":[{}]}'],
  ];
  it.each(accepted)('accepts %s, as JSON.parse reads it', (_name, text) => {
    expect(parseIJson(text, 'the test', 'invalid_jws')).toEqual(JSON.parse(text));
    expect(parseIJson(Buffer.from(text), 'the test', 'invalid_jws')).toEqual(JSON.parse(text));
  });

  it('survives deep nesting with only typed errors', () => {
    for (const text of ['['.repeat(40_000) + ']'.repeat(40_000), '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000)]) {
      try {
        parseIJson(text, 'the test', 'invalid_jws');
      } catch (err) {
        expect(err).toBeInstanceOf(IdnsError);
      }
    }
  });

  // An object written member by member, each name either plain or with one character escaped as \uXXXX:
  // a repeat of a name anywhere in one object must be refused, whatever the spelling; no repeat, accepted.
  const name = fc.constantFrom('a', 'b', 'handle', 'jwk', 'x', 'kid', '__proto__', 'a:b', 'é');
  type Obj = { members: { name: string; escape: boolean; value: Obj | number }[] };
  const obj: fc.Memo<Obj> = fc.memo((depth) =>
    fc.record({
      members: fc.array(fc.record({ name, escape: fc.boolean(), value: depth > 1 ? fc.oneof(fc.integer(), obj(depth - 1)) : fc.integer() }), { maxLength: 5 }),
    }),
  );
  const spell = (n: string, escape: boolean) =>
    escape ? `"\\u${n.charCodeAt(0).toString(16).padStart(4, '0')}${JSON.stringify(n).slice(2)}` : JSON.stringify(n);
  const write = (o: Obj): string =>
    `{${o.members.map((m) => `${spell(m.name, m.escape)}:${typeof m.value === 'number' ? m.value : write(m.value)}`).join(',')}}`;
  const repeats = (o: Obj): boolean =>
    new Set(o.members.map((m) => m.name)).size !== o.members.length || o.members.some((m) => typeof m.value !== 'number' && repeats(m.value));

  it('property: refused exactly when some object repeats a name, however spelt (fuzz)', () => {
    fc.assert(
      fc.property(obj(3), (o) => {
        const text = write(o);
        let refusedWith: IdnsError | null = null;
        try {
          expect(parseIJson(text, 'p', 'invalid_jws')).toEqual(JSON.parse(text));
        } catch (err) {
          if (!(err instanceof IdnsError)) throw err;
          refusedWith = err;
        }
        expect(refusedWith !== null).toBe(repeats(o));
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 1500), seed: 20261205 },
    );
  });

  it('property: any JSON value JSON.stringify writes comes back unchanged (fuzz)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const text = JSON.stringify(v);
        expect(parseIJson(Buffer.from(text), 'p', 'invalid_jws')).toEqual(JSON.parse(text));
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 1500), seed: 20261205 },
    );
  });
});

describe('duplicate members in JWS', () => {
  const user = newUserKey();
  const userKey = signingKeyFromJwk(user.private);
  const now = () => Math.floor(Date.now() / 1000);
  const header = (extra = '') => `{"alg":"EdDSA","typ":"${OPERATION_TYP}","jwk":${JSON.stringify(user.public)}${extra}}`;
  const registerText = (handle: string, extra = '') =>
    `{"v":1,"action":"register","handle":"${handle}","endpoint":"https://home.example/a","keys":[${JSON.stringify(user.public)}],"prev":null,"iat":${now()}${extra}}`;

  it('decodeCompact refuses a repeat in the header and in the payload (invalid_jws)', () => {
    expect(errorOf(() => decodeCompact(signRaw(header(`,"jwk":${JSON.stringify(newUserKey().public)}`), registerText('a@example'), userKey))).code).toBe(
      'invalid_jws',
    );
    expect(errorOf(() => decodeCompact(signRaw(header(), registerText('a@example', ',"handle":"b@example"'), userKey))).code).toBe('invalid_jws');
    expect(errorOf(() => parseChangeRequest(signRaw(header(), registerText('a@example', ',"hand\\u006ce":"b@example"'), userKey))).message).toMatch(
      /"handle" twice/,
    );
    // Without the repeat the same request is well-formed.
    expect(parseChangeRequest(signRaw(header(), registerText('a@example'), userKey)).handle).toBe('a@example');
  });

  describe('on the authority', () => {
    let s: TestServer;
    beforeAll(async () => {
      s = await startTestServer({ zones: { example: {} } });
    });
    afterAll(async () => s?.close());

    it.each([
      [
        'the payload names the handle twice',
        () => signRaw(header(), registerText('a1@example', ',"handle":"b1@example"'), userKey),
        ['a1@example', 'b1@example'],
      ],
      [
        'the payload repeats the handle spelt with an escape',
        () => signRaw(header(), registerText('a2@example', ',"hand\\u006ce":"b2@example"'), userKey),
        ['a2@example', 'b2@example'],
      ],
      [
        'a key in the payload repeats x',
        () => signRaw(header(), registerText('a3@example').replace(`"x":"${user.public.x}"`, `"x":"${user.public.x}","x":"${newUserKey().public.x}"`), userKey),
        ['a3@example'],
      ],
      [
        'the header names jwk twice',
        () => signRaw(header(`,"jwk":${JSON.stringify(newUserKey().public)}`), registerText('a4@example'), userKey),
        ['a4@example'],
      ],
      ['the header repeats alg', () => signRaw(header(',"alg":"EdDSA"'), registerText('a5@example'), userKey), ['a5@example']],
    ] as [string, () => string, string[]][])('refuses a registration where %s: 400 invalid_jws, nothing registered', async (_name, jws, handles) => {
      const res = await postChange(s.url, jws());
      expect(res.status).toBe(400);
      expect(res.json.error.code).toBe('invalid_jws');
      expect(res.json.error.message).toMatch(/twice/);
      for (const handle of handles) expect((await resolveHandle(s.url, handle)).status).toBe(404);
    });

    it('refuses an update whose payload repeats the endpoint (400 invalid_jws), keeping the record', async () => {
      const ok = await postChange(s.url, signRaw(header(), registerText('u@example'), userKey));
      expect(ok.status).toBe(201);
      const update = `{"v":1,"action":"update","handle":"u@example","endpoint":"https://home.example/a","endpoint":"https://evil.example/","keys":[${JSON.stringify(user.public)}],"prev":"${ok.json.op}","iat":${now()}}`;
      const res = await putChange(s.url, 'u@example', signRaw(`{"alg":"EdDSA","typ":"${OPERATION_TYP}","kid":"${user.kid}"}`, update, userKey));
      expect([res.status, res.json.error.code]).toEqual([400, 'invalid_jws']);
      const record = (await resolveHandle(s.url, 'u@example')).json.record as string;
      expect(JSON.parse(Buffer.from(record.split('.')[1]!, 'base64url').toString()).endpoint).toBe('https://home.example/a');
    });
  });

  it('the import refuses a line that names a member twice', () => {
    const line = `{"handle":"a@example","endpoint":"https://h.example/","keys":[${JSON.stringify(user.public)}],"handle":"b@example"}`;
    expect(errorOf(() => parseImportLine(line, 3, false)).message).toMatch(/^line 3: .*"handle" twice/);
  });

  describe('on the verifiers: a zone signing records with a member twice, with its real key', () => {
    const ZONE = 'dup.example';
    let z: HostileZone;
    let h: Hierarchy;
    let fake: FakeServer;
    let signer: ZoneSigner;
    /** handle → the raw record payload text the zone signs for it. */
    const records = new Map<string, string>();
    const cleanups = cleanupEachTest();

    beforeAll(async () => {
      z = await startHostileZone(ZONE, (handle, { h, signer }) => {
        const text = records.get(handle);
        return text === undefined
          ? signer.handle(handle, 'https://home.example/', [h.owner.public])
          : signRaw(`{"alg":"EdDSA","typ":"${RECORD_TYP}","kid":"${signer.kid}"}`, text, signer.key);
      });
      ({ h, fake, signer } = z);
    }, 60_000);
    afterAll(() => z?.close());

    const handleText = (handle: string, endpointMembers: string) => {
      const t = Math.floor(Date.now() / 1000);
      return `{"v":1,"type":"handle","zone":"${ZONE}","serial":1,"iat":${t},"exp":${t + 86400},"handle":"${handle}",${endpointMembers},"keys":[${JSON.stringify(h.owner.public)}],"ttl":3600,"op":"${FAKE_OP}","genesis":"${FAKE_OP}","seq":1}`;
    };

    it.each([
      ['the endpoint twice', (hd: string) => handleText(hd, '"endpoint":"https://home.example/","endpoint":"https://evil.example/"')],
      [
        'the endpoint twice, the second spelt with an escape',
        (hd: string) => handleText(hd, '"endpoint":"https://home.example/","\\u0065ndpoint":"https://evil.example/"'),
      ],
      [
        'a key member twice',
        (hd: string) =>
          handleText(hd, '"endpoint":"https://home.example/"').replace(`"x":"${h.owner.public.x}"`, `"x":"${h.owner.public.x}","x":"${h.owner.public.x}"`),
      ],
    ] as [string, (h: string) => string][])('the resolver refuses a handle record with %s (verification_failed)', async (name, text) => {
      const handle = `h${name.length}-${records.size}@${ZONE}`;
      records.set(handle, text(handle));
      const r = createResolver({ trustAnchors: h.anchors, rootServers: h.rootServers, allowPrivate: true, limits: { requestTimeoutMs: 2000 } });
      cleanups.push(() => r.close());
      await expect(r.lookup(handle)).rejects.toMatchObject({ code: 'verification_failed', message: expect.stringMatching(/twice/) });
      // The same zone's well-formed records still resolve: the refusal is the record's, not the zone's.
      await expect(r.resolve(`fine@${ZONE}`)).resolves.toMatchObject({ endpoint: 'https://home.example/' });
    });

    it('a secondary refuses a zone record with a member twice (verification_failed), and holds no copy', async () => {
      const t = Math.floor(Date.now() / 1000);
      const genuine = JSON.parse(Buffer.from(signer.zoneRecord([fake.url]).split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
      const text = JSON.stringify({ ...genuine, iat: t }).replace('"servers":', `"servers":["https://evil.example/"],"servers":`);
      const zoneJws = signRaw(`{"alg":"EdDSA","typ":"${RECORD_TYP}","kid":"${signer.kid}"}`, text, signer.key);
      expect(errorOf(() => verifyZoneRecord(zoneJws, ZONE, t, [signer.kid])).code).toBe('verification_failed');
      const source = await startFakeServer((_req, res) =>
        sendJson(res, 200, { zone: ZONE, serial: 1, role: 'primary', digest: genuine.digest, record: zoneJws }),
      );
      cleanups.push(() => source.close());
      const secondary = await startTestServer();
      cleanups.push(() => secondary.close());
      secondary.ctx.zones.createSecondary(ZONE, { primaries: [source.url], ds: [signer.kid] });
      const status = await secondary.ctx.replicator.checkNow(ZONE);
      expect(status.lastError).toMatch(/twice/);
      expect(status.serial).toBeNull();
      expect(secondary.ctx.zones.info(ZONE).record).toBe('');
    });
  });
});
