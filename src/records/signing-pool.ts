import { ZoneDigest } from './digest.js';
import type { SigningKey } from './keys.js';
import { ThreadPool, workerFile } from '../threads/pool.js';

/**
 * One record to sign: its payload as JSON text (a string crosses to a worker far more cheaply than an
 * object), and the type and key it will be stored under (for the digest).
 */
export interface SigningItem {
  type: string;
  key: string;
  payload: string;
}

/** @internal The job a signing worker receives. */
export interface SigningBatch {
  items: SigningItem[];
}

/** @internal What a signing worker answers. */
export interface SignedBatch {
  jws: string[];
  digestState: Uint8Array;
}

/** A signed batch: the compact JWS of each item, in order, and the digest of those records alone. */
export interface SignedRecords {
  jws: string[];
  digest: ZoneDigest;
}

/** Items per message to a worker: large enough to amortise the message, small enough to spread over the workers. */
const PART_ITEMS = 2048;

/**
 * Signs records with one zone key on worker threads, one per core: bulk operations need many Ed25519
 * signatures and their digest elements, which would otherwise hold the main thread that stores them.
 * Batches are spread over the workers; each returns its signatures and the LtHash of its records, which
 * the caller adds to the zone's digest in one step.
 */
export class SigningPool {
  private readonly pool: ThreadPool<SigningBatch, SignedBatch>;

  constructor(key: SigningKey, typ: string, size?: number) {
    this.pool = new ThreadPool(workerFile(import.meta.url, 'signing-worker'), {
      name: 'signing',
      workerData: { privateKey: key.privateKey, kid: key.kid, typ },
      size,
    });
  }

  /** Signs a batch; a large one is split so that every worker takes a part. */
  async sign(items: SigningItem[]): Promise<SignedRecords> {
    const parts: SigningItem[][] = [];
    for (let at = 0; at < items.length || parts.length === 0; at += PART_ITEMS) parts.push(items.slice(at, at + PART_ITEMS));
    const replies = await Promise.all(parts.map((part) => this.pool.run({ items: part })));
    const digest = ZoneDigest.empty();
    for (const r of replies) digest.merge(r.digestState);
    return { jws: replies.length === 1 ? replies[0]!.jws : replies.flatMap((r) => r.jws), digest };
  }

  /** Stops the workers; batches still waiting are refused. */
  close(): Promise<void> {
    return this.pool.close();
  }
}
