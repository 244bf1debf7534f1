import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DENIAL_MAX_HASHES } from '../src/records/denial.js';
import { fastDenialRecord, fastHandleRecord } from '../src/records/record-fast-paths.js';
import { developmentRecordSchemas, recordSchemas } from '../src/records/schemas.js';
import { MAX_HANDLE_KEYS, RECORD_LIMITS } from '../src/records/types.js';
import { MAX_HISTORY_ENTRIES } from '../src/records/history-key.js';

/**
 * The fast paths of record-fast-paths.ts accelerate zod's handle and denial schemas: each must accept
 * exactly what its schema accepts, and return what the schema returns (same members, same order, fresh
 * objects), for valid records and for every kind of broken one; the handle's in both modes
 * (development: loopback endpoints).
 */

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const b64chars = (n: number) => fc.array(fc.constantFrom(...B64), { minLength: n, maxLength: n }).map((cs) => cs.join(''));
/** A canonical Ed25519 `x`, or one whose last character sets unused bits (refused). */
const x = fc.oneof(
  { weight: 30, arbitrary: fc.tuple(b64chars(42), fc.constantFrom(...'AEIMQUYcgkosw048')).map(([a, b]) => a + b) },
  fc.tuple(b64chars(42), fc.constantFrom(...B64)).map(([a, b]) => a + b),
  b64chars(41),
  b64chars(44),
  fc.constant('+'.repeat(43)),
);
const jwk = fc.oneof(
  { weight: 30, arbitrary: x.map((v) => ({ kty: 'OKP', crv: 'Ed25519', x: v })) },
  { weight: 1, arbitrary: x.map((v) => ({ crv: 'Ed25519', kty: 'OKP', x: v })) },
  { weight: 1, arbitrary: x.map((v) => ({ kty: 'OKP', crv: 'Ed25519', x: v, d: v })) },
  { weight: 1, arbitrary: x.map((v) => ({ kty: 'OKP', crv: 'X25519', x: v })) },
  { weight: 1, arbitrary: x.map((v) => ({ kty: 'EC', crv: 'Ed25519', x: v })) },
  { weight: 1, arbitrary: x.map((v) => ({ kty: 'OKP', x: v })) },
);
const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?$/);
const host = fc.oneof(
  { weight: 30, arbitrary: fc.array(label, { minLength: 1, maxLength: 3 }).map((ls) => `${ls.join('.')}.example`) },
  fc.constantFrom('Example.com', 'xn--bcher-kva.example', 'bücher.example', 'a..b', '127.0.0.1', 'exa_mple.com', 'x.123', 'example.com.'),
);
const local = fc.oneof(
  { weight: 30, arbitrary: fc.stringMatching(/^[a-z0-9_]([a-z0-9._-]{0,8}[a-z0-9_])?$/) },
  fc.constantFrom('Alice', '.a', 'a.', 'a..b', 'é', '', 'a'.repeat(64), 'a'.repeat(65)),
);
const handle = fc.oneof(
  { weight: 30, arbitrary: fc.tuple(local, host).map(([l, h]) => `${l}@${h}`) },
  { weight: 1, arbitrary: fc.constantFrom('no-at', '@example', 'a@b@example', `${'a'.repeat(64)}@${'b'.repeat(250)}.example`) },
);
const endpoint = fc.oneof(
  { weight: 30, arbitrary: fc.tuple(host, fc.stringMatching(/^[a-z0-9/]{0,12}$/)).map(([h, p]) => `https://${h}/${p}`) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'http://localhost:8080/',
      'http://127.0.0.1:3000/x',
      'https://[::1]/',
      'http://social.example/',
      'https://user:pw@social.example/',
      'https://social.example/#frag',
      'https://10.0.0.1/',
      'https://[64:ff9b::a9fe:a9fe]/',
      'https://2852039166/',
      'https://a.localhost/',
      'javascript:alert(1)',
      'https://social.example/a b',
      'https:social.example',
      `https://social.example/${'a'.repeat(2048)}`,
      'HTTPS://SOCIAL.EXAMPLE/',
      'https://social.example./',
    ),
  },
);
/** A SHA-256 in canonical base64url (like `x`, 32 bytes), or one of another length or with unused bits set (refused). */
const sha = x;
const zone = fc.oneof(
  { weight: 30, arbitrary: fc.constant('example') },
  { weight: 1, arbitrary: fc.constantFrom('', '.', 'Example', 'a..b', 'x'.repeat(254), 'bücher') },
);
const int = (max: number) =>
  fc.oneof({ weight: 30, arbitrary: fc.integer({ min: 0, max }) }, fc.constantFrom(-1, max, max + 1, 0.5, 1e21, -0, Number.MAX_SAFE_INTEGER + 2));

/** A handle record payload as an honest or careless signer writes it, members in the signer's order. */
const payload = fc
  .record({
    v: fc.oneof({ weight: 30, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constantFrom(2, '1', 1.0000001) }),
    type: fc.oneof({ weight: 30, arbitrary: fc.constant('handle') }, { weight: 1, arbitrary: fc.constantFrom('zone', 'Handle') }),
    zone,
    serial: int(0xffffffff),
    iat: fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }), fc.constant(1_700_000_000)),
    validity: fc.oneof(
      { weight: 30, arbitrary: fc.integer({ min: 1, max: RECORD_LIMITS.maxSignatureValidity }) },
      fc.constantFrom(0, -1, RECORD_LIMITS.maxSignatureValidity + 1, 0.5),
    ),
    handle,
    endpoint,
    keys: fc.oneof(
      { weight: 30, arbitrary: fc.array(jwk, { minLength: 1, maxLength: MAX_HANDLE_KEYS }) },
      { weight: 1, arbitrary: fc.array(jwk, { minLength: 0, maxLength: MAX_HANDLE_KEYS + 2 }) },
    ),
    ttl: int(RECORD_LIMITS.maxTtl),
    op: sha,
    genesis: sha,
    seq: fc.oneof({ weight: 10, arbitrary: fc.integer({ min: 1, max: MAX_HISTORY_ENTRIES }) }, fc.constantFrom(0, -1, 1.5, MAX_HISTORY_ENTRIES + 1)),
  })
  .map(({ validity, iat, ...r }) => ({
    v: r.v,
    type: r.type,
    zone: r.zone,
    serial: r.serial,
    iat,
    exp: iat + validity,
    handle: r.handle,
    endpoint: r.endpoint,
    keys: r.keys,
    ttl: r.ttl,
    op: r.op,
    genesis: r.genesis,
    seq: r.seq,
  }));

/** Values of every JSON type and edge, for replacing a member. */
const anyValue = fc
  .oneof(
    fc.jsonValue({ maxDepth: 2 }),
    fc.constantFrom(null, true, 0, -0, 1, 1.5, -1, 2 ** 40 + 1, 2 ** 53, '', 'handle', [], {}, [{}], 'https://social.example/'),
  )
  .map((v) => (typeof v === 'object' && v !== null ? structuredClone(v) : v)); // constants are shared between runs, and mutations edit in place

type Mutation = (p: Record<string, unknown>) => void;

/** A member of the record's own deleted or replaced, or a member of another name added. */
function memberMutations(members: readonly string[], others: readonly string[]): fc.Arbitrary<Mutation>[] {
  const member = fc.constantFrom(...members);
  return [
    member.map((m) => (p: Record<string, unknown>) => void delete p[m]),
    fc.tuple(member, anyValue).map(
      ([m, v]) =>
        (p: Record<string, unknown>) =>
          void (p[m] = v),
    ),
    fc.tuple(fc.constantFrom(...others), anyValue).map(([m, v]) => (p: Record<string, unknown>) => {
      // Through JSON text, as a payload arrives: "__proto__" becomes an own member there too.
      const text = JSON.stringify(p).slice(1, -1);
      const json = `{${text}${text === '' ? '' : ','}${JSON.stringify(m)}:${JSON.stringify(v) ?? 'null'}}`;
      for (const k of Object.keys(p)) delete p[k];
      Object.assign(p, JSON.parse(json));
    }),
  ];
}

/** A payload as JSON.parse returns it, after up to three of `mutation`. */
function mutated(payload: fc.Arbitrary<object>, mutation: fc.Arbitrary<Mutation>): fc.Arbitrary<unknown> {
  return fc.tuple(payload, fc.array(mutation, { maxLength: 3 })).map(([p, ms]) => {
    const copy = JSON.parse(JSON.stringify(p)) as Record<string, unknown>;
    for (const m of ms) m(copy);
    return JSON.parse(JSON.stringify(copy)) as unknown;
  });
}

/** That a fast path and zod decide `value` alike and, when both accept it, return the same record as fresh objects. */
function sameAsZod(fast: object | null, zod: { success: boolean; data?: unknown; error?: { issues: unknown[] } }, value: unknown): void {
  expect(fast !== null, `fast ${fast !== null} zod ${zod.success}: ${JSON.stringify(value)} ${zod.success ? '' : JSON.stringify(zod.error?.issues[0])}`).toBe(
    zod.success,
  );
  // The same record, members in the same order, as fresh objects.
  if (fast !== null && zod.success) {
    expect(JSON.stringify(fast)).toBe(JSON.stringify(zod.data));
    expect(fast).toStrictEqual(zod.data);
    expect(fast).not.toBe(value);
  }
}

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  ...memberMutations(
    ['v', 'type', 'zone', 'serial', 'iat', 'exp', 'handle', 'endpoint', 'keys', 'ttl', 'op'],
    ['extra', 'Handle', '__proto__', 'constructor', 'alsoKnownAs', 'movedTo', ''],
  ),
  fc.constant((p: Record<string, unknown>) => {
    const keys = p.keys as unknown[];
    if (Array.isArray(keys) && keys.length > 0) keys.push({ ...(keys[0] as object) });
  }),
  fc.tuple(fc.constantFrom('kty', 'crv', 'x', 'd'), anyValue).map(([m, v]) => (p: Record<string, unknown>) => {
    const keys = p.keys as Record<string, unknown>[];
    if (Array.isArray(keys) && keys.length > 0) keys[keys.length - 1] = { ...keys[keys.length - 1], [m]: v };
  }),
  fc.constant((p: Record<string, unknown>) => {
    const entries = Object.entries(p).reverse();
    for (const k of Object.keys(p)) delete p[k];
    Object.assign(p, Object.fromEntries(entries));
  }),
);

const input = mutated(payload, mutation);

function agrees(value: unknown, loopback: boolean): void {
  sameAsZod(fastHandleRecord(value, loopback), (loopback ? developmentRecordSchemas : recordSchemas).handle.safeParse(value), value);
}

function agreesInBothModes(value: unknown): void {
  for (const loopback of [false, true]) agrees(value, loopback);
}

/**
 * Checks `agree` on `runs` generated values, and that both sides of the schema's boundary were exercised,
 * not one: more than `least.accepted` values the schema accepts and more than `least.refused` it refuses.
 */
function agreesOnGenerated(
  values: fc.Arbitrary<unknown>,
  agree: (value: unknown) => void,
  schema: { safeParse(value: unknown): { success: boolean } },
  runs: number,
  least: { accepted: number; refused: number },
): void {
  let accepted = 0;
  let refused = 0;
  fc.assert(
    fc.property(values, (value) => {
      agree(value);
      if (schema.safeParse(value).success) accepted++;
      else refused++;
    }),
    { numRuns: runs },
  );
  expect(accepted).toBeGreaterThan(least.accepted);
  expect(refused).toBeGreaterThan(least.refused);
}

/** Checks `agree` on values that are not records at all: a few odd ones (`word` among them), then `runs` arbitrary JSON values. */
function agreesOnNonRecords(agree: (value: unknown) => void, word: string, runs: number): void {
  for (const v of [null, undefined, 0, word, [], [1], {}, { v: 1 }]) agree(v);
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 3 }), (v) => agree(v)),
    { numRuns: runs },
  );
}

describe('the handle record fast path accepts exactly what the schema accepts', () => {
  it('agrees with zod on generated records, valid and mutated, in both modes', () => {
    agreesOnGenerated(input, agreesInBothModes, recordSchemas.handle, 10_000, { accepted: 400, refused: 3_000 });
  });

  it('agrees with zod on values that are not records at all', () => {
    agreesOnNonRecords(agreesInBothModes, 'handle', 2_000);
  });

  it('accepts the usual record, so that zod is not consulted for it', () => {
    const record = {
      v: 1,
      type: 'handle',
      zone: 'example',
      serial: 7,
      iat: 1_700_000_000,
      exp: 1_700_086_400,
      handle: 'alice@social.example',
      endpoint: 'https://social.example/users/alice',
      keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'A'.repeat(43) }],
      ttl: 3600,
      op: `${'B'.repeat(42)}E`,
      genesis: `${'C'.repeat(42)}Q`,
      seq: 2,
    };
    expect(fastHandleRecord(record, false)).toStrictEqual(recordSchemas.handle.parse(record));
    expect(fastHandleRecord({ ...record, endpoint: 'http://localhost:8080/' }, false)).toBeNull();
    expect(fastHandleRecord({ ...record, endpoint: 'http://localhost:8080/' }, true)).not.toBeNull();
  });
});

const HEX = '0123456789abcdef';
const hex = (n: number) => fc.array(fc.constantFrom(...HEX), { minLength: n, maxLength: n }).map((cs) => cs.join(''));
/** A name hash, or something that looks like one and is not. */
const nameHash = fc.oneof(
  { weight: 30, arbitrary: hex(64) },
  fc.constantFrom('A'.repeat(64), '0'.repeat(63), '0'.repeat(65), 'g'.repeat(64), ''),
  hex(64).map((h) => h.toUpperCase()),
);

/** A denial payload as an honest or careless signer writes it. */
const denialPayload = fc
  .record({
    v: fc.oneof({ weight: 30, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.constantFrom(2, '1') }),
    zone,
    serial: int(0xffffffff),
    iat: fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }), fc.constant(1_700_000_000)),
    validity: fc.oneof(
      { weight: 30, arbitrary: fc.integer({ min: 1, max: RECORD_LIMITS.maxSignatureValidity }) },
      fc.constantFrom(0, -1, RECORD_LIMITS.maxSignatureValidity + 1, 0.5),
    ),
    type: fc.oneof({ weight: 30, arbitrary: fc.constant('denial') }, { weight: 1, arbitrary: fc.constantFrom('handle', 'Denial') }),
    after: fc.oneof(nameHash, fc.constant(null)),
    next: fc.oneof(nameHash, fc.constant(null)),
    hashes: fc.oneof(
      { weight: 30, arbitrary: fc.array(nameHash, { maxLength: DENIAL_MAX_HASHES }) },
      { weight: 1, arbitrary: fc.array(nameHash, { minLength: DENIAL_MAX_HASHES + 1, maxLength: DENIAL_MAX_HASHES + 2 }) },
    ),
    hash: fc.oneof(
      { weight: 30, arbitrary: hex(16).map((salt) => ({ alg: 'sha256', salt })) },
      fc.constantFrom(
        { alg: 'sha512', salt: '0'.repeat(16) },
        { alg: 'sha256', salt: '0'.repeat(15) },
        { alg: 'sha256' },
        { salt: '0'.repeat(16), alg: 'sha256', x: 1 },
        [],
        null,
      ),
    ),
    ttl: int(RECORD_LIMITS.maxMinimum),
  })
  .map(({ validity, iat, ...r }) => ({
    v: r.v,
    zone: r.zone,
    serial: r.serial,
    iat,
    exp: iat + validity,
    type: r.type,
    after: r.after,
    next: r.next,
    hashes: r.hashes,
    hash: r.hash,
    ttl: r.ttl,
  }));

const denialMutation: fc.Arbitrary<Mutation> = fc.oneof(
  ...memberMutations(['v', 'type', 'zone', 'serial', 'iat', 'exp', 'after', 'next', 'hashes', 'hash', 'ttl'], ['extra', 'noCut', '__proto__', '']),
  fc.tuple(anyValue).map(([v]) => (p: Record<string, unknown>) => {
    if (Array.isArray(p.hashes)) p.hashes.push(v);
  }),
  fc.tuple(fc.constantFrom('alg', 'salt', 'extra'), anyValue).map(([m, v]) => (p: Record<string, unknown>) => {
    if (typeof p.hash === 'object' && p.hash !== null) p.hash = { ...p.hash, [m]: v };
  }),
);

const denialInput = mutated(denialPayload, denialMutation);

function denialAgrees(value: unknown): void {
  const fast = fastDenialRecord(value);
  const zod = recordSchemas.denial.safeParse(value);
  sameAsZod(fast, zod, value);
  if (fast !== null && zod.success) {
    expect(fast.hashes).not.toBe((value as { hashes: unknown }).hashes);
    expect(fast.hash).not.toBe((value as { hash: unknown }).hash);
  }
}

describe('the denial record fast path accepts exactly what the schema accepts', () => {
  it('agrees with zod on generated denials, valid and mutated', () => {
    agreesOnGenerated(denialInput, denialAgrees, recordSchemas.denial, 5_000, { accepted: 200, refused: 1_500 });
  });

  it('agrees with zod on values that are not denials at all', () => {
    agreesOnNonRecords(denialAgrees, 'denial', 1_000);
  });

  it('accepts the usual denial, so that zod is not consulted for it', () => {
    const record = {
      v: 1,
      zone: 'example',
      serial: 7,
      iat: 1_700_000_000,
      exp: 1_700_086_400,
      type: 'denial',
      after: null,
      next: 'f'.repeat(64),
      hashes: ['0'.repeat(64), 'a'.repeat(64)],
      hash: { alg: 'sha256', salt: '0123456789abcdef' },
      ttl: 300,
    };
    expect(fastDenialRecord(record)).toStrictEqual(recordSchemas.denial.parse(record));
  });
});
