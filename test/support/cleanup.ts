import { afterEach } from 'vitest';

/**
 * A list of cleanups for the tests of a file: push a function during a test, and after each test they
 * all run, newest first. Every one runs even when one fails; the first failure is then reported.
 */
export function cleanupEachTest(): (() => unknown)[] {
  const list: (() => unknown)[] = [];
  afterEach(async () => {
    let first: unknown = null;
    for (const clean of list.splice(0).reverse()) {
      try {
        await clean();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== null) throw first;
  });
  return list;
}
