import { IdnsError } from '../errors.js';
import { serialOf, versionOfSerial } from '../authority/serial.js';
import { SnapshotReader } from '../store/snapshot.js';

/**
 * Produces a zone transfer as NDJSON (docs/protocol.md, "Zone transfer"), from a snapshot of the
 * database so the stream is consistent at one serial, pulled line by line so memory stays bounded
 * however large the zone: only what the client has not yet read is buffered, a few hundred lines at most.
 */
export interface TransferRequest {
  zone: string;
  /** Incremental transfer from this serial; null for a full transfer. */
  since: number | null;
}

/** Lines emitted per pull from the stream. */
const LINES_PER_PULL = 256;

/** Opens a transfer; throws zone_not_found, zone_unavailable, journal_too_old or invalid_request up front. */
export function openTransfer(dbPath: string, req: TransferRequest): ReadableStream<Uint8Array> {
  const reader = new SnapshotReader(dbPath);
  try {
    const zone = reader.zone(req.zone);
    if (!zone) throw new IdnsError('zone_not_found', `zone ${req.zone} is not held by this server`);
    if (zone.record === '') throw new IdnsError('zone_unavailable', `zone ${req.zone} has not been loaded yet`);
    const serial = serialOf(zone.version);
    const start = { kind: 'start', zone: zone.name, serial, record: zone.record };
    const end = { kind: 'end', zone: zone.name, serial, record: zone.record };
    let lines: Generator<object>;
    if (req.since === null) {
      lines = full(reader, zone.content, start, end);
    } else {
      const from = versionOfSerial(req.since, zone.version);
      if (from === null) throw new IdnsError('invalid_request', `serial ${req.since} is ahead of this server's serial ${serial}`);
      if (from < zone.journalFloor) {
        throw new IdnsError('journal_too_old', `the journal of ${req.zone} no longer reaches back to serial ${req.since}; take a full transfer`);
      }
      lines = incremental(reader, zone.name, from, start, end, req.since);
    }
    const encoder = new TextEncoder();
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        let chunk = '';
        for (let i = 0; i < LINES_PER_PULL; i++) {
          const next = lines.next();
          if (next.done) {
            if (chunk !== '') controller.enqueue(encoder.encode(chunk));
            reader.close();
            controller.close();
            return;
          }
          chunk += `${JSON.stringify(next.value)}\n`;
        }
        controller.enqueue(encoder.encode(chunk));
      },
      cancel() {
        // The client went away: finish the generators (which finalises their statements) and release the snapshot.
        lines.return(undefined);
        reader.close();
      },
    });
  } catch (err) {
    reader.close();
    throw err;
  }
}

function* full(reader: SnapshotReader, content: string, start: object, end: object): Generator<object> {
  yield { ...start, mode: 'full' };
  let count = 0;
  for (const r of reader.records(content)) {
    count += 1;
    yield { kind: 'record', type: r.type, key: r.key, record: r.jws };
  }
  yield { ...end, count };
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
