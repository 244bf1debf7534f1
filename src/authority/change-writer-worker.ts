// The server's Ed25519 (libsodium), installed before anything signs or verifies.
import '../records/ed25519-sodium.js';
import { join } from 'node:path';
import { workerData } from 'node:worker_threads';
import type { Clock } from '../clock.js';
import { Store } from '../store/store.js';
import { ChangeApplier, type BatchResult, type QueuedChange } from './change-batch.js';
import { serveJobs } from '../threads/worker.js';
import { toWire } from '../threads/wire.js';
import type { WriterJob, WriterReply, WriterSetup } from './change-writer.js';
import { KeyRing } from './keyring.js';
import { ZoneService } from './zones.js';

/**
 * The writer thread (change-writer.ts): applies the main thread's change batches on its own database
 * connection, at the time the main thread gives with each batch (so a test's clock holds), and answers
 * once the batch is committed and on disk.
 */
const setup = workerData as WriterSetup;
let now = 0;
const batchClock: Clock = { now: () => now };
const store = Store.open(setup.dataDir, setup.maxDatabaseBytes);
const applier = new ChangeApplier(store, new ZoneService(store, new KeyRing(join(setup.dataDir, 'keys')), batchClock), batchClock);

serveJobs<WriterJob, WriterReply>((job) => {
  now = job.now;
  // A batch that does not commit throws: its error is the reply.
  const result = applier.applyBatch(job.batch.map(revive));
  return {
    value: {
      outcomes: result.outcomes.map((o) => (o.ok ? o : { ok: false, error: toWire(o.error) })),
      committed: result.committed,
      inviteFailures: result.inviteFailures,
    },
  };
});

/** A Buffer arrives as a plain Uint8Array; the signatures (the request's and its proofs') are used as Buffers again. */
function revive(change: QueuedChange): QueuedChange {
  for (const decoded of [change.req.decoded, ...change.req.proofs.map((p) => p.decoded)]) {
    const sig = decoded.signature as Uint8Array;
    decoded.signature = Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength);
  }
  return change;
}
