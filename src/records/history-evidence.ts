import { IdnsError } from '../errors.js';
import { MAX_JWS_LENGTH } from './jws.js';
import { MAX_HISTORY_CHARS } from './history-key.js';
import type { NumberedEntry } from './history-chain.js';

/**
 * The evidence an authoritative answer carries for a handle record (docs/protocol.md §6.5): entries of
 * the handle's history, each with its number, up to the one the record's `seq` names (always that one).
 * A history of at most WHOLE_EVIDENCE_MAX_CHARS is carried whole, so a resolver meeting the handle for
 * the first time verifies it with no second request: almost every handle's. A longer one is carried in
 * its compact form (history-compact.ts: runs of updates that keep the key set left out), as much of it
 * as fits in EVIDENCE_MAX_CHARS: for a history of a thousand changes and a few dozen changes of keys, all
 * of it. When it does not fit, the resolver reads the entries before the evidence from the log.
 */
export const WHOLE_EVIDENCE_MAX_CHARS = 8192;
/** Entries read to see whether a history is carried whole: an entry is at least ~400 characters, so more never fit. */
export const WHOLE_EVIDENCE_MAX_ENTRIES = 32;
/** Most characters of evidence with more than one entry (a compact form's, mostly). */
export const EVIDENCE_MAX_CHARS = 65_536;
/** Most entries of evidence: at least ~400 characters each, so more never fit. */
export const EVIDENCE_MAX_ENTRIES = 160;

/**
 * The evidence of a handle's record, as JSON text (entriesText): `newestFirst`, its history's last entries
 * as read (at least WHOLE_EVIDENCE_MAX_ENTRIES of them when it has that many), carried whole when they
 * reach back to entry 1 within WHOLE_EVIDENCE_MAX_CHARS; else the evidence kept with the history
 * (`kept`: made from its compact form when the entries were written, src/store/compact-histories.ts),
 * when it ends at the newest entry. Never made here: a read must not cost a pass over a long history.
 * Without kept evidence (none should be missing), the newest entries within the evidence bounds, which a
 * resolver completes from the log. Empty for a handle with no history (which no resolver accepts).
 */
export function evidenceOf(newestFirst: readonly NumberedEntry[], kept: () => StoredEvidence | undefined): string {
  const tail = tailWithin(newestFirst, WHOLE_EVIDENCE_MAX_CHARS, WHOLE_EVIDENCE_MAX_ENTRIES);
  if (tail.length === 0 || tail[0]![0] === 1) return entriesText(tail);
  const stored = kept();
  if (stored !== undefined && stored.last === newestFirst[0]![0]) return stored.evidence;
  return entriesText(tailWithin(newestFirst, EVIDENCE_MAX_CHARS, EVIDENCE_MAX_ENTRIES));
}

/** The evidence kept with a long history: as JSON text, and the number of the entry it ends with. */
export interface StoredEvidence {
  last: number;
  evidence: string;
}

/** True when a history of `entries` entries of `chars` characters together is carried whole (evidenceOf). */
export function carriedWhole(entries: number, chars: number): boolean {
  return entries <= 1 || (entries <= WHOLE_EVIDENCE_MAX_ENTRIES && chars <= WHOLE_EVIDENCE_MAX_CHARS);
}

/**
 * The evidence made from a compact form, given by its entries' numbers (oldest first): its last entries
 * within EVIDENCE_MAX_CHARS and EVIDENCE_MAX_ENTRIES, oldest first, `jwsOf` giving each entry's JWS.
 */
export function compactEvidence(kept: readonly number[], jwsOf: (seq: number) => string): NumberedEntry[] {
  const out: NumberedEntry[] = [];
  let chars = 0;
  for (let i = kept.length - 1; i >= 0; i--) {
    const jws = jwsOf(kept[i]!);
    if (out.length > 0 && (chars + jws.length > EVIDENCE_MAX_CHARS || out.length >= EVIDENCE_MAX_ENTRIES)) break;
    chars += jws.length;
    out.push([kept[i]!, jws]);
  }
  return out.reverse();
}

/** The last entries (given newest first) within `maxChars` and `maxEntries`, oldest first: at least the newest. */
function tailWithin(newestFirst: readonly NumberedEntry[], maxChars: number, maxEntries: number): NumberedEntry[] {
  const out: NumberedEntry[] = [];
  let chars = 0;
  for (const entry of newestFirst) {
    if (out.length > 0 && (chars + entry[1].length > maxChars || out.length >= maxEntries)) break;
    chars += entry[1].length;
    out.push(entry);
  }
  return out.reverse();
}

/** Numbered entries as JSON text, `[[seq,"jws"],…]`, as answers and proofs carry them (compact JWSs: nothing to escape). */
export function entriesText(entries: readonly NumberedEntry[]): string {
  return JSON.stringify(entries);
}

/**
 * Reads numbered entries as answers and proofs carry them (`[[seq, "jws"], …]`): at most `maxEntries`
 * pairs of a number and a JWS of at most the length allowed. Their order and numbers are checked by the
 * history's verifier. Throws verification_failed saying what of `what` is wrong.
 */
export function parseEntries(value: unknown, maxEntries: number, what: string): NumberedEntry[] {
  if (!Array.isArray(value) || value.length === 0) throw fail(`${what} carries no history entries`);
  if (value.length > maxEntries) throw fail(`${what} carries ${value.length} history entries, more than ${maxEntries}`);
  for (const pair of value as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2 || !Number.isSafeInteger(pair[0]) || typeof pair[1] !== 'string' || pair[1].length > MAX_JWS_LENGTH) {
      throw fail(`a history entry of ${what} is not a pair of its number and a JWS of at most the length allowed`);
    }
  }
  return value as NumberedEntry[];
}

/**
 * Reads the evidence of an answer for a record that names entry `seq`: its entries with their numbers
 * (the last must be `seq`). Throws verification_failed when it is not within the bounds an authority keeps.
 */
export function parseEvidence(value: unknown, seq: number): NumberedEntry[] {
  const entries = parseEntries(value, EVIDENCE_MAX_ENTRIES, 'the answer');
  let chars = 0;
  for (const e of entries) chars += e[1].length;
  if (entries.length > 1 && chars > EVIDENCE_MAX_CHARS) throw fail(`the answer's history entries exceed ${EVIDENCE_MAX_CHARS} characters`);
  if (entries.at(-1)![0] !== seq) throw fail(`the answer's history entries end at entry ${entries.at(-1)![0]}, not at the record's ${seq}`);
  for (let i = 1; i < entries.length; i++) {
    if (entries[i]![0] <= entries[i - 1]![0]) throw fail("the answer's history entries are not in order");
  }
  return entries;
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
export async function readLog(server: string, handle: string, count: number, get: (url: string) => Promise<unknown>): Promise<NumberedEntry[]> {
  const entries: NumberedEntry[] = [];
  while (entries.length < count) {
    const after = entries.length;
    const limit = Math.min(LOG_PAGE, count - after);
    const page = logPageEntries(await get(logUrl(server, handle, after, limit)), handle, after, limit);
    for (let i = 0; i < page.length; i++) entries.push([after + i + 1, page[i]!]);
  }
  return entries;
}

function fail(why: string): IdnsError {
  return new IdnsError('verification_failed', why);
}
