import { parentPort, type TransferListItem } from 'node:worker_threads';
import type { Reply, Request } from './pool.js';
import { toWire } from './wire.js';

/** What a job handler returns: the reply's value, and the buffers to hand over with it instead of copying. */
export interface Answer<Out> {
  value: Out;
  transfer?: TransferListItem[];
}

/**
 * The worker's side of a ThreadPool (pool.ts): answers each job with `handle`'s value, or with the error
 * it throws (as a WireError), in the order the jobs arrive. An async handler finishes one job before the
 * next starts, so a thread's jobs never interleave.
 */
export function serveJobs<In, Out>(handle: (job: In) => Answer<Out> | Promise<Answer<Out>>): void {
  const port = parentPort;
  if (port === null) throw new Error('serveJobs runs in a worker thread');
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (request: Request<In>) => {
    queue = queue.then(async () => {
      let reply: Reply<Out>;
      let transfer: TransferListItem[] = [];
      try {
        const answer = await handle(request.job);
        reply = { id: request.id, ok: true, value: answer.value };
        transfer = answer.transfer ?? [];
      } catch (err) {
        reply = { id: request.id, ok: false, error: toWire(err) };
      }
      port.postMessage(reply, transfer);
    });
  });
}
