import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/clock.js';
import { createLogger } from '../src/log.js';
import { Housekeeper } from '../src/replication/housekeeping.js';
import { TransferClient } from '../src/replication/transfer-client.js';
import { Store } from '../src/store/store.js';

describe('housekeeping', () => {
  it('drops a retired copy in bounded steps, skipping one still being loaded', () => {
    const store = Store.memory();
    const clock = new ManualClock();
    const rows = Array.from({ length: 25 }, (_, i) => ({ type: 'handle' as const, key: `u${i}@x`, version: 1, exp: 0, jws: `jws${i}` }));
    store.write(() => {
      store.records.putMany('old-copy', rows);
      store.records.putMany('loading-copy', rows);
      store.records.putMany('live', rows.slice(0, 3));
      store.records.retire('loading-copy', 1);
      store.records.retire('old-copy', 2);
    });
    TransferClient.loading.add('loading-copy');
    try {
      const keeper = new Housekeeper(store, clock, createLogger('silent'), { maxEntries: 10, maxAgeSeconds: 3600 }, 10);
      // The loading copy is first in line but skipped; nothing of it goes.
      expect(keeper.runOnce()).toBe(0);
      TransferClient.loading.delete('loading-copy');
      expect([keeper.runOnce(), keeper.runOnce(), keeper.runOnce()]).toEqual([10, 10, 5]);
      expect(store.records.count('loading-copy', 'handle')).toBe(0);
      expect(store.records.nextRetired()).toBe('old-copy');
      expect([keeper.runOnce(), keeper.runOnce(), keeper.runOnce(), keeper.runOnce()]).toEqual([10, 10, 5, 0]);
      expect(store.records.count('old-copy', 'handle')).toBe(0);
      expect(store.records.count('live', 'handle')).toBe(3);
    } finally {
      TransferClient.loading.delete('loading-copy');
      store.close();
    }
  });
});

describe('schedules follow the clock', () => {
  it("a ManualClock's interval fires each period as it advances, once for a long jump, never after it is cleared", () => {
    const clock = new ManualClock();
    const fired: number[] = [];
    const start = clock.now();
    const handle = clock.setInterval(() => fired.push(clock.now() - start), 1000);
    clock.advance(999);
    expect(fired).toEqual([]);
    for (let i = 0; i < 4; i++) clock.advance(500);
    expect(fired).toEqual([1000, 2000]);
    // A day at once: its first period, then the rest as one call at its end (not 86,400), then the period resumes.
    clock.advance(86_400_000);
    expect(fired.slice(2)).toEqual([3000, 86_402_999]);
    clock.advance(1000);
    expect(fired.slice(4)).toEqual([86_403_999]);
    clock.clearInterval(handle);
    clock.advance(10_000);
    expect(fired).toHaveLength(5);
  });

  it('the housekeeper runs on the clock it is given: advancing it does the work, real time alone does not', async () => {
    const store = Store.memory();
    const clock = new ManualClock();
    store.write(() => {
      store.records.putMany(
        'old-copy',
        Array.from({ length: 5 }, (_, i) => ({ type: 'handle' as const, key: `u${i}@x`, version: 1, exp: 0, jws: `jws${i}` })),
      );
      store.records.retire('old-copy', 1);
    });
    const keeper = new Housekeeper(store, clock, createLogger('silent'), { maxEntries: 10, maxAgeSeconds: 3600 }, 10);
    try {
      keeper.start(50);
      await new Promise((r) => setTimeout(r, 120));
      expect(store.records.count('old-copy', 'handle')).toBe(5);
      clock.advance(50);
      expect(store.records.count('old-copy', 'handle')).toBe(0);
    } finally {
      keeper.stop();
      store.close();
    }
  });
});

describe("the journal's trim", () => {
  /** What each step of the trim dropped, until one drops nothing. */
  const trimmedSteps = (keeper: Housekeeper): number[] => {
    const dropped: number[] = [];
    for (let n = keeper.trim('z'); n > 0; n = keeper.trim('z')) dropped.push(n);
    return dropped;
  };
  /** A store holding zone `z` whose journal has `versions` versions of `per` entries each, one a second. */
  const journalOf = (versions: number, per: number, startMs: number) => {
    const store = Store.memory();
    store.write(() => {
      store.zones.insert({
        name: 'z',
        role: 'primary',
        version: versions,
        policy: 'open',
        settings: '{}',
        salt: '00',
        digestState: Buffer.alloc(0),
        record: '',
        recordExp: 0,
        content: 'z',
        journalFloor: 0,
        refreshedAt: null,
        createdAt: 0,
        checkpoint: '',
      });
    });
    const append = (from: number, to: number) =>
      store.write(() => {
        for (let v = from; v <= to; v++)
          for (let i = 0; i < per; i++)
            store.journal.append('z', { version: v, idx: i, action: 'put', type: 'handle', key: `h${v}.${i}`, jws: 'x' }, startMs + v * 1000);
      });
    append(1, versions);
    const entries = () => store.journal.countAfter('z', null, 1e9).entries;
    const first = () => store.journal.oldest('z')?.version;
    return { store, append, entries, first };
  };

  it('drops whole versions from the oldest, a step at a time, down to the limit by count, and counts what is appended meanwhile', () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const j = journalOf(30, 4, clock.now());
    // At most 50 entries, 10 a step: 120 entries go down to 48 (whole versions: 12 of 4), 12 or fewer a step.
    const keeper = new Housekeeper(j.store, clock, createLogger('silent'), { maxEntries: 50, maxAgeSeconds: 3600 }, 10, 1_000);
    const dropped = trimmedSteps(keeper);
    expect(dropped.every((n) => n > 0 && n <= 12 && n % 4 === 0)).toBe(true);
    expect(j.entries()).toBe(48);
    expect(j.first()).toBe(19);
    expect(j.store.zones.get('z')!.journalFloor).toBe(18);
    // Appended after: the count follows, and the trim takes the journal back under the limit.
    j.append(31, 40);
    while (keeper.trim('z') > 0);
    expect(j.entries()).toBe(48);
    expect(j.first()).toBe(29);
    j.store.close();
  });

  it('trims by count only once the count has reached the newest entry, counting a bounded number of entries a step until then and every new entry after', () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const j = journalOf(25, 2, clock.now());
    // 50 entries counted 7 a step: seven steps trim nothing (43 counted after the seventh … 49), then the trims.
    const keeper = new Housekeeper(j.store, clock, createLogger('silent'), { maxEntries: 10, maxAgeSeconds: 3600 }, 100, 7);
    const steps = Array.from({ length: 7 }, () => keeper.trim('z'));
    expect(steps).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(j.entries()).toBe(50);
    expect(keeper.trim('z')).toBe(40);
    expect(j.entries()).toBe(10);
    // Once counted to the end, what is appended is counted at once, however many: 30 more, trimmed in one step.
    j.append(26, 40);
    expect(keeper.trim('z')).toBe(30);
    expect(j.entries()).toBe(10);
    j.store.close();
  });

  it('drops versions older than the age limit, a step at a time, whatever the count', () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const j = journalOf(40, 3, clock.now());
    // Versions are a second apart: 35 s later, with a 10 s age limit, versions 1–24 are too old.
    clock.advance(35_000);
    const keeper = new Housekeeper(j.store, clock, createLogger('silent'), { maxEntries: 1_000, maxAgeSeconds: 10 }, 20, 1_000);
    const dropped = trimmedSteps(keeper);
    expect(dropped.every((n) => n > 0 && n <= 21)).toBe(true);
    expect(j.first()).toBe(25);
    j.store.close();
  });

  it('counts again from the start a journal that no longer holds what was counted (cleared and written anew)', () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const j = journalOf(10, 5, clock.now());
    const keeper = new Housekeeper(j.store, clock, createLogger('silent'), { maxEntries: 30, maxAgeSeconds: 3600 }, 100, 1_000);
    expect(keeper.trim('z')).toBe(20);
    // A full transfer starts a new journal: the count of the old one must not carry over.
    j.store.write(() => j.store.journal.clear('z'));
    clock.advance(1);
    j.append(100, 107);
    expect(keeper.trim('z')).toBe(10);
    expect(j.entries()).toBe(30);
    expect(j.first()).toBe(102);
    j.store.close();
  });
});
