import { Worker } from 'node:worker_threads';
import { ZoneDigest, digestElement } from '../records/digest.js';
import { workerFile, workerOptions } from '../records/thread-pool.js';
import { IdnsError } from '../errors.js';
import { ContentChecker, type ContentCheckSpec } from './content-checks.js';

interface Slot {
  worker: Worker;
}

interface Part {
  bytes: Uint8Array;
  ranges: Uint32Array;
}

/** How DigestWorkers splits the work (defaults in brackets). */
export interface DigestWorkersOptions {
  /** Records a batch sent to a thread holds [512]. */
  batchSize?: number;
  /** Batches queued to the threads at most, in all [8]. */
  maxInFlight?: number;
  /** Records hashed in the caller's thread before any thread is used [4096]. */
  inlineFirst?: number;
  /** Records the caller expects (a signed zone record's count): more than `inlineFirst` starts the threads at once. */
  expected?: number;
  /** Checks of each record (content-checks.ts), run where it is hashed; null: hash only. */
  checks?: ContentCheckSpec | null;
}

/**
 * The digest of a stream of records, computed in worker threads while the caller goes on parsing and
 * storing: records are sent in batches, round robin, and the workers' partial sums are added at the end
 * (the digest is a sum, so the split does not change it). The number of batches in flight is bounded;
 * a batch that finds the workers full is hashed here instead of waiting, so the caller's thread takes
 * its share whenever the workers are the slower side, and a fast stream never queues without bound.
 * The first records are hashed here: a small zone is done before a thread would have started; when the
 * caller says a large stream is coming (`expected`), the threads start at once and load their code
 * while those first records are hashed. Given `checks`, each record is also checked where it is hashed
 * (content-checks.ts), and the first that fails fails the whole (`finish()`, or the next `add` or `addElements`, throws its
 * transfer_failed error).
 */
export class DigestWorkers {
  private slots: Slot[] | null = null;
  private readonly local = ZoneDigest.empty();
  private hashedHere = 0;
  private strings: string[] = [];
  private parts: Part[] = [];
  private transfer: ArrayBuffer[] = [];
  private queued = 0;
  private next = 0;
  private inFlight = 0;
  private failure: Error | null = null;
  private closed = false;

  private readonly workers: number;
  private readonly batchSize: number;
  private readonly maxInFlight: number;
  private readonly inlineFirst: number;
  private readonly checks: ContentCheckSpec | null;

  /**
   * Hashes the first `inlineFirst` records in this thread, then uses `workers` threads, sending batches of
   * about `batchSize` records, at most `maxInFlight` batches queued in all.
   */
  constructor(workers: number, options: DigestWorkersOptions = {}) {
    this.workers = Math.max(1, workers);
    this.batchSize = options.batchSize ?? 512;
    this.maxInFlight = options.maxInFlight ?? 8;
    this.inlineFirst = options.inlineFirst ?? 4096;
    this.checks = options.checks ?? null;
    this.localChecker = this.checks === null ? null : new ContentChecker(this.checks);
    if ((options.expected ?? 0) > this.inlineFirst) this.slots = this.start();
  }

  private readonly localChecker: ContentChecker | null;
  /** Records checked so far, and of them how many had their signature verified (known after finish()). */
  checked = 0;
  signatures = 0;

  private start(): Slot[] {
    return Array.from({ length: this.workers }, () => {
      const slot: Slot = { worker: new Worker(workerFile(import.meta.url, 'digest-worker'), workerOptions(this.checks)) };
      slot.worker.on('message', (m: unknown) => {
        if (typeof m === 'object' && m !== null && 'error' in m) {
          this.fail(new IdnsError('transfer_failed', String((m as { error: unknown }).error)));
          return;
        }
        if (typeof m !== 'number') return;
        this.inFlight -= 1;
      });
      slot.worker.on('error', (err) => this.fail(err));
      slot.worker.on('exit', (code) => {
        if (!this.closed) this.fail(new Error(`a digest worker exited (code ${code})`));
      });
      return slot;
    });
  }

  /** Adds one record, stored under (type, key). */
  add(type: string, key: string, jws: string): void {
    this.strings.push(digestElement(type, key, jws));
    if (++this.queued >= this.batchSize) this.send();
  }

  /**
   * Adds the records whose digest elements are `bytes[ranges[2i], ranges[2i+1])` (UTF-8). Both arrays
   * are handed over to the worker (their buffers are transferred): the caller must not use them afterwards.
   */
  addElements(bytes: Uint8Array, ranges: Uint32Array): void {
    this.parts.push({ bytes, ranges });
    for (const b of [bytes.buffer, ranges.buffer]) if (b instanceof ArrayBuffer && !this.transfer.includes(b)) this.transfer.push(b);
    this.queued += ranges.length / 2;
    if (this.queued >= this.batchSize) this.send();
  }

  /** Waits for every record added so far and returns their digest; the workers are stopped. */
  async finish(): Promise<ZoneDigest> {
    if (this.queued > 0) this.send();
    const states = await Promise.all(
      (this.slots ?? []).map(
        (slot) =>
          new Promise<Uint8Array>((resolve, reject) => {
            const onMessage = (m: unknown) => {
              if (typeof m === 'object' && m !== null && 'state' in m) {
                slot.worker.off('message', onMessage);
                const done = m as { state: Uint8Array; checked: number; signatures: number };
                this.checked += done.checked;
                this.signatures += done.signatures;
                resolve(done.state);
              }
            };
            slot.worker.on('message', onMessage);
            slot.worker.once('error', reject);
            slot.worker.once('exit', () => reject(this.failure ?? new Error('a digest worker exited')));
            slot.worker.postMessage(null);
          }),
      ),
    );
    if (this.failure) throw this.failure;
    this.checked += this.localChecker?.checked ?? 0;
    this.signatures += this.localChecker?.signatures ?? 0;
    const digest = this.local.clone();
    for (const s of states) digest.merge(s);
    await this.close();
    return digest;
  }

  /** Stops the workers (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all((this.slots ?? []).map((s) => s.worker.terminate()));
  }

  private send(): void {
    if (this.failure) throw this.failure;
    const inline = this.hashedHere + this.queued <= this.inlineFirst;
    if (inline || (this.slots !== null && this.inFlight >= this.maxInFlight)) {
      const checker = this.localChecker;
      for (const s of this.strings) {
        checker?.checkElement(s);
        this.local.addElement(s);
      }
      for (const { bytes, ranges } of this.parts) {
        const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        for (let i = 0; i < ranges.length; i += 2) {
          checker?.checkBytes(buf, ranges[i]!, ranges[i + 1]!);
          this.local.addElement(bytes.subarray(ranges[i], ranges[i + 1]));
        }
      }
      this.hashedHere += this.queued;
    } else {
      this.slots ??= this.start();
      const slot = this.slots[this.next]!;
      this.next = (this.next + 1) % this.slots.length;
      slot.worker.postMessage({ strings: this.strings, parts: this.parts }, this.transfer);
      this.inFlight += 1;
    }
    this.strings = [];
    this.parts = [];
    this.transfer = [];
    this.queued = 0;
  }

  private fail(err: Error): void {
    if (this.failure) return;
    // A refused record is already a transfer_failed naming it; anything else is the hashing breaking down.
    this.failure = err instanceof IdnsError ? err : new IdnsError('transfer_failed', `computing the zone digest failed: ${err.message}`, { cause: err });
  }
}
