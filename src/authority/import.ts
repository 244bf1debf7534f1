import { IdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import { parsePublicJwk, thumbprint, type PublicJwk } from '../records/keys.js';
import type { Store } from '../store/store.js';
import { epochSeconds, type Clock } from '../clock.js';
import { DENIAL_FILL, GAP_START, nameHash } from '../records/denial.js';
import { RECORD_TYP } from '../records/jws.js';
import { SigningPool, type SignedRecords } from '../records/signing-pool.js';
import { parseEndpoint, requestId, MAX_HANDLE_KEYS } from './requests.js';
import { serialOf } from './serial.js';
import type { ZoneService } from './zones.js';

/** One handle of a bulk import: `{"handle": "...", "endpoint": "https://...", "keys": [JWK, ...]}`. */
export interface ImportLine {
  handle: string;
  endpoint: string;
  keys: PublicJwk[];
  /** The line's canonical JSON, kept as the handle's first history entry. */
  canonical: string;
}

/** What an import did. */
export interface ImportResult {
  zone: string;
  imported: number;
  serial: number;
}

/** Most lines one import takes; larger sets are split by the operator. */
export const MAX_IMPORT_LINES = 5_000_000;

/** Lines signed per batch: big enough to amortise a message to a worker, small enough to keep every core busy. */
const BATCH_LINES = 2048;
/** SQLite page cache for the import's transaction: the tables and indexes of a million-handle zone being built. */
const IMPORT_CACHE_BYTES = 512 * 1024 * 1024;
/** Batches being signed ahead of the one being stored (two per worker keeps the workers fed). */
const BATCHES_AHEAD = 4;

/**
 * Bulk import by the operator (migrating a directory, seeding a zone): NDJSON, one handle per line.
 * The import is one transaction and one serial, so a bad line anywhere rolls everything back and the
 * error names its line. Lines are validated and stored in batches while worker threads sign the batches
 * ahead (signing is most of the work), then the zone's denials are rebuilt once from the sorted hashes,
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
  const pool = new SigningPool(key, RECORD_TYP);
  store.setCacheBytes(IMPORT_CACHE_BYTES);
  try {
    return await store.writeAcross(async () => {
      const editor = zones.editor(zone);
      editor.journaling = false;
      const version = editor.beginChange();
      const iat = epochSeconds(clock);
      const exp = iat + settings.signatureValidity;
      const base = { v: 1, zone, serial: serialOf(version), iat, exp };
      const existing = new Set(store.records.keys(row.content, 'handle'));
      const delegations = store.records.keys(row.content, 'delegation');
      const hashes = [...existing, ...delegations].map((n) => nameHash(row.salt, n));
      const belongs = (host: string): string | null => {
        const holder = zones.closestHosted(host);
        if (holder?.name !== zone) return `it belongs to zone ${holder?.name ?? '(none held here)'}, not ${zone}`;
        if (zones.cutFor(row, host)) return `${host} is delegated away from ${zone}`;
        return null;
      };
      const seen = new Set<string>();
      const receivedAt = clock.now();
      let imported = 0;

      const storeBatch = (lines: ImportLine[], ops: string[], signed: SignedRecords): void => {
        editor.putNew('handle', lines.map((l, i) => ({ key: l.handle, jws: signed.jws[i]! })), exp, signed.digest);
        store.operations.insertMany(lines.map((l, i) => ({ cid: ops[i]!, zone, handle: l.handle, action: 'import', version, jws: l.canonical, receivedAt })));
      };
      const ahead: { lines: ImportLine[]; ops: string[]; signed: Promise<SignedRecords> }[] = [];
      try {
        for (const batch of importBatches(text, BATCH_LINES, belongs, settings.allowLoopbackEndpoints)) {
          for (const { line: l, lineNo } of batch) {
            if (existing.has(l.handle)) throw new IdnsError('handle_exists', `line ${lineNo}: ${l.handle} is already registered in ${zone}`);
            if (seen.has(l.handle)) throw new IdnsError('invalid_request', `line ${lineNo}: ${l.handle} appears twice`);
            seen.add(l.handle);
            hashes.push(nameHash(row.salt, l.handle));
          }
          imported += batch.length;
          if (imported > MAX_IMPORT_LINES) throw new IdnsError('invalid_request', `more than ${MAX_IMPORT_LINES} lines; split the import`);
          const lines = batch.map((b) => b.line);
          const ops = lines.map((l) => requestId(l.canonical));
          const items = lines.map((l, i) => ({
            type: 'handle',
            key: l.handle,
            payload: JSON.stringify({ ...base, type: 'handle', handle: l.handle, endpoint: l.endpoint, keys: l.keys, ttl: settings.handleTtl, op: ops[i] }),
          }));
          ahead.push({ lines, ops, signed: pool.sign(items) });
          if (ahead.length > BATCHES_AHEAD) {
            const done = ahead.shift()!;
            storeBatch(done.lines, done.ops, await done.signed);
          }
        }
        for (const done of ahead) storeBatch(done.lines, done.ops, await done.signed);
      } catch (err) {
        // Let the batches still being signed finish before the pool closes, so none is left rejected and
        // unobserved; their results are not wanted: the import is failing with `err`.
        await Promise.allSettled(ahead.map((a) => a.signed));
        throw err;
      }

      hashes.sort();
      const runs = denialRuns(hashes);
      const denials = await pool.sign(
        runs.map((run) => ({ type: 'denial', key: run.after ?? GAP_START, payload: JSON.stringify({ ...base, type: 'denial', ...run, hash: { alg: 'sha256', salt: row.salt }, ttl: settings.minimum }) })),
      );
      for (const old of store.records.keys(editor.zone.content, 'denial')) editor.remove('denial', old);
      editor.putNew('denial', runs.map((run, i) => ({ key: run.after ?? GAP_START, jws: denials.jws[i]! })), exp, denials.digest);
      editor.commit();
      // Changes up to this version are not in the journal: secondaries must copy the zone whole.
      store.journal.clear(zone);
      store.zones.setJournalFloor(zone, version);
      return { zone, imported, serial: serialOf(version) };
    });
  } finally {
    await pool.close();
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

/** The non-blank lines of an import, parsed and validated (but not checked against each other), `size` at a time. */
function* importBatches(text: string, size: number, belongs: (host: string) => string | null, allowLoopbackEndpoints: boolean): Generator<{ line: ImportLine; lineNo: number }[]> {
  let batch: { line: ImportLine; lineNo: number }[] = [];
  let lineNo = 0;
  for (let at = 0; at < text.length; ) {
    const end = text.indexOf('\n', at);
    const raw = text.slice(at, end < 0 ? text.length : end);
    at = end < 0 ? text.length : end + 1;
    lineNo += 1;
    if (raw.trim() === '') continue;
    batch.push({ line: parseImportLine(raw, lineNo, belongs, allowLoopbackEndpoints), lineNo });
    if (batch.length === size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

function parseImportLine(raw: string, lineNo: number, belongs: (host: string) => string | null, allowLoopbackEndpoints: boolean): ImportLine {
  const fail = (message: string): never => {
    throw new IdnsError('invalid_request', `line ${lineNo}: ${message}`);
  };
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    fail('not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('expected {"handle", "endpoint", "keys"}');
  const o = v as { handle?: unknown; endpoint?: unknown; keys?: unknown };
  const extra = Object.keys(o).filter((k) => k !== 'handle' && k !== 'endpoint' && k !== 'keys');
  if (extra.length > 0) fail(`unexpected member "${extra[0]}"`);
  if (typeof o.handle !== 'string' || typeof o.endpoint !== 'string' || !Array.isArray(o.keys)) fail('expected {"handle", "endpoint", "keys"}');
  try {
    const { handle, host } = parseHandle(o.handle as string);
    const why = belongs(host);
    if (why) fail(`${handle}: ${why}`);
    parseEndpoint(o.endpoint as string, allowLoopbackEndpoints);
    const keys = (o.keys as unknown[]).map((k, i) => parsePublicJwk(k, `keys[${i}]`));
    if (keys.length === 0 || keys.length > MAX_HANDLE_KEYS) fail(`1 to ${MAX_HANDLE_KEYS} keys`);
    if (new Set(keys.map(thumbprint)).size !== keys.length) fail('the same key is listed twice');
    const line = { handle, endpoint: o.endpoint as string, keys };
    return { ...line, canonical: JSON.stringify(line) };
  } catch (err) {
    if (err instanceof IdnsError && !err.message.startsWith(`line ${lineNo}:`)) fail(err.message);
    throw err;
  }
}
