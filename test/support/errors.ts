import { IdnsError } from '../../src/errors.js';

/**
 * The code of the IdnsError `fn` throws; `ifNone` when it returns instead (without it, that fails the
 * test). Any other error is thrown on: a test asserting a code must not pass on a crash.
 */
export function errorCode(fn: () => unknown, ifNone?: string): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof IdnsError) return err.code;
    throw err;
  }
  if (ifNone !== undefined) return ifNone;
  throw new Error('expected an IdnsError, but nothing was thrown');
}
