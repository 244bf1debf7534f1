import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { epochSeconds, systemClock } from '../../clock.js';
import { jsonRequest, errorFromBody } from '../../client/http.js';
import { IdnsError } from '../../errors.js';
import { requestId } from '../../records/change-request.js';
import { emptyHistory, verifyHistory, type NumberedEntry } from '../../records/history-chain.js';
import { historyZoneOf } from '../../records/history-entries.js';
import { decodeCompact, OPERATION_TYP } from '../../records/jws.js';
import { thumbprint } from '../../records/keys.js';
import { readPublicKeyFile } from '../public-key-file.js';
import { verifyZoneRecord } from '../../records/verify.js';
import { readHandleLog, type LogEntry } from '../../client/handle-log.js';
import { historyKey } from '../../records/history-key.js';
import type { VerifiedZone } from '../../records/verify.js';
import { pathZone } from '../../replication/transfer-client.js';
import { verifyConsistency, verifyInclusion } from '../../transparency/merkle.js';
import { proofHashes, verifyAnswerLog, verifyCheckpoint, type WitnessPolicy } from '../../transparency/witnessed.js';
import { changeLeafHash } from '../../transparency/zone-log.js';
import { MAP_LINE } from '../../transparency/zone-map.js';
import type { Io } from '../args.js';

/** Exit codes of `idns handle watch` (1, as for any command, when it could not check). */
export const WATCH_ALL_MINE = 0;
export const WATCH_NOT_MINE = 3;

/** Most bytes of the answer read to learn the handle's zone. */
const MAX_ANSWER_BYTES = 256 * 1024;

/** What a run remembers for the next: the last entry it saw, and the zone's checkpoint it checked them against. */
interface WatchState {
  handle: string;
  seq: number;
  op: string;
  /** The largest checkpoint of the zone's log seen (size and base64 root); absent before the zone had a log. */
  checkpoint?: { size: number; root: string };
}

/** A server's checkpoint of the zone's log, checked. */
interface ServedCheckpoint {
  server: string;
  size: number;
  root: Buffer;
  note: string;
  /** The keys of the witnesses whose cosignatures the note carries, as the server gives them beside it. */
  witnessKeys: Record<string, unknown>;
}

/** An entry of the history that the watcher's keys did not make, in words. */
interface Foreign {
  seq: number;
  op: string;
  by: string;
}

/**
 * `idns handle watch HANDLE --key FILE…`: reads the handle's history from every server of its zone,
 * checks it (the chain, every signature) and that the servers agree, then that every entry since the
 * last run (`--state`) was signed by one of the owner's keys given. Exit 0: all the owner's; 3: someone
 * else changed the handle (an operator entry, another key, servers showing different histories, or the
 * history seen last time rewritten, a zone log that forked, a record the zone's map gives resolvers that
 * is not the newest entry's); 1: it could not check. With `--witness`, the checkpoint the entries are
 * checked against must be one those witnesses cosigned: the history the resolvers requiring them see.
 */
export async function watchHandle(
  handle: string,
  o: { server: string; keys: string[]; state: string | undefined; json: boolean; witnesses: WitnessPolicy | null },
  io: Io,
): Promise<number> {
  const mine = new Set(o.keys.map((file) => thumbprint(readPublicKeyFile(file, '--key'))));
  const statePath = o.state ?? defaultStatePath(handle);
  const last = readState(statePath, handle);
  const { servers, zone } = await zoneOf(o.server, handle);
  const logs = await Promise.all(servers.map(async (server) => ({ server, log: await readHandleLog(server, handle) })));
  const histories = logs.map(({ server, log }) => ({ server, entries: numbered(handle, server, log) }));
  for (const h of histories) {
    // The chain and every signature, as a resolver checks them (a server's own view of the zone's keys).
    verifyHistory(emptyHistory(handle), h.entries, historyZoneOf(zone));
  }
  const longest = histories.reduce((a, b) => (b.entries.length > a.entries.length ? b : a));
  const foreign: Foreign[] = [];
  // Servers may lag, never disagree: one entry number with two entries is two histories (a fork).
  for (const h of histories) {
    const at = h.entries.findIndex((e, i) => longest.entries[i]![1] !== e[1]);
    if (at >= 0) foreign.push({ seq: at + 1, op: requestId(h.entries[at]![1]), by: `${h.server} shows another entry ${at + 1} than ${longest.server}` });
  }
  if (last !== null) {
    const seen = longest.entries[last.seq - 1];
    if (seen === undefined || requestId(seen[1]) !== last.op) {
      foreign.push({ seq: last.seq, op: last.op, by: `entry ${last.seq} is not the one seen last time (${last.op}): the history was rewritten` });
    }
  }
  const since = last === null ? 0 : last.seq;
  // The zone's log: every server's checkpoint extends the others' and the one seen last time, and every
  // new entry is in the largest (docs/protocol.md §13), cosigned by the witnesses when some are required.
  const largest = await checkLog(handle, zone, servers, logs, since, last, o.witnesses, foreign);
  for (const { server, log } of logs) await checkCurrent(handle, zone, server, log, foreign);
  for (const [seq, jws] of longest.entries.slice(since)) {
    const { header } = decodeCompact(jws);
    if (header.typ !== OPERATION_TYP) foreign.push({ seq, op: requestId(jws), by: "the zone's operator (an operator entry)" });
    else if (header.kid === undefined || !mine.has(header.kid))
      foreign.push({ seq, op: requestId(jws), by: `key ${header.kid ?? '(none)'}, not one of yours` });
  }
  const newest = longest.entries.at(-1);
  if (newest !== undefined) {
    writeState(statePath, {
      handle,
      seq: newest[0],
      op: requestId(newest[1]),
      ...(largest ? { checkpoint: { size: largest.size, root: largest.root.toString('base64') } } : {}),
    });
  }
  const checked = longest.entries.length - since;
  const logged = largest ? { checkpoint: { size: largest.size, server: largest.server, witnessed: o.witnesses !== null } } : {};
  if (o.json) io.out(JSON.stringify({ handle, servers, since, checked, allMine: foreign.length === 0, foreign, ...logged }));
  else if (foreign.length === 0)
    io.out(`${handle}: all mine (${checked} new entr${checked === 1 ? 'y' : 'ies'} since entry ${since}, ${servers.length} server(s) agree)`);
  else io.out([`${handle}: SOMEONE ELSE CHANGED IT`, ...foreign.map((f) => `  entry ${f.seq} (${f.op}): ${f.by}`)].join('\n'));
  return foreign.length === 0 ? WATCH_ALL_MINE : WATCH_NOT_MINE;
}

/**
 * Checks the zone's log as its servers serve it: each checkpoint signed by a zone key (and, with
 * `witnesses`, the largest cosigned by them, else the run could not check); every smaller one, and the
 * one seen last time, a prefix of the largest (a consistency proof from its server), else a fork is
 * reported; every entry after `since` in the largest tree (an inclusion proof of its leaf). Servers
 * without a log yet (an older idns) are passed over. Returns the largest, or null when no server has one.
 */
async function checkLog(
  handle: string,
  zone: VerifiedZone,
  servers: string[],
  logs: { server: string; log: LogEntry[] }[],
  since: number,
  last: WatchState | null,
  witnesses: WitnessPolicy | null,
  foreign: Foreign[],
): Promise<ServedCheckpoint | null> {
  const name = zone.record.zone;
  const now = epochSeconds(systemClock);
  const served: ServedCheckpoint[] = [];
  for (const server of servers) {
    const res = await jsonRequest(`${server}/v1/zones/${pathZone(name)}`, { maxBytes: MAX_ANSWER_BYTES });
    const b = res.body as { checkpoint?: unknown; witnesses?: unknown } | null;
    if (res.status !== 200 || typeof b?.checkpoint !== 'string') continue;
    const c = verifyCheckpoint(name, b.checkpoint, zone.record.keys, {}, null, now);
    const witnessKeys = typeof b.witnesses === 'object' && b.witnesses !== null ? (b.witnesses as Record<string, unknown>) : {};
    served.push({ server, size: c.size, root: c.root, note: c.note, witnessKeys });
  }
  if (served.length === 0) {
    if (witnesses !== null)
      throw new IdnsError('verification_failed', `no server of ${name} serves a checkpoint of its log: nothing the witnesses cosigned to check against`);
    return null;
  }
  const largest = served.reduce((a, b) => (b.size > a.size ? b : a));
  if (witnesses !== null) verifyCheckpoint(name, largest.note, zone.record.keys, largest.witnessKeys, witnesses, now);
  const prefixes = served.filter((c) => c !== largest).map((c) => ({ size: c.size, root: c.root, what: `${c.server}'s checkpoint` }));
  if (last?.checkpoint) prefixes.push({ size: last.checkpoint.size, root: Buffer.from(last.checkpoint.root, 'base64'), what: 'the checkpoint seen last time' });
  for (const p of prefixes) {
    try {
      if (p.size > largest.size) throw new IdnsError('verification_failed', `it is larger than ${largest.server}'s (${largest.size} leaves)`);
      const proof = p.size === largest.size ? [] : await consistencyFrom(largest.server, name, p.size, largest.size);
      verifyConsistency(p.size, largest.size, proof, p.root, largest.root);
    } catch (err) {
      if (!(err instanceof IdnsError) || err.code !== 'verification_failed') throw err;
      foreign.push({
        seq: 0,
        op: '',
        by: `the zone's log forked: ${p.what} (${p.size} leaves) is not a prefix of ${largest.server}'s (${largest.size}): ${err.message}`,
      });
    }
  }
  const entries = logs.find((l) => l.server === largest.server)!.log;
  for (const e of entries.slice(since)) {
    const at = typeof e.leaf === 'number' && Number.isSafeInteger(e.leaf) && e.leaf >= 0 && e.leaf < largest.size ? e.leaf : null;
    try {
      if (at === null) throw new IdnsError('verification_failed', `${largest.server} gives it no leaf in its log of ${largest.size} leaves`);
      const res = await jsonRequest(`${largest.server}/v1/zones/${pathZone(name)}/log/inclusion?leaf=${at}&size=${largest.size}`, {
        maxBytes: MAX_ANSWER_BYTES,
      });
      const proof = proofHashes((res.body as { proof?: unknown } | null)?.proof);
      verifyInclusion(changeLeafHash('put', 'op', historyKey(handle, e.seq), e.request ?? '')!, at, largest.size, proof, largest.root);
    } catch (err) {
      if (!(err instanceof IdnsError) || err.code !== 'verification_failed') throw err;
      foreign.push({ seq: e.seq, op: e.op, by: `not in the zone's log as ${largest.server} serves it: ${err.message}` });
    }
  }
  return largest;
}

/**
 * Checks the handle's record that `server` gives resolvers (its answer bound to the log, `?log=1`): the
 * map its checkpoint names holds it (docs/protocol.md §13.6), and it is the state of the newest entry of
 * the history the server shows that is in that checkpoint's tree (a deleted handle: a denial). A zone key
 * holder who keeps an older record of the handle current, for everyone, is caught here. A server whose
 * checkpoint names no map (an older idns) is passed over, as one without a log.
 */
async function checkCurrent(handle: string, zone: VerifiedZone, server: string, log: LogEntry[], foreign: Foreign[]): Promise<void> {
  const name = zone.record.zone;
  const res = await jsonRequest(`${server}/v1/resolve/${encodeURIComponent(handle)}?log=1`, { maxBytes: MAX_ANSWER_BYTES });
  const err = errorFromBody(res.body);
  if (err) throw err;
  const b = res.body as { status?: unknown; record?: unknown; zoneRecord?: unknown; noCut?: unknown; log?: { checkpoint?: unknown } } | null;
  if (typeof b?.log?.checkpoint !== 'string' || !b.log.checkpoint.includes(`\n${MAP_LINE}`)) return;
  const why = (what: string) => foreign.push({ seq: 0, op: '', by: `${server} gives resolvers ${what}` });
  let size: number;
  try {
    if (typeof b.record !== 'string' || typeof b.zoneRecord !== 'string') throw new IdnsError('verification_failed', 'an answer without its record');
    const noCut = b.status === 'denial' && Array.isArray(b.noCut) ? (b.noCut as unknown[]).map(String) : [];
    size = verifyAnswerLog(name, b.zoneRecord, zone.record.keys, b.log, null, epochSeconds(systemClock), [b.record, ...noCut]).size;
  } catch (e) {
    if (!(e instanceof IdnsError) || e.code !== 'verification_failed') throw e;
    why(`an answer not proven current: ${e.message}`);
    return;
  }
  // The newest entry in that tree: what the zone held at that checkpoint. A record follows it, or a
  // denial when it deleted the handle.
  const newest = log.filter((e) => typeof e.leaf === 'number' && e.leaf < size).at(-1);
  if (newest === undefined) return;
  const gone = newest.action === 'delete' || newest.action === 'takedown';
  const record = b.status === 'answer' ? (decodeCompact(b.record).payload as { seq?: unknown; op?: unknown }) : null;
  if (gone ? record !== null : record === null || record.seq !== newest.seq || record.op !== newest.op) {
    why(
      record === null
        ? `a denial of the handle, current in the zone's map, while its entry ${newest.seq} (${newest.action}) left it a state`
        : `its record of entry ${String(record.seq)}, current in the zone's map, where the newest entry is ${newest.seq}: another state than yours`,
    );
  }
}

/** The consistency proof between two sizes of the zone's log, from `server`. */
async function consistencyFrom(server: string, zone: string, from: number, to: number): Promise<Buffer[]> {
  const res = await jsonRequest(`${server}/v1/zones/${pathZone(zone)}/log/consistency?from=${from}&to=${to}`, { maxBytes: MAX_ANSWER_BYTES });
  return proofHashes((res.body as { proof?: unknown } | null)?.proof);
}

/** A log's entries as the history verifier takes them; a log must give every entry, in order, with its request. */
function numbered(handle: string, server: string, log: { seq: number; request?: string }[]): NumberedEntry[] {
  return log.map((e, i) => {
    if (e.seq !== i + 1 || typeof e.request !== 'string')
      throw new IdnsError('bad_response', `${server}'s log of ${handle} does not give entry ${i + 1} with its request`);
    return [e.seq, e.request];
  });
}

/** The handle's zone as `server` answers for it (its zone record, checked against itself) and every server that record lists. */
async function zoneOf(server: string, handle: string) {
  const res = await jsonRequest(`${server.replace(/\/+$/, '')}/v1/resolve/${encodeURIComponent(handle)}`, { maxBytes: MAX_ANSWER_BYTES });
  const err = errorFromBody(res.body);
  if (err) throw err;
  const b = res.body as { status?: unknown; zone?: unknown; zoneRecord?: unknown } | null;
  if (b?.status === 'referral') throw new IdnsError('not_authoritative', `${server} delegates ${handle} to another zone: watch it at that zone's servers`);
  if (typeof b?.zone !== 'string') throw new IdnsError('bad_response', `${server} did not answer for ${handle}`);
  const zone = verifyZoneRecord(b.zoneRecord, b.zone, epochSeconds(systemClock));
  return { zone, servers: [...new Set([server.replace(/\/+$/, ''), ...zone.record.servers.map((s) => s.replace(/\/+$/, ''))])] };
}

function defaultStatePath(handle: string): string {
  return join(homedir(), '.local', 'state', 'idns', 'watch', `${handle}.json`);
}

function readState(path: string, handle: string): WatchState | null {
  if (!existsSync(path)) return null;
  let state: unknown;
  try {
    state = JSON.parse(readFileSync(path, 'utf8'));
  } catch (cause) {
    throw new IdnsError('invalid_request', `the watch state ${path} is not readable JSON; remove it to start again`, { cause });
  }
  const s = state as Partial<WatchState> | null;
  const c = s?.checkpoint;
  const checkpointOk = c === undefined || (typeof c === 'object' && c !== null && Number.isSafeInteger(c.size) && c.size > 0 && typeof c.root === 'string');
  if (s?.handle !== handle || !Number.isSafeInteger(s.seq) || (s.seq ?? 0) < 1 || typeof s.op !== 'string' || !checkpointOk) {
    throw new IdnsError('invalid_request', `the watch state ${path} is not a state of ${handle}; give another --state or remove it`);
  }
  return s as WatchState;
}

/** Written whole or not at all (a temporary file renamed over it). */
function writeState(path: string, state: WatchState): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}
