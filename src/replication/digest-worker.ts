// The server's Ed25519 (libsodium), installed before anything signs or verifies.
import '../records/ed25519-sodium.js';
import { workerData } from 'node:worker_threads';
import { ZoneDigest } from '../records/digest.js';
import { serveJobs } from '../threads/worker.js';
import { ContentChecker, type ContentCheckSpec } from './content-checks.js';
import type { DigestJob, DigestReply } from './digest-workers.js';

/**
 * A thread of DigestWorkers (digest-workers.ts): adds the digest elements it is sent to its partial sum
 * and, when the transfer asks for it, checks each record as a resolver would (content-checks.ts), so that
 * neither the hashing nor the checks hold the thread that parses and stores the stream. A record that
 * fails its check fails the batch (the reply is its transfer_failed error). The thread does not install the
 * record schemas: records the fast paths cannot vouch for (a delegation, a handle with owner links,
 * anything malformed) come back in the batch's reply, for the main thread. History entries are checked
 * here, with the change-request and operator-entry parsers.
 */
// Without the record schemas: a record only they can decide is handed back to the main thread.
const checker = workerData === null ? null : new ContentChecker(workerData as ContentCheckSpec, true);
const digest = ZoneDigest.empty();

serveJobs<DigestJob, DigestReply>((job) => {
  if (job.kind === 'finish') {
    const state = digest.state();
    return { value: { state, checked: checker?.checked ?? 0, signatures: checker?.signatures ?? 0 }, transfer: [state.buffer as ArrayBuffer] };
  }
  for (const s of job.strings) {
    checker?.checkElement(s);
    digest.addElement(s);
  }
  for (const { bytes, ranges } of job.parts) {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let j = 0; j < ranges.length; j += 2) {
      // Compact streams are ASCII (checked as they are split), so latin1 reads them exactly.
      checker?.checkBytes(buf, ranges[j]!, ranges[j + 1]!);
      digest.addElement(buf.subarray(ranges[j], ranges[j + 1]));
    }
  }
  const handedOn = checker?.handedOn?.splice(0) ?? [];
  return { value: handedOn.length === 0 ? null : { handedOn } };
});
