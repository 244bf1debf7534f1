import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ZoneDigest } from './digest.js';
import type { SigningKey } from './keys.js';

/**
 * One record to sign: its payload as JSON text (a string crosses to a worker far more cheaply than an
 * object), and the type and key it will be stored under (for the digest).
 */
export interface SigningItem {
  type: string;
  key: string;
  payload: string;
}

/** @internal The message a signing worker receives. */
export interface SigningBatch {
  id: number;
  items: SigningItem[];
}

/** @internal The message a signing worker sends back. */
export interface SignedBatch {
  id: number;
  jws: string[];
  digestState: Uint8Array;
}

/** A signed batch: the compact JWS of each item, in order, and the digest of those records alone. */
export interface SignedRecords {
  jws: string[];
  digest: ZoneDigest;
}

/**
 * Signs records with one zone key on worker threads, one per core: bulk operations (an import of a million
 * handles) need about a million Ed25519 signatures and their digest elements, which would otherwise hold
 * the main thread that stores them. Batches are spread over the workers; each returns its signatures and
 * the LtHash of its records, which the caller adds to the zone's digest in one step.
 */
export class SigningPool {
  private readonly workers: Worker[];
  private readonly waiting = new Map<number, { resolve: (r: SignedRecords) => void; reject: (err: Error) => void }>();
  private nextId = 0;
  private failure: Error | null = null;

  constructor(key: SigningKey, typ: string, size = availableParallelism()) {
    this.workers = Array.from({ length: Math.max(1, size) }, () => {
      const worker = new Worker(workerPath(), { workerData: { privateKey: key.privateKey, kid: key.kid, typ } });
      worker.on('message', (reply: SignedBatch) => {
        const w = this.waiting.get(reply.id);
        this.waiting.delete(reply.id);
        w?.resolve({ jws: reply.jws, digest: ZoneDigest.fromState(reply.digestState) });
      });
      worker.on('error', (err) => this.fail(err));
      worker.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`a signing worker exited with code ${code}`));
      });
      return worker;
    });
  }

  /** Signs a batch (a few thousand items is a good size: large enough to amortise the message, small enough to overlap). */
  sign(items: SigningItem[]): Promise<SignedRecords> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      const batch: SigningBatch = { id, items };
      this.workers[id % this.workers.length]!.postMessage(batch);
    });
  }

  /** Stops the workers; batches still waiting are refused. */
  async close(): Promise<void> {
    this.fail(new Error('the signing pool was closed'));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }
}

/**
 * The worker's compiled file. Under the test runner this module is TypeScript source, which a worker
 * thread cannot load, so it takes the compiled copy in dist/ (the tests' global setup builds it).
 */
function workerPath(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) return here.replace(/\/src\/records\/signing-pool\.ts$/, '/dist/records/signing-worker.js');
  return here.replace(/signing-pool\.js$/, 'signing-worker.js');
}
