import { describe, expect, it } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { LookupWire } from '../src/http/lookup-wire.js';
import type { ProofStep, TraceStep } from '../src/resolver/proof.js';
import type { BatchResult, BridgedResult, StoredBatchResult, StoredLookupResult, StoredResult, VerifiedResult } from '../src/resolver/resolver.js';
import { recordPacker } from '../src/resolver/packed-records.js';
import { signCompact } from '../src/records/jws.js';
import { generatePrivateJwk, signingKeyFromJwk } from '../src/records/keys.js';

// The wire writes bodies from kept byte pieces; whatever it keeps, a body must be exactly the JSON of the
// result it stands for (docs/protocol.md, section 7), byte for byte.

const steps = (zone: string): ProofStep[] => [
  { zone: '.', zoneRecord: `root.${zone}.sig`, delegation: `deleg-${zone}.x.y` },
  { zone, zoneRecord: `${zone}.zone.sig` },
];
const socialSteps = steps('social.example');
const idnSteps = steps('bücher.example');
const trace: TraceStep[] = [{ zone: 'social.example', server: 'https://ns.social.example', rttMs: 3 }];

function verified(handle: string, over: Partial<VerifiedResult> = {}, chain = socialSteps): VerifiedResult {
  return {
    handle,
    status: 'found',
    zone: chain[chain.length - 1]!.zone,
    endpoint: `https://social.example/users/${encodeURIComponent(handle.split('@')[0]!)}`,
    keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'a'.repeat(43) }],
    ttl: 300,
    exp: 2_000_000_000,
    proof: { steps: chain, record: `h.${handle.length}.sig` },
    trace,
    verified: true,
    witnessed: false,
    anchor: 'configured',
    stale: false,
    ...over,
  } as VerifiedResult;
}

const bridged: BridgedResult = {
  handle: 'zoë@elsewhere.example',
  status: 'found',
  zone: null,
  endpoint: 'https://elsewhere.example/@zoë',
  verified: false,
  source: 'webfinger',
  subject: 'acct:zoë@elsewhere.example',
  aliases: ['https://elsewhere.example/@zoë'],
  ttl: 60,
  stale: true,
} as BridgedResult;

/** A result as the resolver keeps it and gives it to the wire: its proof packed. */
function stored(r: VerifiedResult | BridgedResult): StoredLookupResult {
  return r.verified ? { ...r, proof: recordPacker.packProof(r.proof) } : r;
}
const storedItems = (items: readonly BatchResult[]): StoredBatchResult[] =>
  items.map((i) => ('result' in i ? { handle: i.handle, result: stored(i.result) } : i));

/** Real signed records, which the resolver packs: the wire must write them back exactly. */
const zoneKey = signingKeyFromJwk(generatePrivateJwk());
const signed = (what: string) => signCompact({ v: 1, zone: 'social.example', what }, zoneKey, 'idns-record');

/** The GET body a result stands for, written the plain way. */
function expectedBody(r: VerifiedResult | BridgedResult): unknown {
  if (!r.verified) {
    const { handle, status, endpoint, verified, source, subject, aliases, profile, ttl, stale } = r;
    return {
      handle,
      status,
      zone: null,
      endpoint,
      keys: [],
      verified,
      witnessed: false,
      source,
      subject,
      aliases,
      ...(profile ? { profile } : {}),
      ttl,
      stale,
    };
  }
  const { handle, status, zone, endpoint, keys, profile, alsoKnownAs, movedTo, anchor, ttl, stale, proof } = r;
  return {
    handle,
    status,
    zone,
    endpoint,
    keys,
    ...(profile ? { profile } : {}),
    ...(alsoKnownAs ? { alsoKnownAs } : {}),
    ...(movedTo ? { movedTo } : {}),
    verified: true,
    witnessed: false,
    anchor,
    ttl,
    stale,
    proof,
    ...(r.trace ? { trace: r.trace } : {}),
  };
}

describe('LookupWire', () => {
  const results: (VerifiedResult | BridgedResult)[] = [
    verified('alice@social.example'),
    verified('jürgen@bücher.example', { endpoint: 'https://bücher.example/users/jürgen', profile: 'https://bücher.example/@jürgen' }, idnSteps),
    verified('moved@social.example', { alsoKnownAs: ['acct:old@social.example'], movedTo: 'acct:new@other.example', stale: true, ttl: 0 }),
    verified('nobody@social.example', {
      status: 'not_found',
      endpoint: undefined,
      keys: undefined,
      proof: { steps: socialSteps, record: 'denial.sig', noCut: ['gap.one', 'gap.two'] },
    } as Partial<VerifiedResult>),
    verified('untraced@social.example', { trace: undefined }),
    verified('signed@social.example', {
      proof: {
        steps: socialSteps,
        record: signed('record'),
        history: [
          [1, signed('genesis')],
          [2, signed('update')],
        ],
      },
    }),
    bridged,
  ];

  it('writes each GET body as the JSON of its result, the first time and from the kept pieces', () => {
    const wire = new LookupWire();
    for (const round of [1, 2]) {
      for (const r of results) {
        const bytes = wire.body(stored(r));
        expect(JSON.parse(bytes.toString('utf8')), `${r.handle}, round ${round}`).toEqual(expectedBody(r));
        const chunks = wire.chunks(stored(r));
        expect(Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c)))).toEqual(bytes);
      }
    }
  });

  it('writes a batch as chains once and results naming them, the same bytes whatever was kept before', () => {
    const error = new IdnsError('invalid_handle', 'not a handle: «bad handle»');
    const items: BatchResult[] = [
      ...results.map((result) => ({ handle: result.handle, result })),
      { handle: 'bad handle', error },
      { handle: 'alice@social.example', result: verified('alice@social.example', { ttl: 12 }) },
    ];
    const fresh = new LookupWire().batch(storedItems(items));
    const warm = new LookupWire();
    warm.batch(storedItems(items));
    expect(warm.batch(storedItems(items))).toEqual(fresh);
    const body = JSON.parse(fresh.toString('utf8')) as { chains: unknown[]; results: Record<string, unknown>[] };
    expect(body.chains).toEqual([socialSteps, idnSteps]);
    expect(body.results).toHaveLength(items.length);
    items.forEach((item, i) => {
      if (!('result' in item)) return expect(body.results[i]).toEqual({ handle: item.handle, error: { code: 'invalid_handle', message: error.message } });
      const want = expectedBody(item.result) as Record<string, unknown>;
      if (!item.result.verified) return expect(body.results[i]).toEqual(want);
      const { steps: _steps, ...proofRest } = item.result.proof;
      const chain = item.result.proof.steps === idnSteps ? 1 : 0;
      expect(body.results[i]).toEqual({ ...want, proof: { chain, ...proofRest } });
    });
  });

  it('stays exact past the pieces it keeps, and when a proof comes back with another trace', () => {
    const wire = new LookupWire();
    const many = Array.from({ length: 5000 }, (_, i) => verified(`u${i}@social.example`, { ttl: i % 7 }));
    const kept = many.map((r) => stored(r) as StoredResult);
    for (const r of kept) wire.chunks(r);
    // The first ones were let go and are made again; a proof seen with a new trace is not served the old one.
    for (const [r, s] of [
      [many[0]!, kept[0]!],
      [many[4999]!, kept[4999]!],
      [
        { ...many[4998]!, trace: [{ zone: 'x', server: 'https://x', rttMs: 1 }] },
        { ...kept[4998]!, trace: [{ zone: 'x', server: 'https://x', rttMs: 1 }] },
      ],
    ] as const) {
      expect(JSON.parse(wire.body(s).toString('utf8'))).toEqual(expectedBody(r));
    }
    const batch = JSON.parse(wire.batch(kept.slice(0, 100).map((result) => ({ handle: result.handle, result }))).toString('utf8')) as {
      results: { ttl: number }[];
    };
    expect(batch.results.map((r) => r.ttl)).toEqual(many.slice(0, 100).map((r) => r.ttl));
  });
});
