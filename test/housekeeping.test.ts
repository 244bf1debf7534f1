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
