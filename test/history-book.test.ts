import { describe, expect, it } from 'vitest';
import { emptyHistory, type NumberedEntry, type VerifiedHistory } from '../src/records/history-chain.js';
import { HistoryBook } from '../src/resolver/histories.js';
import { RecordPacker } from '../src/resolver/packed-records.js';

/**
 * The resolver's history book (src/resolver/histories.ts) on its own: what it keeps of each handle, in
 * which zone, and the characters it counts against its bound, which must be those of the entries it holds.
 */

const point = (handle: string, seq: number): VerifiedHistory => ({
  ...emptyHistory(handle),
  seq,
  op: `op-${seq}`,
  genesis: 'op-1',
  state: { endpoint: `https://home.example/${handle}`, keys: [] },
});
const entries = (seq: number, chars = 100): NumberedEntry[] => Array.from({ length: seq }, (_, i) => [i + 1, 'e'.repeat(chars)] as const);

/** The characters of the packed entries the book holds, read back from it handle by handle. */
function heldChars(book: HistoryBook, zone: string, handles: readonly string[]): number {
  let n = 0;
  for (const h of handles) n += book.get(zone, h)?.packed.length ?? 0;
  return n;
}

const packer = new RecordPacker();
/** Characters of entries packed (these are not JWS: each is kept as it is, after its number and length). */
const packedChars = (e: readonly NumberedEntry[]): number => packer.packHistory(e).length;

describe('the history book', () => {
  it('keeps one object per handle: the point reached, its zone and its entries, packed as the packer packs the array it was given', () => {
    const book = new HistoryBook(10, 10_000, packer);
    const kept = entries(3);
    book.verified('example.com', point('alice@example.com', 3), kept);
    const got = book.get('example.com', 'alice@example.com')!;
    expect(got).toMatchObject({ handle: 'alice@example.com', seq: 3, op: 'op-3', genesis: 'op-1', zone: 'example.com' });
    expect(got.packed).toBe(packer.packHistory(kept));
    expect(book.entries('example.com', 'alice@example.com')).toEqual(kept);
    // The object kept is the point that verification goes on from.
    expect(book.point('example.com', 'alice@example.com')).toBe(got);
    expect(book.size).toEqual({ handles: 1, chars: packedChars(kept) });
  });

  it('knows a handle only in the zone it was verified in; a point verified in another zone replaces it', () => {
    const book = new HistoryBook(10, 10_000, packer);
    book.verified('example.com', point('alice@a.example.com', 5), entries(5));
    expect(book.point('a.example.com', 'alice@a.example.com')).toBeUndefined();
    // The zone delegated a.example.com away: the child zone answers now, with its own history.
    book.verified('a.example.com', point('alice@a.example.com', 2), entries(2));
    expect(book.point('example.com', 'alice@a.example.com')).toBeUndefined();
    expect(book.point('a.example.com', 'alice@a.example.com')?.seq).toBe(2);
    expect(book.size).toEqual({ handles: 1, chars: packedChars(entries(2)) });
  });

  it('keeps the later point of a handle when a server that lags answers with an older one', () => {
    const book = new HistoryBook(10, 10_000, packer);
    book.verified('example.com', point('alice@example.com', 4), entries(4));
    book.verified('example.com', point('alice@example.com', 2), entries(2));
    expect(book.point('example.com', 'alice@example.com')?.seq).toBe(4);
    expect(book.size.chars).toBe(packedChars(entries(4)));
    book.verified('example.com', point('alice@example.com', 6), entries(6));
    expect(book.point('example.com', 'alice@example.com')?.seq).toBe(6);
    expect(book.size.chars).toBe(packedChars(entries(6)));
  });

  it('counts exactly the characters of the entries it holds, through replacements and evictions, within both bounds', () => {
    const book = new HistoryBook(20, 5_000, packer);
    const handles = Array.from({ length: 60 }, (_, i) => `u${i}@example.com`);
    for (let round = 1; round <= 3; round++) {
      handles.forEach((h, i) => book.verified('example.com', point(h, round + (i % 3)), entries(round + (i % 3), 50 + i)));
      const { handles: n, chars } = book.size;
      expect(n).toBeLessThanOrEqual(20);
      expect(chars).toBeLessThanOrEqual(5_000);
      expect(chars).toBe(heldChars(book, 'example.com', handles));
    }
    // The least recently verified went first: the last handle verified is held, the first is not.
    expect(book.get('example.com', handles.at(-1)!)).toBeDefined();
    expect(book.get('example.com', handles[0]!)).toBeUndefined();
  });

  it('keeps nothing of a history longer than its whole bound of characters', () => {
    const book = new HistoryBook(10, 1_000, packer);
    book.verified('example.com', point('alice@example.com', 20), entries(20));
    expect(book.get('example.com', 'alice@example.com')).toBeUndefined();
    expect(book.size).toEqual({ handles: 0, chars: 0 });
  });
});
