import { describe, expect, it } from 'vitest';
import { signCompact } from '../src/records/jws.js';
import { generatePrivateJwk, signingKeyFromJwk } from '../src/records/keys.js';
import type { NumberedEntry } from '../src/records/history-chain.js';
import { RecordPacker } from '../src/resolver/packed-records.js';
import type { Proof } from '../src/resolver/proof.js';

/**
 * The compact form a resolver keeps records in (src/resolver/packed-records.ts): whatever it packs, it
 * must give back character for character, since a record's signature covers its text; what it cannot
 * give back exactly it keeps as it came.
 */

const key = signingKeyFromJwk(generatePrivateJwk());
const other = signingKeyFromJwk(generatePrivateJwk());
const record = (i: number, k = key) =>
  signCompact(
    { v: 1, zone: 'social.example', handle: `u${i}@social.example`, endpoint: `https://social.example/users/${i}`, seq: i, note: 'é'.repeat(i % 5) },
    k,
    'idns-record',
  );

describe('RecordPacker', () => {
  it('packs a signed record into fewer characters and gives back exactly its text', () => {
    const p = new RecordPacker();
    for (let i = 0; i < 50; i++) {
      const jws = record(i, i % 2 === 0 ? key : other);
      const packed = p.pack(jws);
      expect(packed).not.toBe(jws);
      // The header goes to the table; the payload and signature are kept as bytes (3 for each 4 characters).
      expect(packed.length).toBeLessThan(0.75 * (jws.length - jws.indexOf('.')) + 8);
      expect(p.unpack(packed)).toBe(jws);
      // Packing is idempotent: a packed record is returned as it is.
      expect(p.pack(packed)).toBe(packed);
    }
  });

  it('keeps as it came what it could not give back exactly: non-canonical base64url, padding, other text', () => {
    const p = new RecordPacker();
    const jws = record(7);
    const [h, body, sig] = jws.split('.') as [string, string, string];
    // The last character of a 64-byte signature carries 4 unused bits: setting one changes the text, not the bytes.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const stray = `${h}.${body}.${sig.slice(0, -1)}${alphabet[alphabet.indexOf(sig.at(-1)!) ^ 1]}`;
    expect(Buffer.from(stray.split('.')[2]!, 'base64url')).toEqual(Buffer.from(sig, 'base64url'));
    const odd = [
      stray,
      `${h}.${body}.${sig}=`,
      `${h}.${body}`,
      `${h}.${body}.${sig}.x`,
      'e'.repeat(100),
      '',
      `${h}.${body}!.${sig}`,
      `${h}.${body}.${sig}\u0100`,
    ];
    for (const s of odd) {
      expect(p.pack(s)).toBe(s);
      expect(p.unpack(s)).toBe(s);
    }
  });

  it('remembers a bounded number of headers: a record with a header beyond the bound is kept as it came', () => {
    const p = new RecordPacker(1);
    const mine = record(1);
    const theirs = record(2, other);
    expect(p.unpack(p.pack(mine))).toBe(mine);
    expect(p.pack(theirs)).toBe(theirs);
    // The header remembered still packs.
    expect(p.pack(record(3))).not.toBe(record(3));
  });

  it('packs a history into one string and gives back its entries, numbers and records, whatever they hold', () => {
    const p = new RecordPacker();
    const entries: NumberedEntry[] = [
      [1, record(1)],
      [2, 'not a jws: kept as it is, colons : and all'],
      [9_007_199_254_740_991, record(3, other)],
      [-4, ''],
    ];
    const packed = p.packHistory(entries);
    expect(p.unpackHistory(packed)).toEqual(entries);
    // One string for one array, however often asked.
    expect(p.packHistory(entries)).toBe(packed);
    expect(p.unpackHistory(p.packHistory([]))).toEqual([]);
  });

  it('packs a proof member by member and gives back the same proof', () => {
    const p = new RecordPacker();
    const steps = [{ zone: 'social.example', zoneRecord: record(0) }];
    const proofs: Proof[] = [
      { steps, record: record(1), history: [[1, record(2)]] },
      { steps, record: record(3), noCut: ['a.b.c'] },
      { steps, record: record(4), history: [[1, record(5)]], anchor: { type: 'https', url: 'https://social.example/.well-known/idns', ds: ['x'] } },
    ];
    for (const proof of proofs) {
      const stored = p.packProof(proof);
      expect(stored.steps).toBe(steps);
      expect(stored.record.length).toBeLessThan(proof.record.length);
      const back = p.unpackProof(stored);
      expect(back).toEqual(proof);
      expect(Object.keys(back)).toEqual(Object.keys(proof));
    }
  });
});
