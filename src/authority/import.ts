import { availableParallelism } from 'node:os';
import { IdnsError } from '../errors.js';
import type { Store } from '../store/store.js';
import { epochSeconds, type Clock } from '../clock.js';
import { DENIAL_FILL, GAP_START, nameHash } from '../records/denial.js';
import { RECORD_TYP } from '../records/jws.js';
import { SigningPool } from '../records/signing-pool.js';
import { ZoneDigest } from '../records/digest.js';
import { historyKey, parseHistoryKey } from '../records/history-key.js';
import { HISTORY_EXP } from '../store/records.js';
import { ThreadPool, workerFile } from '../threads/pool.js';
import { fromWire, type WireError } from '../threads/wire.js';
import { serialOf } from '../records/serial.js';
import type { ZoneService } from './zones.js';

export type { ImportLine } from './import-line.js';

/** What an import did. */
export interface ImportResult {
  zone: string;
  imported: number;
  serial: number;
  /** 'rollback' when the database had no other user (server stopped) and the import wrote each page once. */
  journal: 'rollback' | 'wal';
}

/** @internal What every line of an import's records shares. */
export interface ImportContext {
  base: { v: number; zone: string; serial: number; iat: number; exp: number };
  ttl: number;
  salt: string;
  allowLoopbackEndpoints: boolean;
}

/** @internal A chunk of an import's lines sent to a worker (import-worker.ts). */
export interface ImportChunk {
  text: string;
  firstLineNo: number;
  context: ImportContext;
}

/** @internal A worker's reply: the chunk's handles in order, signed, up to its first bad line (`error`). */
export interface PreparedChunk {
  handles: string[];
  hosts: string[];
  lineNos: number[];
  /** Each handle's first history entry: an operator entry (`import`) signed by the zone key. */
  entries: string[];
  /** Each entry's leaf hash in the zone's log (zone-log.ts changeLeafHash), 32 bytes each, in order. */
  entryLeaves: Uint8Array;
  hashes: string[];
  jws: string[];
  digestState: Uint8Array;
  /** The first bad line's error, if one ended the chunk. */
  error: WireError | null;
}

/** Most lines one import takes; larger sets are split by the operator. */
export const MAX_IMPORT_LINES = 5_000_000;

/** Lines per chunk sent to a worker: big enough to amortise the message, small enough to keep every core busy. */
const BATCH_LINES = 2048;
/** SQLite page cache for the import's transaction: the tables and indexes of a million-handle zone being built. */
const IMPORT_CACHE_BYTES = 512 * 1024 * 1024;
/** Chunks being prepared ahead of the one being stored (two per worker keeps the workers fed). */
const BATCHES_AHEAD = 4;

/**
 * Bulk import by the operator (migrating a directory, seeding a zone): NDJSON, one handle per line.
 * The import is one transaction and one serial, so a bad line anywhere rolls everything back and the
 * error names its line. Worker threads parse, validate, sign and hash the lines a chunk at a time, ahead
 * of the main thread, which checks each chunk against the zone and the lines before it and stores it; then the zone's denials are rebuilt once from the sorted hashes,
 * which is cheaper than adding one name at a time. The import is not journaled: secondaries take a full
 * transfer, which for a bulk change is smaller anyway.
 *
 * It holds the database's write lock from start to end: run it with the zone's server stopped, or
 * accept that the server's writes wait (and may time out) while it runs.
 */
export async function importHandles(store: Store, zones: ZoneService, clock: Clock, zone: string, text: string): Promise<ImportResult> {
  const row = zones.require(zone);
  const settings = zones.settings(row);
  const key = zones.signingKey(row);
  // No more workers than chunks: each loads the record modules (a fifth of a second of CPU), wasted on a small file.
  let size = 0;
  for (const _ of chunks(text, BATCH_LINES)) if (++size >= availableParallelism()) break;
  const workers = new ThreadPool<ImportChunk, PreparedChunk>(workerFile(import.meta.url, 'import-worker'), {
    name: 'import',
    size,
    workerData: { privateKey: key.privateKey, kid: key.kid },
  });
  store.setCacheBytes(IMPORT_CACHE_BYTES);
  try {
    const { result, journal } = await store.withRollbackJournal(() =>
      store.writeAcross(async () => {
        const editor = zones.editor(zone);
        editor.journaling = false;
        const version = editor.beginChange();
        const iat = epochSeconds(clock);
        const exp = iat + settings.signatureValidity;
        const context: ImportContext = {
          base: { v: 1, zone, serial: serialOf(version), iat, exp },
          ttl: settings.handleTtl,
          salt: row.salt,
          allowLoopbackEndpoints: settings.allowLoopbackEndpoints,
        };
        const existing = new Set(store.records.keys(row.content, 'handle'));
        // A handle with a history here was registered before and deleted: an import would start a second
        // history beside its owner's (and skip the rules of re-registration), so it is refused.
        const hadHistory = new Set(store.records.keys(row.content, 'op').map((k) => parseHistoryKey(k)!.handle));
        const delegations = store.records.keys(row.content, 'delegation');
        const hashes = [...existing, ...delegations].map((n) => nameHash(row.salt, n));
        // Most handles are at the zone's apex; other hosts are checked once each.
        const verdicts = new Map<string, string | null>([[zone, null]]);
        const belongs = (host: string): string | null => {
          let why = verdicts.get(host);
          if (why === undefined) {
            const holder = zones.closestHosted(host);
            why =
              holder?.name !== zone
                ? `it belongs to zone ${holder?.name ?? '(none held here)'}, not ${zone}`
                : zones.cutFor(row, host)
                  ? `${host} is delegated away from ${zone}`
                  : null;
            verdicts.set(host, why);
          }
          return why;
        };
        const seen = new Set<string>();
        let imported = 0;

        /** Checks a prepared chunk against the zone and the lines before it, in line order, then stores it. */
        const storeChunk = (c: PreparedChunk): void => {
          for (let i = 0; i < c.handles.length; i++) {
            const handle = c.handles[i]!;
            const why = belongs(c.hosts[i]!);
            if (why) throw new IdnsError('invalid_request', `line ${c.lineNos[i]}: ${handle}: ${why}`);
            if (existing.has(handle)) throw new IdnsError('handle_exists', `line ${c.lineNos[i]}: ${handle} is already registered in ${zone}`);
            if (hadHistory.has(handle))
              throw new IdnsError(
                'handle_exists',
                `line ${c.lineNos[i]}: ${handle} was registered in ${zone} before and has a history; register it with a signed request instead`,
              );
            if (seen.has(handle)) throw new IdnsError('invalid_request', `line ${c.lineNos[i]}: ${handle} appears twice`);
            seen.add(handle);
            hashes.push(c.hashes[i]!);
          }
          if (c.error) throw fromWire(c.error, 'import');
          imported += c.handles.length;
          if (imported > MAX_IMPORT_LINES) throw new IdnsError('invalid_request', `more than ${MAX_IMPORT_LINES} lines; split the import`);
          // The chunk's digest covers its handle records and their history entries: merged once, with the records.
          editor.putNew(
            'handle',
            c.handles.map((h, i) => ({ key: h, jws: c.jws[i]! })),
            exp,
            ZoneDigest.fromState(c.digestState),
          );
          editor.putNew(
            'op',
            c.handles.map((h, i) => ({ key: historyKey(h, 1), jws: c.entries[i]! })),
            HISTORY_EXP,
            ZoneDigest.empty(),
            c.entryLeaves,
          );
        };
        const ahead: Promise<PreparedChunk>[] = [];
        try {
          for (const { text: chunk, firstLineNo } of chunks(text, BATCH_LINES)) {
            ahead.push(workers.run({ text: chunk, firstLineNo, context }));
            if (ahead.length > BATCHES_AHEAD) storeChunk(await ahead.shift()!);
          }
          for (const next of ahead.splice(0)) storeChunk(await next);
        } catch (err) {
          // Let the chunks still being prepared finish before the pool closes, so none is left rejected and
          // unobserved; their results are not wanted: the import is failing with `err`.
          await Promise.allSettled(ahead);
          throw err;
        }

        hashes.sort();
        const runs = denialRuns(hashes);
        const signer = new SigningPool(key, RECORD_TYP);
        try {
          const denials = await signer.sign(
            runs.map((run) => ({
              type: 'denial',
              key: run.after ?? GAP_START,
              payload: JSON.stringify({ ...context.base, type: 'denial', ...run, hash: { alg: 'sha256', salt: row.salt }, ttl: settings.minimum }),
            })),
          );
          for (const old of store.records.keys(editor.zone.content, 'denial')) editor.remove('denial', old);
          editor.putNew(
            'denial',
            runs.map((run, i) => ({ key: run.after ?? GAP_START, jws: denials.jws[i]! })),
            exp,
            denials.digest,
          );
        } finally {
          await signer.close();
        }
        editor.commit();
        // Changes up to this version are not in the journal: secondaries must copy the zone whole.
        store.journal.clear(zone);
        store.zones.setJournalFloor(zone, version);
        return { zone, imported, serial: serialOf(version) };
      }),
    );
    return { ...result, journal };
  } finally {
    await workers.close();
  }
}

/** Cuts the ascending hashes of all of a zone's names into denials of DENIAL_FILL hashes, bounded by the hashes between them. */
export function denialRuns(hashes: readonly string[]): { after: string | null; next: string | null; hashes: string[] }[] {
  const runs = [];
  let after: string | null = null;
  for (let i = 0; ; i += DENIAL_FILL + 1) {
    const next = hashes[i + DENIAL_FILL] ?? null;
    runs.push({ after, next, hashes: hashes.slice(i, i + DENIAL_FILL) });
    if (next === null) return runs;
    after = next;
  }
}

/** The file's lines, `size` at a time (blank ones included, so that line numbers stay right), with the number of each chunk's first line. */
function* chunks(text: string, size: number): Generator<{ text: string; firstLineNo: number }> {
  let lineNo = 1;
  for (let at = 0; at < text.length;) {
    let end = at;
    let n = 0;
    while (n < size && end < text.length) {
      const nl = text.indexOf('\n', end);
      end = nl < 0 ? text.length : nl + 1;
      n++;
    }
    yield { text: text.slice(at, end), firstLineNo: lineNo };
    lineNo += n;
    at = end;
  }
}
