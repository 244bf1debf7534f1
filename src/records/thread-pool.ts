import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker, type TransferListItem, type WorkerOptions } from 'node:worker_threads';

/** What a pool's worker receives: the caller's message with the id its reply must carry. */
export type PoolRequest<In> = In & { id: number };

/**
 * A fixed set of worker threads running one script, one per core by default, for bulk work (signing,
 * parsing) that would otherwise hold the main thread. Each job is a message with an id, answered by one
 * message with the same id; jobs are spread round robin. A worker that fails fails every waiting job.
 */
export class ThreadPool<In extends object, Out extends { id: number }> {
  private readonly workers: Worker[];
  private readonly waiting = new Map<number, { resolve: (r: Out) => void; reject: (err: Error) => void }>();
  private nextId = 0;
  private failure: Error | null = null;

  /** `file` is the worker's compiled script (see workerFile), `workerData` what every worker starts with. */
  constructor(file: string, workerData: unknown, size = availableParallelism()) {
    this.workers = Array.from({ length: Math.max(1, size) }, () => {
      const worker = new Worker(file, workerOptions(workerData));
      worker.on('message', (reply: Out) => {
        const w = this.waiting.get(reply.id);
        this.waiting.delete(reply.id);
        w?.resolve(reply);
      });
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
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      const request: PoolRequest<In> = { ...job, id };
      this.workers[id % this.workers.length]!.postMessage(request, transfer);
    });
  }

  /** Stops the workers; jobs still waiting are refused. */
  async close(): Promise<void> {
    this.fail(new Error('the worker pool was closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
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
