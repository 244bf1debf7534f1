// The server's Ed25519 (libsodium), installed before anything signs or verifies.
import '../records/ed25519-sodium.js';
import { writeAnswerFile } from '../store/answer-file.js';
import { SnapshotReader } from '../store/snapshot.js';
import { serveJobs } from '../threads/worker.js';
import type { BuildJob, BuildReply } from './answer-files.js';
import { recordTimes } from './authority.js';
import { WHOLE_EVIDENCE_MAX_ENTRIES, evidenceOf, type StoredEvidence } from '../records/history-evidence.js';
import type { NumberedEntry } from '../records/history-chain.js';

/**
 * Builds one zone's answer file (answer-files.ts) on its own thread and read-only connection: reading a
 * million records and writing them out takes seconds, which the serving thread cannot give. The records
 * and the zone row come from one snapshot, so the file matches the version it names.
 */
serveJobs<BuildJob, BuildReply>((job) => {
  const reader = new SnapshotReader(job.dbPath);
  try {
    const row = reader.zone(job.zone);
    if (row === undefined || row.record === '') return { value: { kind: 'gone' } };
    const meta = { zone: row.name, content: row.content, createdAt: row.createdAt, version: row.version, zoneRecord: row.record };
    const handles = reader.handleCount(row.content);
    if (handles < job.minHandles) return { value: { kind: 'small', meta: { ...meta, entries: handles } } };
    const entries = writeAnswerFile(
      job.path,
      meta,
      handles,
      forFile(reader.handlesWithHistory(row.content, WHOLE_EVIDENCE_MAX_ENTRIES), (handle) => reader.keptEvidence(row.content, handle)),
    );
    return { value: { kind: 'built', meta: { ...meta, entries } } };
  } finally {
    reader.close();
  }
});

/** Each record with the TTL and expiry of its payload and its answer's evidence, made once here instead of on every answer. */
function* forFile(
  records: Iterable<{ key: string; jws: string; history: NumberedEntry[]; leaf: number | null }>,
  kept: (handle: string) => StoredEvidence | undefined,
) {
  for (const r of records) {
    yield { key: r.key, jws: r.jws, ...recordTimes(r.jws), history: evidenceOf(r.history.reverse(), () => kept(r.key)), leaf: r.leaf };
  }
}
