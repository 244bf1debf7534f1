import type { Dispatcher } from 'undici';
import { jsonRequest } from '../client/http.js';
import { IdnsError } from '../errors.js';
import { verifyZoneRecord, type VerifiedZone } from '../records/verify.js';
import { pathZone } from './transfer-client.js';

/** Most bytes of an answer read from another server of a zone (a zone record or a referral is a few KiB). */
export const PEER_ANSWER_MAX_BYTES = 64 * 1024;
/** Most time one such request may take, ms. */
export const PEER_TIMEOUT_MS = 3000;

/** The request options of a question to another server: the bounds above, through `dispatcher` when given. */
export function peerRequest(dispatcher: Dispatcher | undefined): { dispatcher?: Dispatcher; timeoutMs: number; maxBytes: number } {
  return { ...(dispatcher ? { dispatcher } : {}), timeoutMs: PEER_TIMEOUT_MS, maxBytes: PEER_ANSWER_MAX_BYTES };
}

/**
 * The zone record `server` serves for `zone` (`GET /v1/zones/{zone}`), verified and signed by a key of
 * `trusted`: what fencing, key rollovers and parents following their children ask the zone's other
 * servers. Throws an IdnsError when the server does not answer with one (a network error, another
 * status, a record that does not verify).
 */
export async function peerZoneRecord(
  server: string,
  zone: string,
  trusted: readonly string[],
  nowSeconds: number,
  dispatcher: Dispatcher | undefined,
): Promise<VerifiedZone> {
  const res = await jsonRequest(`${server.replace(/\/+$/, '')}/v1/zones/${pathZone(zone)}`, peerRequest(dispatcher));
  const record = (res.body as { record?: unknown } | null)?.record;
  if (res.status !== 200 || typeof record !== 'string') throw new IdnsError('bad_response', `answered ${res.status} without a zone record`);
  return verifyZoneRecord(record, zone, nowSeconds, trusted);
}
