import { epochSeconds, systemClock, type Clock } from '../clock.js';
import { IdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import { isAtOrBelow } from '../names/zone.js';
import { noCutOf, verifyDelegation, verifyDenial, verifyHandleRecord, verifyZoneRecord, type VerifyOptions } from '../records/verify.js';
import type { DelegationRecord, HandleRecord } from '../records/types.js';
import { errorFromBody, jsonRequest } from './http.js';
import { verifyRecordHistory, type NumberedEntry, type VerifiedHistory } from '../records/history-chain.js';
import { historyZoneOf } from '../records/history-entries.js';
import { HISTORY_RESPONSE_MAX_BYTES, parseEvidence, readLog } from '../records/history-evidence.js';
import { MAX_HISTORY_ENTRIES } from '../records/history-key.js';
import { decodeCompact } from '../records/jws.js';

/** The verified outcome of asking one authoritative server about a handle. */
export type CheckedAnswer =
  | {
      status: 'answer';
      handle: string;
      zone: string;
      serial: number;
      record: HandleRecord;
      jws: string;
      zoneKey: string;
      anchored: boolean;
      ttl: number;
      /** The record's history, verified from its first entry: genesis, whether operator-asserted, the entries' count (`seq`). */
      history: VerifiedHistory;
    }
  | { status: 'denial'; handle: string; zone: string; serial: number; zoneKey: string; anchored: boolean; ttl: number }
  | {
      status: 'referral';
      handle: string;
      zone: string;
      serial: number;
      zoneKey: string;
      anchored: boolean;
      ttl: number;
      delegation: DelegationRecord;
      jws: string;
    };

/**
 * Checks an authoritative answer body (`GET /v1/resolve/{handle}`): the zone record is signed by one of
 * its own keys, and by a key in `anchors` when the caller gave anchors for that zone; the handle record or
 * the denial is signed by that zone key and is for the handle asked about; a handle record follows from
 * its owner's signed history, the entries the answer carries after `earlier` (the entries before them,
 * when the answer does not carry the whole history: historyStart tells which). `anchored` tells whether
 * the zone key was vouched for by an anchor or is merely self-consistent. `options`: the verifier's mode
 * (development mode accepts loopback endpoints, see VerifyOptions).
 */
export function checkAnswer(
  body: unknown,
  handle: string,
  anchors: Map<string, string[]>,
  clock: Clock = systemClock,
  options: VerifyOptions = {},
  earlier: readonly NumberedEntry[] = [],
): CheckedAnswer {
  const b = body as { status?: unknown; zone?: unknown; record?: unknown; history?: unknown; zoneRecord?: unknown; ttl?: unknown; noCut?: unknown } | null;
  if (!b || (b.status !== 'answer' && b.status !== 'denial' && b.status !== 'referral') || typeof b.zone !== 'string') {
    throw new IdnsError('bad_response', 'the server did not send an answer, a denial or a referral');
  }
  const now = epochSeconds(clock);
  const trusted = anchors.get(b.zone);
  const zone = verifyZoneRecord(b.zoneRecord, b.zone, now, trusted);
  const ttl = typeof b.ttl === 'number' ? b.ttl : 0;
  const common = { handle, zone: b.zone, serial: zone.record.serial, zoneKey: zone.signer, anchored: trusted !== undefined, ttl };
  if (b.status === 'answer') {
    const record = verifyHandleRecord(b.record, handle, zone, now, options);
    const carried = parseEvidence(b.history, record.seq);
    const history = verifyRecordHistory(record, earlier.length === 0 ? carried : [...earlier, ...carried], historyZoneOf(zone));
    return { status: 'answer', record, jws: b.record as string, history, ...common };
  }
  if (b.status === 'referral') {
    const delegation = verifyDelegation(b.record, zone, now);
    const host = handle.slice(handle.lastIndexOf('@') + 1);
    if (delegation.name === b.zone || !isAtOrBelow(delegation.name, b.zone) || !isAtOrBelow(host, delegation.name)) {
      throw new IdnsError('verification_failed', `the referral to ${delegation.name} does not lead from ${b.zone} towards ${handle}`);
    }
    return { status: 'referral', delegation, jws: b.record as string, ...common };
  }
  verifyDenial(b.record, handle, zone, now, noCutOf(b.noCut));
  return { status: 'denial', ...common };
}

/** Asks one authoritative server about a handle and verifies what it says. */
export async function queryAuthoritative(
  server: string,
  input: string,
  anchors: Map<string, string[]> = new Map(),
  clock: Clock = systemClock,
  options: VerifyOptions = {},
): Promise<CheckedAnswer> {
  const { handle } = parseHandle(input);
  // A log page may hold up to a history's whole 1 MiB.
  const get = async (url: string) => {
    const res = await jsonRequest(url, { maxBytes: HISTORY_RESPONSE_MAX_BYTES });
    const err = errorFromBody(res.body);
    if (err) throw err;
    return res.body;
  };
  const body = await get(`${server.replace(/\/+$/, '')}/v1/resolve/${encodeURIComponent(handle)}`);
  const start = historyStart(body);
  // An answer that does not carry the whole history: the entries before come from the same server's log.
  const earlier = start > 1 ? await readLog(server, handle, start - 1, get) : [];
  return checkAnswer(body, handle, anchors, clock, options, earlier);
}

/**
 * The number of the first history entry an answer body carries (1 when it carries the whole history or its
 * compact form; 0 when it is no answer with a record or its history is malformed, which checkAnswer then
 * refuses).
 */
export function historyStart(body: unknown): number {
  const b = body as { status?: unknown; record?: unknown; history?: unknown } | null;
  if (b?.status !== 'answer' || typeof b.record !== 'string' || !Array.isArray(b.history)) return 0;
  const first: unknown = Array.isArray(b.history[0]) ? (b.history[0] as unknown[])[0] : undefined;
  return typeof first === 'number' && Number.isInteger(first) && first >= 1 && first <= MAX_HISTORY_ENTRIES ? first : 0;
}
