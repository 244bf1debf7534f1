import fc from 'fast-check';
import { createCipheriv, createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { DIGEST_LANES, DIGEST_STATE_BYTES, ZoneDigest, digestElement } from '../src/records/digest.js';
import { compactItems, type CompactItem } from '../src/replication/compact.js';
import { DigestWorkers } from '../src/replication/digest-workers.js';
import type { LoadedRecord, StoredType } from '../src/store/records.js';
import { chunked } from './support/chunks.js';

// The compact full-transfer format (docs/protocol.md §11.1), the digest (§5) computed word-wise and in
// worker threads, checked against a plain lane-by-lane reading of §5. Seeds are fixed so a failure reproduces.
const params = { numRuns: Number(process.env.FUZZ_RUNS ?? 300), seed: 20261124 };

const TYPES: StoredType[] = ['handle', 'delegation', 'denial'];
const ascii = (min: number, max: number) =>
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), minLength: min, maxLength: max });
const record = fc.record({ type: fc.constantFrom(...TYPES), key: ascii(0, 60), jws: ascii(1, 300) });

/** RFC 8439's ChaCha20 key stream (nonce and counter zero) through node:crypto (OpenSSL), not the code under test (libsodium). */
function chacha20Stream(key: Buffer, bytes: number): Buffer {
  return createCipheriv('chacha20', key, Buffer.alloc(16)).update(Buffer.alloc(bytes));
}

/** §5 read literally: the ChaCha20 stream under SHA-256 of the element, as little-endian 16-bit lanes, summed modulo 2^16, lane by lane. */
function referenceDigest(records: readonly LoadedRecord[]): string {
  const lanes = new Array<number>(DIGEST_LANES).fill(0);
  for (const r of records) {
    const out = chacha20Stream(createHash('sha256').update(`${r.type}\n${r.key}\n${r.jws}`, 'utf8').digest(), DIGEST_STATE_BYTES);
    for (let i = 0; i < DIGEST_LANES; i++) lanes[i] = (lanes[i]! + out.readUInt16LE(i * 2)) % 65536;
  }
  const state = Buffer.alloc(DIGEST_STATE_BYTES);
  lanes.forEach((v, i) => state.writeUInt16LE(v, i * 2));
  return createHash('sha256').update(state).digest('base64url');
}

function compactStream(records: readonly LoadedRecord[]): Buffer {
  const lines = [
    JSON.stringify({ kind: 'start', mode: 'full', zone: 'example' }),
    ...records.map((r) => `${r.type}\t${r.key}\t${r.jws}`),
    JSON.stringify({ kind: 'end', count: records.length }),
  ];
  return Buffer.from(`${lines.join('\n')}\n`, 'latin1');
}

async function drain(chunks: Uint8Array[], maxLine = 1 << 16): Promise<CompactItem[]> {
  const items: CompactItem[] = [];
  for await (const item of compactItems(
    (async function* () {
      yield* chunks;
    })(),
    maxLine,
  )) {
    items.push(item);
  }
  return items;
}

describe('the zone digest', () => {
  it("expands each element with RFC 8439's ChaCha20 (its test vector A.1 #1: key and nonce zero)", () => {
    expect(chacha20Stream(Buffer.alloc(32), 64).toString('hex')).toBe(
      '76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586',
    );
  });

  it('computed word-wise equals §5 read lane by lane, and removing undoes adding', () => {
    fc.assert(
      fc.property(fc.array(record, { maxLength: 12 }), (records) => {
        const d = ZoneDigest.empty();
        for (const r of records) d.add(r.type, r.key, r.jws);
        expect(d.value()).toBe(referenceDigest(records));
        const restored = ZoneDigest.fromState(d.state());
        for (const r of records.slice(1)) restored.remove(r.type, r.key, r.jws);
        expect(restored.value()).toBe(referenceDigest(records.slice(0, 1)));
      }),
      params,
    );
  });

  it('computed in worker threads (strings, bytes, one or two workers, the first records here) equals the one computed here', async () => {
    const records: LoadedRecord[] = Array.from({ length: 1500 }, (_, i) => ({
      type: TYPES[i % 3]!,
      key: `user${i}@example`,
      jws: `h.${'p'.repeat(i % 97)}.s${i}`,
    }));
    const expected = referenceDigest(records);
    for (const [workers, inlineFirst] of [
      [1, 0],
      [2, 0],
      [1, 300],
      [2, 5000],
    ] as const) {
      const pool = new DigestWorkers(workers, { batchSize: 100, maxInFlight: 2, inlineFirst });
      for (const [i, r] of records.entries()) {
        if (i % 2 === 0) {
          pool.add(r.type, r.key, r.jws);
        } else {
          const bytes = Buffer.from(`junk${digestElement(r.type, r.key, r.jws)}junk`);
          pool.addElements(new Uint8Array(bytes), Uint32Array.of(4, bytes.length - 4));
        }
      }
      expect((await pool.finish()).value()).toBe(expected);
    }
  });
});

describe('the compact transfer format', () => {
  it('splits any chunking into the same lines, and the bytes of each record are its digest element', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(record, { maxLength: 15 }), fc.array(fc.integer({ min: 1, max: 80 }), { maxLength: 40 }), async (records, cuts) => {
        const items = await drain(chunked(compactStream(records), cuts));
        expect(items[0]).toMatchObject({ kind: 'json', value: { kind: 'start' } });
        expect(items.at(-1)).toMatchObject({ kind: 'json', value: { kind: 'end', count: records.length } });
        const rows: LoadedRecord[] = [];
        for (const item of items.slice(1, -1)) {
          if (item.kind !== 'records') throw new Error('a JSON line in the middle');
          item.rows.forEach((r, i) => {
            const element = Buffer.from(item.bytes.subarray(item.ranges[2 * i]!, item.ranges[2 * i + 1]!)).toString('latin1');
            expect(element).toBe(digestElement(r.type, r.key, r.jws));
          });
          rows.push(...item.rows);
        }
        expect(rows).toEqual(records);
      }),
      params,
    );
  });

  it.each([
    ['a byte that is not ASCII', 'handle\tä@example\tx.y.z', /not ASCII/],
    ['two fields', 'handle\ta@example', /not "type TAB key TAB record"/],
    ['four fields', 'handle\ta@example\tx.y.z\textra', /more than three fields/],
    ['an unknown type', 'zone\texample\tx.y.z', /bad type or key/],
    ['an overlong key', `handle\t${'k'.repeat(401)}\tx.y.z`, /bad type or key/],
  ])('refuses a record line with %s', async (_what, line, message) => {
    const stream = Buffer.from(`{"kind":"start"}\n${line}\n{"kind":"end"}\n`, 'utf8');
    await expect(drain([stream])).rejects.toThrow(message);
  });

  it('bounds the line it buffers, and refuses a stream that stops mid-line', async () => {
    await expect(drain([Buffer.from(`{"kind":"start"}\nhandle\ta\t${'x'.repeat(200)}`)], 100)).rejects.toThrow(/longer than 100 bytes/);
    await expect(drain([Buffer.from('{"kind":"start"}\nhandle\ta\tx.y')])).rejects.toThrow(/middle of a line/);
  });

  it('throws only typed errors on arbitrary bytes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), async (chunks) => {
        try {
          await drain(chunks, 64);
        } catch (err) {
          if (!(err instanceof IdnsError)) throw err;
        }
      }),
      params,
    );
  });
});
