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
import { readHandleLog } from '../../client/handle-log.js';
import type { Io } from '../args.js';

/** Exit codes of `idns handle watch` (1, as for any command, when it could not check). */
export const WATCH_ALL_MINE = 0;
export const WATCH_NOT_MINE = 3;

/** Most bytes of the answer read to learn the handle's zone. */
const MAX_ANSWER_BYTES = 256 * 1024;

/** What a run remembers for the next: the last entry it saw. */
interface WatchState {
  handle: string;
  seq: number;
  op: string;
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
 * history seen last time rewritten); 1: it could not check. Until zones are witnessed (issue 18), a zone
 * key holder could still show the watcher and the resolvers different histories; the servers are at
 * least compared with each other.
 */
export async function watchHandle(handle: string, o: { server: string; keys: string[]; state: string | undefined; json: boolean }, io: Io): Promise<number> {
  const mine = new Set(o.keys.map((file) => thumbprint(readPublicKeyFile(file, '--key'))));
  const statePath = o.state ?? defaultStatePath(handle);
  const last = readState(statePath, handle);
  const { servers, zone } = await zoneOf(o.server, handle);
  const histories = await Promise.all(servers.map(async (server) => ({ server, entries: numbered(handle, server, await readHandleLog(server, handle)) })));
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
  for (const [seq, jws] of longest.entries.slice(since)) {
    const { header } = decodeCompact(jws);
    if (header.typ !== OPERATION_TYP) foreign.push({ seq, op: requestId(jws), by: "the zone's operator (an operator entry)" });
    else if (header.kid === undefined || !mine.has(header.kid))
      foreign.push({ seq, op: requestId(jws), by: `key ${header.kid ?? '(none)'}, not one of yours` });
  }
  const newest = longest.entries.at(-1);
  if (newest !== undefined) writeState(statePath, { handle, seq: newest[0], op: requestId(newest[1]) });
  const checked = longest.entries.length - since;
  if (o.json) io.out(JSON.stringify({ handle, servers, since, checked, allMine: foreign.length === 0, foreign }));
  else if (foreign.length === 0)
    io.out(`${handle}: all mine (${checked} new entr${checked === 1 ? 'y' : 'ies'} since entry ${since}, ${servers.length} server(s) agree)`);
  else io.out([`${handle}: SOMEONE ELSE CHANGED IT`, ...foreign.map((f) => `  entry ${f.seq} (${f.op}): ${f.by}`)].join('\n'));
  return foreign.length === 0 ? WATCH_ALL_MINE : WATCH_NOT_MINE;
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
  if (s?.handle !== handle || !Number.isSafeInteger(s.seq) || (s.seq ?? 0) < 1 || typeof s.op !== 'string') {
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
