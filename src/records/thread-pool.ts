import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, type TransferListItem, type WorkerOptions } from 'node:worker_threads';

/** What a pool's worker receives: the caller's message with the id its reply must carry. */
export type PoolRequest<In> = In & { id: number };

/** The replies awaited from worker threads, by message id: one promise per message, settled by its reply or failed together. */
export class PendingReplies<T> {
  private readonly waiting = new Map<number, { resolve: (reply: T) => void; reject: (err: unknown) => void }>();
  private nextId = 0;

  /** A new message id and the promise its reply will settle. */
  add(): { id: number; reply: Promise<T> } {
    const id = this.nextId++;
    const reply = new Promise<T>((resolve, reject) => this.waiting.set(id, { resolve, reject }));
    return { id, reply };
  }

  /** Removes and returns the waiter of `id`: undefined when there is none (it failed already). */
  take(id: number): { resolve: (reply: T) => void; reject: (err: unknown) => void } | undefined {
    const waiting = this.waiting.get(id);
    this.waiting.delete(id);
    return waiting;
  }

  /** Fails every reply still awaited. */
  failAll(err: unknown): void {
    for (const waiting of this.waiting.values()) waiting.reject(err);
    this.waiting.clear();
  }
}

/**
 * A fixed set of worker threads running one script, one per core by default, for bulk work (signing,
 * parsing) that would otherwise hold the main thread. Each job is a message with an id, answered by one
 * message with the same id; jobs are spread round robin. A worker that fails fails every waiting job.
 */
export class ThreadPool<In extends object, Out extends { id: number }> {
  private readonly workers: Worker[];
  private readonly pending = new PendingReplies<Out>();
  private failure: Error | null = null;

  /** `file` is the worker's compiled script (see workerFile), `workerData` what every worker starts with. */
  constructor(file: string, workerData: unknown, size = availableParallelism()) {
    this.workers = Array.from({ length: Math.max(1, size) }, () => {
      const worker = new Worker(file, workerOptions(workerData));
      worker.on('message', (reply: Out) => this.pending.take(reply.id)?.resolve(reply));
      worker.on('error', (err) => this.fail(err));
      worker.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`a worker thread exited with code ${code}`));
      });
      return worker;
    });
  }

  /** Sends a job to the next worker; resolves with its reply. */
  run(job: In, transfer: readonly TransferListItem[] = []): Promise<Out> {
    if (this.failure) return Promise.reject(this.failure);
    const { id, reply } = this.pending.add();
    const request: PoolRequest<In> = { ...job, id };
    this.workers[id % this.workers.length]!.postMessage(request, transfer);
    return reply;
  }

  /** Stops the workers; jobs still waiting are refused. */
  async close(): Promise<void> {
    this.fail(new Error('the worker pool was closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.pending.failAll(err);
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
export function workerOptions(workerData: unknown): WorkerOptions {
  const args = process.execArgv;
  if (!args.some((arg) => /^(--input-type|--eval|-e|--print|-p)\b/.test(arg))) return { workerData };
  return { workerData, execArgv: args.filter((arg) => arg.startsWith('--') && !/^--(input-type|eval|print)\b/.test(arg)) };
}
