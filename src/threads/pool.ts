import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, type ResourceLimits, type TransferListItem, type WorkerOptions } from 'node:worker_threads';
import { fromWire, type WireError } from './wire.js';

/**
 * The one way idns runs work on other threads (signing, bulk import, the change writer, answer-file
 * builds, transfer digests): a ThreadPool of worker threads running one worker file, each job a message
 * answered by one reply (worker.ts is the worker's side). Every reply has the same envelope; an error
 * thrown by a job crosses as a WireError and is thrown again here as the same typed error.
 */

/** A job as a worker receives it: the caller's message and the id its reply carries. */
export interface Request<In> {
  id: number;
  job: In;
}

/** A worker's reply to one job. */
export type Reply<Out> = { id: number; ok: true; value: Out } | { id: number; ok: false; error: WireError };

/** How a pool runs its threads. */
export interface ThreadPoolOptions {
  /** Names the pool's threads in errors and logs ("writer", "digest"…). */
  name: string;
  /** Threads in the pool [one per core]. */
  size?: number;
  /** What every thread starts with (its `workerData`). */
  workerData?: unknown;
  /** V8 heap limits of each thread. */
  resourceLimits?: ResourceLimits;
}

interface Waiter<Out> {
  slot: number;
  resolve: (value: Out) => void;
  reject: (err: Error) => void;
}

/**
 * A fixed number of worker threads running one script, started when the pool is made. Jobs go round
 * robin (or to a given thread: `runOn`), and each thread works through its jobs in the order sent. A
 * thread that fails or exits fails the jobs it held, and is started again for the next job sent to it:
 * a crash costs the work in flight, never the pool.
 */
export class ThreadPool<In, Out> {
  private readonly threads: (Worker | null)[];
  private readonly waiting = new Map<number, Waiter<Out>>();
  private nextId = 0;
  private closed = false;

  /** `file` is the worker's compiled script (see workerFile). */
  constructor(
    private readonly file: string,
    private readonly options: ThreadPoolOptions,
  ) {
    this.threads = Array.from({ length: Math.max(1, options.size ?? availableParallelism()) }, (_, slot) => this.start(slot));
  }

  /** Threads in the pool. */
  get size(): number {
    return this.threads.length;
  }

  /** Sends a job to the next thread; resolves with its reply's value, or rejects with the error it threw. */
  run(job: In, transfer: readonly TransferListItem[] = []): Promise<Out> {
    return this.runOn(this.nextId % this.threads.length, job, transfer);
  }

  /** Sends a job to thread `slot` (0 ≤ slot < size), after the jobs already sent to it. */
  runOn(slot: number, job: In, transfer: readonly TransferListItem[] = []): Promise<Out> {
    if (this.closed) return Promise.reject(new Error(`the ${this.options.name} threads were stopped`));
    const worker = (this.threads[slot] ??= this.start(slot));
    const id = this.nextId++;
    const reply = new Promise<Out>((resolve, reject) => this.waiting.set(id, { slot, resolve, reject }));
    const request: Request<In> = { id, job };
    worker.postMessage(request, transfer);
    return reply;
  }

  /** Stops the threads; jobs still waiting are refused. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failSlot(null, new Error(`the ${this.options.name} threads were stopped`));
    await Promise.all(this.threads.map((w) => w?.terminate()));
  }

  private start(slot: number): Worker {
    const worker = new Worker(this.file, {
      ...workerOptions(this.options.workerData),
      ...(this.options.resourceLimits ? { resourceLimits: this.options.resourceLimits } : {}),
    });
    worker.on('message', (reply: Reply<Out>) => {
      const waiter = this.waiting.get(reply.id);
      if (!waiter) return;
      this.waiting.delete(reply.id);
      if (reply.ok) waiter.resolve(reply.value);
      else waiter.reject(fromWire(reply.error, this.options.name));
    });
    worker.on('error', (err) => this.lost(slot, worker, err));
    worker.on('exit', (code) => this.lost(slot, worker, new Error(`a ${this.options.name} thread exited with code ${code}`)));
    return worker;
  }

  private lost(slot: number, worker: Worker, cause: Error): void {
    if (this.threads[slot] !== worker) return;
    this.threads[slot] = null;
    if (this.closed) return;
    this.failSlot(slot, new Error(`a ${this.options.name} thread failed: ${cause.message}`, { cause }));
  }

  /** Fails the jobs waiting on thread `slot` (every thread's when null). */
  private failSlot(slot: number | null, err: Error): void {
    for (const [id, waiter] of this.waiting) {
      if (slot !== null && waiter.slot !== slot) continue;
      this.waiting.delete(id);
      waiter.reject(err);
    }
  }
}

/**
 * The compiled file of a worker script that sits beside the calling module (`import.meta.url`). Under the
 * test runner modules are TypeScript sources, which a worker thread cannot load, so it takes the compiled
 * copy in dist/ (the tests' global setup builds it).
 */
export function workerFile(callerUrl: string, name: string): string {
  const here = dirname(fileURLToPath(callerUrl));
  const dir = fileURLToPath(callerUrl).endsWith('.ts') ? here.replace(/\/src(\/[^/]+)$/, '/dist$1') : here;
  return join(dir, `${name}.js`);
}

/**
 * Options for a worker thread running a file: `workerData`, and the process's node options less those
 * about the main script (`--input-type`, `-e` and its text), with which such a worker fails to start.
 * Explicit options must all be ones a worker accepts, so they are given only when something was dropped;
 * otherwise the worker inherits them as they are.
 */
function workerOptions(workerData: unknown): WorkerOptions {
  const args = process.execArgv;
  if (!args.some((arg) => /^(--input-type|--eval|-e|--print|-p)\b/.test(arg))) return { workerData };
  return { workerData, execArgv: args.filter((arg) => arg.startsWith('--') && !/^--(input-type|eval|print)\b/.test(arg)) };
}
