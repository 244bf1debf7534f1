// A worker for test/threads.test.ts: the real worker side (dist/threads/worker.js) with jobs that answer,
// throw, wait or crash, so the pool's behaviour is checked on real threads.
import { threadId, workerData } from 'node:worker_threads';
import { IdnsError } from '../../dist/errors.js';
import { serveJobs } from '../../dist/threads/worker.js';

let seen = 0;
serveJobs(async (job) => {
  seen += 1;
  switch (job.kind) {
    case 'echo':
      return { value: { echo: job.value, threadId, seen, data: workerData } };
    case 'wait':
      await new Promise((r) => setTimeout(r, job.ms));
      return { value: { waited: job.ms, threadId } };
    case 'bytes':
      return { value: { length: job.bytes.byteLength, threadId } };
    case 'give': {
      const out = new Uint8Array(job.size).fill(7);
      return { value: out, transfer: [out.buffer] };
    }
    case 'idns-error':
      throw new IdnsError('invalid_request', 'a typed refusal', { details: { line: 3 } });
    case 'plain-error':
      throw new TypeError('a bug');
    case 'crash':
      process.exit(3);
  }
  throw new Error(`unknown job ${job.kind}`);
});
