import fc from 'fast-check';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseChangeRequest } from '../src/records/change-request.js';
import { loadConfig } from '../src/config.js';
import { IdnsError } from '../src/errors.js';
import { parseAcctResource } from '../src/http/routes/webfinger.js';
import { normaliseHandle, parseHandle } from '../src/names/handle.js';
import { parseZoneName } from '../src/names/zone.js';
import { decodeCompact } from '../src/records/jws.js';
import { parsePublicJwk } from '../src/records/keys.js';
import { recordSchemas } from '../src/records/schemas.js';
import { verifyZoneRecord } from '../src/records/verify.js';
import { verifiedZoneOf } from '../src/records/verify-core.js';
import { checkHistoryEntry } from '../src/records/history-entries.js';
import { parseOperatorEntry } from '../src/records/operator-entry.js';
import { freshKey, historyOf, ZoneSigner } from './support/fake-server.js';
import { parseEvidence } from '../src/records/history-evidence.js';
import { verifyRecordHistory, type NumberedEntry } from '../src/records/history-chain.js';
import { ndjsonLines } from '../src/replication/ndjson.js';
import { verifyProof } from '../src/resolver/proof.js';
import { chunked } from './support/chunks.js';

// Property-based fuzzing of every parser that reads network (or operator) input. Properties: nothing but
// our typed IdnsError is ever thrown, nothing hangs (each run is bounded by the test timeout), and
// normalisation is idempotent where both directions exist. Seeds are fixed so a failure reproduces;
// FUZZ_RUNS raises the iteration count for a longer local run.
const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);
const SEED = 20261124;
const params = { numRuns: RUNS, seed: SEED };

const corpusDir = new URL('./fuzz-corpus/', import.meta.url);
const corpus = (name: string): string[] =>
  readFileSync(new URL(name, corpusDir), 'utf8')
    .split('\n')
    .filter((l) => l !== '');

/** Runs `fn`; passes if it returns or throws an IdnsError, fails on anything else. */
function onlyTypedErrors(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    if (err instanceof IdnsError) return true;
    throw err;
  }
}

// Labels with '--' in the third and fourth places are reserved for IDNA (xn--): not plain host labels.
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/).filter((l) => l.slice(2, 4) !== '--');
// A last label that WHATWG reads as a number (decimal, or hex like 0x1f) makes an IPv4 address: not a host name.
const validHost = fc
  .array(label, { minLength: 1, maxLength: 4 })
  .map((ls) => ls.join('.'))
  .filter((h) => !/^(\d+|0x[0-9a-f]*)$/.test(h.split('.').pop()!));
const validLocal = fc.stringMatching(/^[a-z0-9]([a-z0-9._-]{0,10}[a-z0-9])?$/).filter((l) => !l.includes('..'));
/** Strings with the characters that break parsers: unicode, controls, separators. */
const nasty = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: fc.constantFrom('@', '.', '-', 'a', 'Z', '0', ':', '/', '%', ' ', '\u0000', 'ü', 'K', 'ı', '。', '\u200b', 'x', 'n', '-'), maxLength: 60 }),
);

describe('names', () => {
  it('parseHandle throws only typed errors, and normalising is idempotent', () => {
    fc.assert(
      fc.property(nasty, (input) => {
        let normal: string;
        try {
          normal = normaliseHandle(input);
        } catch (err) {
          if (err instanceof IdnsError) return true;
          throw err;
        }
        expect(normaliseHandle(normal)).toBe(normal);
        return true;
      }),
      params,
    );
  });

  it('valid handles parse back to themselves (parse ∘ print is the identity)', () => {
    fc.assert(
      fc.property(validLocal, validHost, (local, host) => {
        const h = `${local}@${host}`;
        const p = parseHandle(h);
        expect(`${p.local}@${p.host}`).toBe(h);
        expect(parseHandle(h.toUpperCase()).handle).toBe(h);
      }),
      params,
    );
  });

  it('parseZoneName throws only typed errors and is idempotent', () => {
    fc.assert(
      fc.property(nasty, (input) => {
        try {
          const z = parseZoneName(input);
          expect(parseZoneName(z)).toBe(z);
        } catch (err) {
          if (!(err instanceof IdnsError)) throw err;
        }
      }),
      params,
    );
  });

  it('the seed corpus of handles gives only typed errors', () => {
    for (const line of corpus('handles.txt')) expect(onlyTypedErrors(() => parseHandle(JSON.parse(line) as string))).toBe(true);
  });
});

describe('JWS, keys, records and requests', () => {
  const zoneRecordJws = new ZoneSigner('example.com', freshKey()).zoneRecord(['https://ns.example.com']);
  const payloadOfZone = JSON.parse(Buffer.from(zoneRecordJws.split('.')[1]!, 'base64url').toString());
  const b64 = (s: string) => Buffer.from(s).toString('base64url');
  const jsonish = fc.oneof(
    fc.json(),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    nasty,
  );
  const jwsLike = fc.oneof(
    nasty,
    fc.tuple(jsonish, jsonish, fc.uint8Array({ maxLength: 80 })).map(([h, p, s]) => `${b64(h)}.${b64(p)}.${Buffer.from(s).toString('base64url')}`),
    fc
      .tuple(fc.jsonValue(), fc.jsonValue())
      .map(
        ([p, extra]) =>
          `${b64(JSON.stringify({ alg: 'EdDSA', typ: 'idns-op', kid: 'x', ...(typeof extra === 'object' && extra !== null ? extra : {}) }))}.${b64(JSON.stringify(p))}.${'A'.repeat(86)}`,
      ),
  );

  it('decodeCompact and parseChangeRequest throw only typed errors', () => {
    fc.assert(
      fc.property(jwsLike, (jws) => {
        expect(onlyTypedErrors(() => decodeCompact(jws))).toBe(true);
        expect(onlyTypedErrors(() => parseChangeRequest(jws))).toBe(true);
      }),
      params,
    );
  });

  it('change requests with random payload members throw only typed errors', () => {
    const payload = fc.record(
      {
        v: fc.oneof(fc.constant(1), fc.jsonValue()),
        action: fc.oneof(fc.constantFrom('register', 'update', 'delete'), fc.string()),
        handle: fc.oneof(fc.constant('alice@example.com'), nasty),
        endpoint: fc.oneof(fc.constant('https://h.example/'), nasty, fc.jsonValue()),
        keys: fc.oneof(fc.array(fc.jsonValue(), { maxLength: 3 }), fc.jsonValue()),
        prev: fc.oneof(fc.constant(null), fc.string()),
        iat: fc.oneof(fc.integer(), fc.jsonValue()),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(payload, fc.jsonValue(), (p, jwk) => {
        const jws = `${b64(JSON.stringify({ alg: 'EdDSA', typ: 'idns-op', kid: 'k', jwk }))}.${b64(JSON.stringify(p))}.${'A'.repeat(86)}`;
        expect(onlyTypedErrors(() => parseChangeRequest(jws))).toBe(true);
      }),
      params,
    );
  });

  it('history entries (owner requests and operator entries) and their check as copied zone content throw only typed errors', () => {
    const zone = verifiedZoneOf(payloadOfZone, zoneRecordJws);
    const operatorPayload = fc.record(
      {
        v: fc.oneof(fc.constant(1), fc.jsonValue()),
        action: fc.oneof(fc.constantFrom('import', 'transfer', 'takedown'), fc.string()),
        prev: fc.oneof(fc.constant('A'.repeat(43)), fc.string(), fc.jsonValue()),
        reason: fc.oneof(fc.string(), fc.jsonValue()),
        zone: fc.oneof(fc.constant('example.com'), nasty),
        handle: fc.oneof(fc.constant('alice@example.com'), nasty),
        endpoint: fc.oneof(fc.constant('https://h.example/'), nasty, fc.jsonValue()),
        keys: fc.oneof(fc.array(fc.jsonValue(), { maxLength: 3 }), fc.jsonValue()),
        iat: fc.oneof(fc.integer(), fc.jsonValue()),
        legacyOp: fc.oneof(fc.string(), fc.jsonValue()),
      },
      { requiredKeys: [] },
    );
    const entry = fc.oneof(
      jwsLike,
      operatorPayload.map((p) => `${b64(JSON.stringify({ alg: 'EdDSA', typ: 'idns-operator', kid: 'k' }))}.${b64(JSON.stringify(p))}.${'A'.repeat(86)}`),
    );
    const key = fc.oneof(
      fc.constant('alice@example.com#000001'),
      fc.string(),
      nasty.map((n) => `${n}#000001`),
    );
    fc.assert(
      fc.property(entry, key, fc.boolean(), (jws, k, signature) => {
        expect(onlyTypedErrors(() => parseOperatorEntry(jws))).toBe(true);
        expect(onlyTypedErrors(() => checkHistoryEntry(k, jws, zone, signature))).toBe(true);
      }),
      params,
    );
  });

  it('parsePublicJwk throws only typed errors', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => onlyTypedErrors(() => parsePublicJwk(v))),
      params,
    );
  });

  it('record payload schemas and zone record verification throw only typed errors', () => {
    fc.assert(
      fc.property(fc.jsonValue(), jwsLike, (payload, jws) => {
        for (const schema of Object.values(recordSchemas)) schema.safeParse(payload);
        expect(onlyTypedErrors(() => verifyZoneRecord(jws, 'example', 1_800_000_000))).toBe(true);
        expect(onlyTypedErrors(() => verifyProof(payload, 'alice@example', new Map([['.', ['x']]]), 1_800_000_000))).toBe(true);
      }),
      params,
    );
  });

  it("an answer's history evidence and a record's history throw only typed errors, and only the record's own history verifies", () => {
    const signer = new ZoneSigner('example.com', freshKey());
    const zoneJws = signer.zoneRecord(['https://ns.example.com']);
    const zone = verifiedZoneOf(JSON.parse(Buffer.from(zoneJws.split('.')[1]!, 'base64url').toString()), zoneJws);
    const record = signer.handle('alice@example.com', 'https://h.example/', [freshKey().publicJwk]);
    const own = historyOf(record).map(([, jws]) => jws);
    const parsed = recordSchemas.handle.parse(JSON.parse(Buffer.from(record.split('.')[1]!, 'base64url').toString()));
    const other = historyOf(signer.handle('alice@example.com', 'https://other.example/', [freshKey().publicJwk])).map(([, jws]) => jws);
    // The record's own entry, another record's, the own entry with one character changed, and noise.
    const mutated = fc.tuple(fc.nat(own[0]!.length - 1), fc.constantFrom('A', '.', '_', '=')).map(([i, c]) => own[0]!.slice(0, i) + c + own[0]!.slice(i + 1));
    const entry = fc.oneof(fc.constant(own[0]!), fc.constant(other[0]!), mutated, jwsLike);
    // Numbered as answers carry them (with numbers out of order, repeated, missing or not numbers), bare, or noise.
    const numbered = fc.array(fc.tuple(fc.oneof(fc.integer({ min: -1, max: 40 }), fc.jsonValue()), entry), { maxLength: 4 });
    const value = fc.oneof(numbered, fc.array(entry, { maxLength: 4 }), fc.jsonValue());
    fc.assert(
      fc.property(value, fc.integer({ min: -1, max: 12_000 }), (v, seq) => {
        expect(onlyTypedErrors(() => parseEvidence(v, seq))).toBe(true);
        const entries = Array.isArray(v) ? (v as NumberedEntry[]) : [];
        let verified = false;
        expect(
          onlyTypedErrors(() => {
            verifyRecordHistory(parsed, entries, { name: 'example.com', keys: zone.keys });
            verified = true;
          }),
        ).toBe(true);
        if (verified) expect(entries).toEqual(own.map((jws, i) => [i + 1, jws]));
      }),
      params,
    );
  });

  it('the seed corpus of JWS gives only typed errors', () => {
    for (const line of corpus('jws.txt')) {
      expect(onlyTypedErrors(() => parseChangeRequest(line))).toBe(true);
      expect(onlyTypedErrors(() => verifyZoneRecord(line, 'example', 1_800_000_000))).toBe(true);
    }
  });
});

describe('WebFinger resources', () => {
  it('parseAcctResource throws only typed errors and accepts exactly acct: handles', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          nasty,
          nasty.map((s) => `acct:${s}`),
          fc.constant(undefined),
        ),
        (r) => onlyTypedErrors(() => parseAcctResource(r)),
      ),
      params,
    );
    fc.assert(
      fc.property(validLocal, validHost, (l, h) => {
        expect(parseAcctResource(`acct:${l}@${h}`)).toBe(`${l}@${h}`);
      }),
      params,
    );
  });
});

describe('the transfer stream', () => {
  async function drain(chunks: Uint8Array[], maxLine: number): Promise<unknown[]> {
    const out: unknown[] = [];
    for await (const line of ndjsonLines(
      (async function* () {
        yield* chunks;
      })(),
      maxLine,
    ))
      out.push(line);
    return out;
  }

  it('splits any chunking of valid lines into the same lines', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.jsonValue(), { maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 50 }), { maxLength: 30 }), async (values, cuts) => {
        const bytes = Buffer.from(values.map((v) => JSON.stringify(v)).join('\n') + (values.length ? '\n' : ''));
        expect(await drain(chunked(bytes, cuts), 1 << 20)).toEqual(values.map((v) => JSON.parse(JSON.stringify(v))));
      }),
      { ...params, numRuns: Math.min(RUNS, 500) },
    );
  });

  it('throws only typed errors on arbitrary bytes, and bounds the line it buffers', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), async (chunks) => {
        try {
          await drain(chunks, 64);
        } catch (err) {
          if (!(err instanceof IdnsError)) throw err;
        }
      }),
      { ...params, numRuns: Math.min(RUNS, 500) },
    );
    await expect(drain([Buffer.from('x'.repeat(1000))], 64)).rejects.toMatchObject({ code: 'transfer_failed' });
  });
});

describe('configuration files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'idns-fuzz-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loadConfig throws only typed errors for any file content', () => {
    let i = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.json(),
          fc.string({ maxLength: 200 }),
          fc.jsonValue().map((v) => JSON.stringify({ listen: v, limits: v, resolver: v })),
        ),
        (content) => {
          const path = join(dir, `c${i++}.json`);
          writeFileSync(path, content);
          return onlyTypedErrors(() => loadConfig({ config: path }, {}));
        },
      ),
      { ...params, numRuns: Math.min(RUNS, 500) },
    );
    expect(readdirSync(dir).length).toBeGreaterThan(0);
  });
});
