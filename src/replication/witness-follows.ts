import type { Dispatcher } from 'undici';
import { epochSeconds, type Clock } from '../clock.js';
import { IdnsError } from '../errors.js';
import { serialLess } from '../records/serial.js';
import type { FollowedZone } from '../store/witness.js';
import { parseServerUrls } from '../authority/settings.js';
import { peerZoneRecord } from './peer-zone-record.js';

/**
 * The zone record of a zone witnessed without being copied (`idns witness follow`), read from its servers
 * in turn (each question bounded: 3 s, 64 KiB) and verified with a key of `trusted` (the `--ds` given at
 * first, then the keys of the newest record verified: the witness follows key rollovers as secondaries
 * do). A record older than `atLeast` is refused. Throws an IdnsError naming each server's failure.
 */
export async function readFollowedZone(
  zone: string,
  servers: readonly string[],
  trusted: readonly string[],
  clock: Clock,
  dispatcher: Dispatcher | undefined,
  atLeast: number | null = null,
): Promise<FollowedZone> {
  const urls = parseServerUrls([...servers], 'servers');
  const failures: string[] = [];
  for (const server of urls) {
    try {
      const { record } = await peerZoneRecord(server, zone, trusted, epochSeconds(clock), dispatcher);
      if (atLeast !== null && serialLess(record.serial, atLeast))
        throw new IdnsError('verification_failed', `serial ${record.serial} is older than ${atLeast}, seen before`);
      return { zone, servers: urls, keys: record.keys, serial: record.serial, ttl: record.ttl, checkedAt: clock.now() };
    } catch (err) {
      if (!(err instanceof IdnsError)) throw err;
      failures.push(`${server}: ${err.message}`);
    }
  }
  throw new IdnsError('verification_failed', `no server of ${zone} gave a zone record signed by a trusted key: ${failures.join('; ')}`);
}
