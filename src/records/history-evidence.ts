import { IdnsError } from '../errors.js';
import { MAX_JWS_LENGTH } from './jws.js';
import { MAX_HISTORY_CHARS } from './history-key.js';

/**
 * The evidence an authoritative answer carries for a handle record (docs/protocol.md §6.5): the last
 * entries of the handle's history, up to the one the record's `op` names, as many as fit in
 * EVIDENCE_MAX_CHARS (always the last one). For most handles that is the whole history, so a resolver
 * meeting the handle for the first time verifies it with no second request; for a longer one it reads the
 * rest from the log.
 */
export const EVIDENCE_MAX_CHARS = 8192;
/** Entries read to fill the evidence: an entry is at least ~400 characters, so more never fit. */
export const EVIDENCE_MAX_ENTRIES = 32;

/** The evidence from the last entries of a history, newest first as read: oldest first, within the bound. */
export function evidenceTail(newestFirst: readonly { jws: string }[]): string[] {
  const out: string[] = [];
  let chars = 0;
  for (const entry of newestFirst) {
    if (out.length > 0 && (chars + entry.jws.length > EVIDENCE_MAX_CHARS || out.length >= EVIDENCE_MAX_ENTRIES)) break;
    chars += entry.jws.length;
    out.push(entry.jws);
  }
  return out.reverse();
}

/**
 * Reads the evidence of an answer for a record that names entry `seq`: its entries with their numbers
 * (the last is `seq`). Throws verification_failed when it is not within the bounds an authority keeps.
 */
export function parseEvidence(value: unknown, seq: number): { seq: number; jws: string }[] {
  if (!Array.isArray(value) || value.length === 0) throw fail('the answer carries no history entries for its record');
  if (value.length > EVIDENCE_MAX_ENTRIES || value.length > seq) throw fail(`the answer carries ${value.length} history entries, more than it may`);
  let chars = 0;
  for (const entry of value) {
    if (typeof entry !== 'string' || entry.length > MAX_JWS_LENGTH) throw fail('a history entry of the answer is not a JWS of at most the length allowed');
    chars += entry.length;
  }
  if (value.length > 1 && chars > EVIDENCE_MAX_CHARS) throw fail(`the answer's history entries exceed ${EVIDENCE_MAX_CHARS} characters`);
  const from = seq - value.length + 1;
  return (value as string[]).map((jws, i) => ({ seq: from + i, jws }));
}

/**
 * Largest body of a response that may carry a handle's whole history (a log page, a proof): the
 * history's bound (MAX_HISTORY_CHARS) and room for the rest (a page's members, a proof's steps).
 */
export const HISTORY_RESPONSE_MAX_BYTES = MAX_HISTORY_CHARS + 256 * 1024;

/** Entries read per request of a log (`GET /v1/handles/{h}/log`; the protocol's pages go to 1,000): a page is at most the history's 1 MiB and 200 entries' members. */
export const LOG_PAGE = 200;

/** The log URL of a handle's entries after `after`, at most `limit` of them, on `server`. */
export function logUrl(server: string, handle: string, after: number, limit: number): string {
  return `${server.replace(/\/+$/, '')}/v1/handles/${encodeURIComponent(handle)}/log?after=${after}&limit=${limit}`;
}

/**
 * The entries a log page gives (its `operations`' requests), which must be exactly entries `after + 1` …
 * `after + limit`, in order: the reader asks only for entries the record names, which a server of the
 * zone holds, so a shorter page is a server stalling (each page costs a request); throws
 * verification_failed otherwise.
 */
export function logPageEntries(body: unknown, handle: string, after: number, limit: number): string[] {
  const ops = (body as { operations?: unknown } | null)?.operations;
  if (!Array.isArray(ops) || ops.length !== limit) throw fail(`the server's log of ${handle} does not give entries ${after + 1} to ${after + limit}`);
  return ops.map((op: { seq?: unknown; request?: unknown } | null, i) => {
    if (op?.seq !== after + i + 1 || typeof op.request !== 'string')
      throw fail(`the server's log of ${handle} does not give entry ${after + i + 1} in its place`);
    return op.request;
  });
}

/**
 * Entries 1 … `count` of a handle's history, read from a server's log a page at a time with `get` (which
 * answers a URL with the response body, throwing for an error answer): at most ⌈count / LOG_PAGE⌉
 * requests, since every page must be full.
 */
export async function readLog(server: string, handle: string, count: number, get: (url: string) => Promise<unknown>): Promise<string[]> {
  const entries: string[] = [];
  while (entries.length < count) {
    const limit = Math.min(LOG_PAGE, count - entries.length);
    entries.push(...logPageEntries(await get(logUrl(server, handle, entries.length, limit)), handle, entries.length, limit));
  }
  return entries;
}

function fail(why: string): IdnsError {
  return new IdnsError('verification_failed', why);
}
