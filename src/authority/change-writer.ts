import { IdnsError } from '../errors.js';
import { ThreadPool, workerFile } from '../threads/pool.js';
import { fromWire, type WireError } from '../threads/wire.js';
import type { BatchResult, BatchRunner, ChangeOutcome, ChangeResult, QueuedChange } from './change-batch.js';

/** What the writer thread starts with: where the database and the zone keys are. */
export interface WriterSetup {
  dataDir: string;
  maxDatabaseBytes: number | null;
}

/** A batch sent to the writer thread, with the time the changes are applied at (the caller's clock). */
export interface WriterJob {
  batch: QueuedChange[];
  now: number;
}

/** The writer thread's answer, once the batch is committed and durable (a batch that did not commit is an error reply). */
export interface WriterReply {
  outcomes: ({ ok: true; value: ChangeResult } | { ok: false; error: WireError })[];
  committed: BatchResult['committed'];
  inviteFailures: string[];
}

/**
 * Runs change batches on a writer thread with its own connection to the database
 * (change-writer-worker.ts), so that signing, SQLite's work and the wait for fsync leave the main
 * thread to HTTP and signature checks: on two cores this is what lets both work for registrations. The
 * thread starts with the first batch; one that dies fails its batches and is replaced at the next.
 */
export class ChangeWriter implements BatchRunner {
  private pool: ThreadPool<WriterJob, WriterReply> | null = null;
  private closing = false;

  constructor(private readonly setup: WriterSetup) {}

  /** Applies the batch on the writer thread; resolves once it is durable, rejects when it did not commit. */
  async run(batch: QueuedChange[], now: number): Promise<BatchResult> {
    this.pool ??= new ThreadPool(workerFile(import.meta.url, 'change-writer-worker'), { name: 'writer', size: 1, workerData: this.setup });
    let reply: WriterReply;
    try {
      reply = await this.pool.run({ batch, now });
    } catch (err) {
      if (err instanceof IdnsError) throw err;
      if (this.closing) throw new IdnsError('internal', 'the server is shutting down; the changes were not confirmed', { cause: err });
      // Whether the batch committed in a thread that failed is unknown, so none of its changes may be called accepted.
      throw new IdnsError('internal', 'the writer thread failed; the changes were not confirmed, send them again', { cause: err });
    }
    const outcomes: ChangeOutcome[] = reply.outcomes.map((o) => (o.ok ? o : { ok: false, error: fromWire(o.error, 'writer') }));
    return { outcomes, committed: reply.committed, inviteFailures: reply.inviteFailures };
  }

  /** Stops the writer thread (after the processor has drained: nothing is waiting then). */
  async close(): Promise<void> {
    this.closing = true;
    await this.pool?.close();
  }
}
