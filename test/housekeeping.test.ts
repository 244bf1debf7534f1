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
