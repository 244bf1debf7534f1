import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LoadedRecord } from '../src/store/records.js';
import { Store } from '../src/store/store.js';

// Bulk loads (a transfer's copy, an import) insert many rows a statement with INSERT OR ROLLBACK: a
// broken constraint must end the whole transaction, and leave the store as it was before it.

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fileStore(): { store: Store; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'idns-bulk-'));
  dirs.push(dir);
  return { store: Store.open(dir), dir };
}

/** Bytes this process has handed to write calls so far (Linux). */
const bytesWritten = (): number => Number(/^wchar: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'))![1]);

const handles = (from: number, to: number): LoadedRecord[] =>
  Array.from({ length: to - from }, (_, i) => ({ type: 'handle', key: `u${from + i}@example`, jws: `h.${'p'.repeat(200)}.${from + i}` }));

describe('bulk loads', () => {
  it('writes each page of a load (a copy, an import) once, to the WAL: no statement journal beside it', () => {
    const { store, dir } = fileStore();
    const wal = () => statSync(join(dir, 'idns.sqlite-wal')).size;
    const loads: [string, () => void][] = [
      ['copy', () => store.records.insertLoaded('copy-1', handles(10, 3000))],
      ['import', () => store.records.insertNew('example', 'handle', 1, 100, handles(10, 3000))],
    ];
    store.write(() => store.records.insertLoaded('copy-1', handles(0, 10)));
    for (const [what, load] of loads) {
      const [walBefore, before] = [wal(), bytesWritten()];
      store.write(load);
      const [walAfter, after] = [wal(), bytesWritten()];
      expect(walAfter - walBefore, what).toBeGreaterThan(500_000);
      // A plain INSERT of 64 rows a statement also copies each page it touches to a statement journal
      // (a temporary file past 64 KiB): about 2.4 times the WAL's bytes in all.
      expect(after - before, what).toBeLessThan(1.2 * (walAfter - walBefore));
    }
  });

  it("a copy's rows repeating a (type, key) in a statement of many rows: the whole transaction is rolled back, and the store takes the next one", () => {
    const { store } = fileStore();
    store.write(() => store.records.insertLoaded('copy-1', handles(0, 100)));
    // Past the first statement of 64 rows, so the failing statement is not the transaction's first write.
    const repeating = [...handles(100, 200), ...handles(150, 151), ...handles(200, 300)];
    expect(() =>
      store.write(() => {
        store.records.retire('copy-2', 1);
        store.records.insertLoaded('copy-1', repeating);
      }),
    ).toThrow(expect.objectContaining({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' }) as Error);
    expect(store.records.totals('copy-1').count).toBe(100);
    expect(store.records.isRetired('copy-2')).toBe(false);
    store.write(() => store.records.insertLoaded('copy-1', handles(100, 300)));
    expect(store.records.totals('copy-1').count).toBe(300);
  });

  it('an import repeating a record it stores: nothing of its transaction stays', () => {
    const { store } = fileStore();
    const rows = (from: number, to: number) => handles(from, to).map(({ key, jws }) => ({ key, jws }));
    store.write(() => store.records.insertNew('example', 'handle', 1, 100, rows(0, 10)));
    expect(() =>
      store.write(() => {
        store.records.insertNew('example', 'handle', 2, 100, rows(10, 200));
        store.records.insertNew('example', 'handle', 2, 100, [...rows(200, 300), ...rows(5, 6)]);
      }),
    ).toThrow(expect.objectContaining({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' }) as Error);
    expect(store.records.totals('example').count).toBe(10);
    store.write(() => store.records.insertNew('example', 'handle', 2, 100, rows(10, 300)));
    expect(store.records.totals('example').count).toBe(300);
  });
});
