import { IdnsError } from '../errors.js';
import { serialOf, versionOfSerial } from '../records/serial.js';
import { SnapshotReader } from '../store/snapshot.js';
import type { ZoneRow } from '../store/zones.js';
import { checkpointSize } from '../transparency/zone-log.js';

/**
 * Produces a zone transfer (docs/protocol.md §11) from a snapshot of the database, so the stream is
 * consistent at one serial, pulled chunk by chunk so memory stays bounded however large the zone: only
 * what the client has not yet read is buffered, one chunk at most.
 */
export interface TransferRequest {
  zone: string;
  /** Incremental transfer from this serial; null for a full transfer. */
  since: number | null;
  /** The `format` query parameter, if any: `ndjson` (the default) or `compact` (full transfers only). */
  format?: string | undefined;
}

/** A transfer ready to be sent. */
export interface OpenedTransfer {
  body: ReadableStream<Uint8Array>;
  contentType: string;
}

/** Content type of each transfer format (section 11.1). */
export const TRANSFER_CONTENT_TYPES = { ndjson: 'application/x-ndjson', compact: 'application/x-idns-compact' } as const;

export type TransferFormat = keyof typeof TRANSFER_CONTENT_TYPES;

/** Bytes per chunk of the stream (a line longer than this gets a chunk of its own). */
const CHUNK_BYTES = 128 * 1024;

/** Opens a transfer; throws zone_not_found, zone_unavailable, journal_too_old or invalid_request up front. */
export function openTransfer(dbPath: string, req: TransferRequest): OpenedTransfer {
  const format = req.format === undefined ? 'ndjson' : req.format;
  if (format !== 'ndjson' && format !== 'compact') throw new IdnsError('invalid_request', 'format must be ndjson or compact');
  const reader = new SnapshotReader(dbPath);
  try {
    const zone = reader.zone(req.zone);
    if (!zone) throw new IdnsError('zone_not_found', `zone ${req.zone} is not held by this server`);
    if (zone.record === '') throw new IdnsError('zone_unavailable', `zone ${req.zone} has not been loaded yet`);
    const serial = serialOf(zone.version);
    // The checkpoint of the zone's log at this serial (none from a copy made by an older idns: receivers refuse it).
    const logged = zone.checkpoint === '' ? {} : { checkpoint: zone.checkpoint };
    const start = { kind: 'start', zone: zone.name, serial, record: zone.record, ...logged };
    const end = { kind: 'end', zone: zone.name, serial, record: zone.record, ...logged };
    let chunks: Generator<Uint8Array>;
    let sent: TransferFormat = 'ndjson';
    if (req.since === null) {
      sent = format;
      chunks = format === 'compact' ? compactFull(reader, zone, start, end) : ndjsonChunks(full(reader, zone, start, end));
    } else {
      // Incremental transfers are small: they are always NDJSON, whatever format was asked for.
      const from = versionOfSerial(req.since, zone.version);
      if (from === null) throw new IdnsError('invalid_request', `serial ${req.since} is ahead of this server's serial ${serial}`);
      if (from < zone.journalFloor) {
        throw new IdnsError('journal_too_old', `the journal of ${req.zone} no longer reaches back to serial ${req.since}; take a full transfer`);
      }
      chunks = ndjsonChunks(incremental(reader, zone.name, from, start, end, req.since));
    }
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        let next: IteratorResult<Uint8Array>;
        try {
          next = chunks.next();
        } catch (err) {
          // An errored stream is never cancelled: release the snapshot here, or it would pin the WAL until GC.
          reader.close();
          throw err;
        }
        if (next.done) {
          reader.close();
          controller.close();
        } else {
          controller.enqueue(next.value);
        }
      },
      cancel() {
        // The client went away: finish the generators (which finalises their statements) and release the snapshot.
        chunks.return(undefined);
        reader.close();
      },
    });
    return { body, contentType: TRANSFER_CONTENT_TYPES[sent] };
  } catch (err) {
    reader.close();
    throw err;
  }
}

/**
 * A transfer line as JSON in ASCII only: a checkpoint's signature lines begin with an em dash (C2SP
 * signed-note), written as \u2014 so that a compact stream stays ASCII (section 11.1).
 */
function asciiJson(value: object): string {
  const json = JSON.stringify(value);
  return NON_ASCII.test(json) ? json.replace(NON_ASCII_ALL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : json;
}

const NON_ASCII = /[^\x00-\x7f]/;
const NON_ASCII_ALL = /[^\x00-\x7f]/g;

function* ndjsonChunks(lines: Generator<object>): Generator<Uint8Array> {
  let chunk = '';
  for (const line of lines) {
    chunk += `${asciiJson(line)}\n`;
    if (chunk.length >= CHUNK_BYTES) {
      yield Buffer.from(chunk, 'utf8');
      chunk = '';
    }
  }
  if (chunk !== '') yield Buffer.from(chunk, 'utf8');
}

/** Leaf hashes per `log` line: 1,024 × 32 bytes, 44 KiB of base64, well within a line's 128 KiB. */
const LOG_HASHES_PER_LINE = 1024;
/** Leaf numbers per `leaves` line: at most 17 characters each (16 digits and a comma), under 70 KiB. */
const LEAVES_PER_LINE = 4096;

/**
 * The log section of a full transfer (section 11.1): the zone's leaf hashes in order (`log` lines), then
 * the leaf of each history entry in the order the entries follow (`leaves` lines).
 */
function* logLines(reader: SnapshotReader, zone: ZoneRow): Generator<object> {
  if (zone.checkpoint === '') return;
  let hashes: Buffer[] = [];
  for (const hash of reader.logLeaves(zone.content, 0, checkpointSize(zone.checkpoint))) {
    hashes.push(hash);
    if (hashes.length === LOG_HASHES_PER_LINE) {
      yield { kind: 'log', hashes: Buffer.concat(hashes).toString('base64') };
      hashes = [];
    }
  }
  if (hashes.length > 0) yield { kind: 'log', hashes: Buffer.concat(hashes).toString('base64') };
  let leaves: number[] = [];
  for (const leaf of reader.entryLeaves(zone.content)) {
    if (leaf === null) throw new IdnsError('internal', `zone ${zone.name}: a history entry has no leaf in the zone's log`);
    leaves.push(leaf);
    if (leaves.length === LEAVES_PER_LINE) {
      yield { kind: 'leaves', leaves };
      leaves = [];
    }
  }
  if (leaves.length > 0) yield { kind: 'leaves', leaves };
}

function* full(reader: SnapshotReader, zone: ZoneRow, start: object, end: object): Generator<object> {
  const content = zone.content;
  yield { ...start, mode: 'full' };
  yield* logLines(reader, zone);
  let count = 0;
  for (const r of reader.records(content)) {
    count += 1;
    yield { kind: 'record', type: r.type, key: r.key, record: r.jws };
  }
  yield { ...end, count };
}

/**
 * The compact full transfer: the start and end lines as in NDJSON, and between them one line
 * `type TAB key TAB jws` per record. Every field is ASCII (types, normalised names, hashes, compact JWS),
 * so each character is written as one byte, straight into the chunk.
 */
function* compactFull(reader: SnapshotReader, zone: ZoneRow, start: object, end: object): Generator<Uint8Array> {
  const content = zone.content;
  // The start line and the log section are JSON lines, as in NDJSON.
  yield* ndjsonChunks(
    (function* () {
      yield { ...start, mode: 'full' };
      yield* logLines(reader, zone);
    })(),
  );
  let chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  let at = 0;
  let count = 0;
  for (const line of reader.compactLines(content)) {
    if (at + line.length > chunk.length) {
      if (at > 0) yield chunk.subarray(0, at);
      chunk = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, line.length));
      at = 0;
    }
    at += chunk.write(line, at, 'latin1');
    count += 1;
  }
  if (at > 0) yield chunk.subarray(0, at);
  yield Buffer.from(`${asciiJson({ ...end, count })}\n`, 'utf8');
}

function* incremental(reader: SnapshotReader, zone: string, from: number, start: object, end: object, since: number): Generator<object> {
  yield { ...start, mode: 'incremental', since };
  let version = -1;
  let count = 0;
  for (const e of reader.journal(zone, from)) {
    if (e.version !== version) {
      version = e.version;
      yield { kind: 'version', serial: serialOf(version) };
    }
    count += 1;
    yield e.action === 'put' ? { kind: 'put', type: e.type, key: e.key, record: e.jws } : { kind: 'del', type: e.type, key: e.key };
  }
  yield { ...end, count };
}
