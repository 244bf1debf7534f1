// The server's Ed25519 (libsodium), installed before anything signs or verifies.
import '../records/ed25519-sodium.js';
import { parentPort, workerData } from 'node:worker_threads';
import { writeAnswerFile } from '../store/answer-file.js';
import { SnapshotReader } from '../store/snapshot.js';
import type { BuildJob, BuildReply } from './answer-files.js';
import { recordTimes } from './answers.js';

/**
 * Builds one zone's answer file (answer-files.ts) on its own thread and read-only connection: reading a
 * million records and writing them out takes seconds, which the serving thread cannot give. The records
 * and the zone row come from one snapshot, so the file matches the version it names.
 */
const job = workerData as BuildJob;
const reader = new SnapshotReader(job.dbPath);
let reply: BuildReply;
try {
  const row = reader.zone(job.zone);
  if (row === undefined || row.record === '') {
    reply = { kind: 'gone' };
  } else {
    const meta = { zone: row.name, content: row.content, createdAt: row.createdAt, version: row.version, zoneRecord: row.record };
    const handles = reader.handleCount(row.content);
    if (handles < job.minHandles) {
      reply = { kind: 'small', meta: { ...meta, entries: handles } };
    } else {
      const entries = writeAnswerFile(job.path, meta, handles, withTimes(reader.handles(row.content)));
      reply = { kind: 'built', meta: { ...meta, entries } };
    }
  }
} finally {
  reader.close();
}
parentPort!.postMessage(reply);

/** Each record with the TTL and expiry of its payload, read once here instead of on every answer. */
function* withTimes(records: Iterable<{ key: string; jws: string }>) {
  for (const r of records) yield { ...r, ...recordTimes(r.jws) };
}
