import { Worker } from 'node:worker_threads';
import { IdnsError, type ErrorCode } from '../errors.js';
import { PendingReplies, workerFile, workerOptions } from '../records/thread-pool.js';
import type { BatchResult, BatchRunner, ChangeOutcome, ChangeResult, QueuedChange } from './change-batch.js';

/** What the writer thread starts with: where the database and the zone keys are. */
export interface WriterSetup {
  dataDir: string;
  maxDatabaseBytes: number | null;
}

/** A batch sent to the writer thread, with the time the changes are applied at (the caller's clock). */
export interface WriterJob {
  id: number;
  batch: QueuedChange[];
  now: number;
}

/** An error as it crosses between threads: an IdnsError keeps its code and details. */
export interface WireError {
  code: ErrorCode | null;
  message: string;
  details?: Record<string, unknown>;
}

/** The writer thread's answer, once the batch is committed and durable: its outcomes, or why it failed. */
export type WriterReply =
  | {
      id: number;
      ok: true;
      outcomes: ({ ok: true; value: ChangeResult } | { ok: false; error: WireError })[];
      committed: BatchResult['committed'];
      inviteFailures: string[];
    }
  | { id: number; ok: false; error: WireError };

/**
 * Runs change batches on a writer thread with its own connection to the database
 * (change-writer-worker.ts), so that signing, SQLite's work and the wait for fsync leave the main
 * thread to HTTP and signature checks: on two cores this is what lets both work for registrations. The
 * thread starts with the first batch; one that dies fails its batches and is replaced at the next.
 */
export class ChangeWriter implements BatchRunner {
  private worker: Worker | null = null;
  private readonly pending = new PendingReplies<BatchResult>();

  constructor(private readonly setup: WriterSetup) {}

  /** Applies the batch on the writer thread; resolves once it is durable, rejects when it did not commit. */
  run(batch: QueuedChange[], now: number): Promise<BatchResult> {
    const worker = (this.worker ??= this.start());
    const { id, reply } = this.pending.add();
    const job: WriterJob = { id, batch, now };
    worker.postMessage(job);
    return reply;
  }

  /** Stops the writer thread (after the processor has drained: nothing is waiting then). */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    this.pending.failAll(new IdnsError('internal', 'the server is shutting down; the changes were not confirmed'));
    await worker?.terminate();
  }

  private start(): Worker {
    const worker = new Worker(workerFile(import.meta.url, 'change-writer-worker'), workerOptions(this.setup));
    worker.on('message', (message: WriterReply) => {
      const waiting = this.pending.take(message.id);
      if (!waiting) return;
      if (!message.ok) {
        waiting.reject(fromWire(message.error));
        return;
      }
      const outcomes: ChangeOutcome[] = message.outcomes.map((o) => (o.ok ? o : { ok: false, error: fromWire(o.error) }));
      waiting.resolve({ outcomes, committed: message.committed, inviteFailures: message.inviteFailures });
    });
    worker.on('error', (err) => this.lost(worker, err));
    worker.on('exit', (code) => this.lost(worker, new Error(`the writer thread exited with code ${code}`)));
    return worker;
  }

  private lost(worker: Worker, cause: unknown): void {
    if (this.worker !== worker) return;
    this.worker = null;
    // Whether the batches in the thread committed is unknown, so none of their changes may be called accepted.
    this.pending.failAll(new IdnsError('internal', 'the writer thread failed; the changes were not confirmed, send them again', { cause }));
  }
}

/** An error made fit for postMessage (an IdnsError's class and cause do not survive the copy). */
export function toWire(err: unknown): WireError {
  if (err instanceof IdnsError) return { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) };
  return { code: null, message: err instanceof Error ? err.message : String(err) };
}

function fromWire(err: WireError): Error {
  if (err.code === null) return new Error(`writer thread: ${err.message}`);
  return new IdnsError(err.code, err.message, err.details !== undefined ? { details: err.details } : undefined);
}
