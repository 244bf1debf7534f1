/**
 * Zone serials. Internally a zone counts changes with a `version` that never wraps; the serial published
 * in records is that version modulo 2^32 and compares with RFC 1982 serial-number arithmetic, as DNS does.
 */

const MOD = 2 ** 32;
const HALF = 2 ** 31;

/** The published serial of a version. */
export function serialOf(version: number): number {
  return version % MOD;
}

/** RFC 1982: true when serial `a` is before serial `b`; undefined (false) when they are exactly 2^31 apart. */
export function serialLess(a: number, b: number): boolean {
  return a !== b && ((a < b && b - a < HALF) || (a > b && a - b > HALF));
}

/** How many serials forward from `from` to `to`, modulo 2^32 (0 to 2^32 − 1; RFC 1982 calls under 2^31 "after"). */
export function serialsFrom(from: number, to: number): number {
  return (to - from + MOD) % MOD;
}

/**
 * The version a peer means by `serial`, given our current version: the most recent version with that
 * serial not after ours. Null when the serial is ahead of ours.
 */
export function versionOfSerial(serial: number, currentVersion: number): number | null {
  const current = serialOf(currentVersion);
  if (serial !== current && !serialLess(serial, current)) return null;
  return currentVersion - serialsFrom(serial, current);
}
