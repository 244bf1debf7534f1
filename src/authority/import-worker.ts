// The server's Ed25519 (libsodium), installed before anything signs or verifies.
import '../records/ed25519-sodium.js';
import { workerData } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import { nameHash } from '../records/denial.js';
import { ZoneDigest } from '../records/digest.js';
import { RECORD_TYP, signCompactText } from '../records/jws.js';
import { parseImportLine } from './import-line.js';
import { historyKey } from '../records/history-key.js';
import { signOperatorEntry } from '../records/operator-entry.js';
import { requestId } from '../records/change-request.js';
import { serveJobs } from '../threads/worker.js';
import { toWire } from '../threads/wire.js';
import { changeLeafHash } from '../transparency/zone-log.js';
import type { ImportChunk, PreparedChunk } from './import.js';

/**
 * A thread of a bulk import (import.ts): parses and validates a chunk of the file's lines, then builds,
 * signs and hashes each handle's record (and its history entry's leaf in the zone's log), so that the main thread only checks the lines against the zone
 * and each other and stores them. The first bad line ends the chunk: what came before it is returned
 * with the error, so the caller can still report an earlier line's error first.
 */
const { privateKey, kid } = workerData as { privateKey: KeyObject; kid: string };
const key = { kid, privateKey };

serveJobs<ImportChunk, PreparedChunk>((chunk) => {
  const out: PreparedChunk = {
    handles: [],
    hosts: [],
    lineNos: [],
    entries: [],
    entryLeaves: new Uint8Array(0),
    hashes: [],
    jws: [],
    digestState: new Uint8Array(0),
    error: null,
  };
  const leaves: Buffer[] = [];
  const digest = ZoneDigest.empty();
  const { text, context: c } = chunk;
  let lineNo = chunk.firstLineNo;
  try {
    for (let at = 0; at < text.length; lineNo++) {
      const end = text.indexOf('\n', at);
      const raw = text.slice(at, end < 0 ? text.length : end);
      at = end < 0 ? text.length : end + 1;
      if (raw.trim() === '') continue;
      const line = parseImportLine(raw, lineNo, c.allowLoopbackEndpoints);
      const entry = signOperatorEntry(
        { action: 'import', zone: c.base.zone, handle: line.handle, endpoint: line.endpoint, keys: line.keys, iat: c.base.iat },
        key,
      );
      const op = requestId(entry);
      const payload = JSON.stringify({
        ...c.base,
        type: 'handle',
        handle: line.handle,
        endpoint: line.endpoint,
        keys: line.keys,
        ttl: c.ttl,
        op,
        genesis: op,
        seq: 1,
      });
      const jws = signCompactText(payload, key, RECORD_TYP);
      digest.add('handle', line.handle, jws);
      digest.add('op', historyKey(line.handle, 1), entry);
      leaves.push(changeLeafHash('put', 'op', historyKey(line.handle, 1), entry)!);
      out.handles.push(line.handle);
      out.hosts.push(line.host);
      out.lineNos.push(lineNo);
      out.entries.push(entry);
      out.hashes.push(nameHash(c.salt, line.handle));
      out.jws.push(jws);
    }
  } catch (err) {
    // A line's own error names its line; anything else is told with the line it happened on.
    out.error = toWire(err);
    if (out.error.code === null) out.error.message = `line ${lineNo}: ${out.error.message}`;
  }
  out.digestState = digest.state();
  // A buffer of its own (not a slice of Buffer's pool), to be transferred.
  out.entryLeaves = new Uint8Array(Buffer.concat(leaves));
  return { value: out, transfer: [out.digestState.buffer as ArrayBuffer, out.entryLeaves.buffer as ArrayBuffer] };
});
