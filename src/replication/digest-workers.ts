import { ZoneDigest, digestElement } from '../records/digest.js';
import { ThreadPool, workerFile } from '../threads/pool.js';
import { IdnsError } from '../errors.js';
import { ContentChecker, type ContentCheckSpec } from './content-checks.js';
// The schemas, for the records a digest thread hands back (digest-worker.ts): this thread decides them.
import '../records/verify.js';

interface Part {
  bytes: Uint8Array;
  ranges: Uint32Array;
}

/** @internal A job of a digest thread (digest-worker.ts): a batch of elements to add (and check), or the end. */
export type DigestJob = { kind: 'batch'; strings: string[]; parts: Part[] } | { kind: 'finish' };

/**
 * @internal A digest thread's answer: for a batch, nothing, or the records it hands back to be checked
 * here (only the schemas can decide them); its partial sum and counts for the end.
 */
export type DigestReply = null | { handedOn: string[] } | { state: Uint8Array; checked: number; signatures: number };

/** How DigestWorkers splits the work (defaults in brackets). */
export interface DigestWorkersOptions {
  /** Records a batch sent to a thread holds [512]. */
  batchSize?: number;
  /**
   * Batches queued to the threads at most, in all [32]: about 16 MB of records. The caller's thread is
   * the slower side of a full transfer (it parses and stores), so it should rarely find them full.
   */
  maxInFlight?: number;
  /**
   * Records hashed in the caller's thread before any thread is used [1024]: a thread is ready about
   * 0.1 s after it starts (it does not load the record schemas, digest-worker.ts).
   */
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
  private threads: ThreadPool<DigestJob, DigestReply> | null = null;
  private readonly local = ZoneDigest.empty();
  private hashedHere = 0;
  private strings: string[] = [];
  private parts: Part[] = [];
  private transfer: ArrayBuffer[] = [];
  private queued = 0;
  private inFlight = 0;
  private failure: Error | null = null;
  private closed = false;
  /** The batches sent to the threads, settled once their handed-back records are checked here. */
  private batches: Promise<void>[] = [];

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
    this.maxInFlight = options.maxInFlight ?? 32;
    this.inlineFirst = options.inlineFirst ?? 1024;
    this.checks = options.checks ?? null;
    this.localChecker = this.checks === null ? null : new ContentChecker(this.checks);
    if ((options.expected ?? 0) > this.inlineFirst) this.threads = this.start();
  }

  private readonly localChecker: ContentChecker | null;
  /** Records checked so far, and of them how many had their signature verified (known after finish()). */
  checked = 0;
  signatures = 0;

  private start(): ThreadPool<DigestJob, DigestReply> {
    return new ThreadPool(workerFile(import.meta.url, 'digest-worker'), { name: 'digest', size: this.workers, workerData: this.checks });
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
    const threads = this.threads;
    // Each thread answers its jobs in order: its end comes after every batch sent to it.
    let ends: { state: Uint8Array; checked: number; signatures: number }[] = [];
    try {
      const replies = threads === null ? [] : await Promise.all(Array.from({ length: threads.size }, (_, i) => threads.runOn(i, { kind: 'finish' })));
      ends = replies.filter((r) => r !== null && 'state' in r);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
    await Promise.all(this.batches);
    if (this.failure) throw this.failure;
    for (const end of ends) {
      this.checked += end.checked;
      this.signatures += end.signatures;
    }
    this.checked += this.localChecker?.checked ?? 0;
    this.signatures += this.localChecker?.signatures ?? 0;
    const digest = this.local.clone();
    for (const end of ends) digest.merge(end.state);
    await this.close();
    return digest;
  }

  /** Stops the workers (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.threads?.close();
  }

  private send(): void {
    if (this.failure) throw this.failure;
    const inline = this.hashedHere + this.queued <= this.inlineFirst;
    if (inline || (this.threads !== null && this.inFlight >= this.maxInFlight)) {
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
      this.threads ??= this.start();
      this.inFlight += 1;
      const batch = this.threads.run({ kind: 'batch', strings: this.strings, parts: this.parts }, this.transfer).then(
        (reply) => {
          this.inFlight -= 1;
          if (reply !== null && 'handedOn' in reply) this.checkHandedOn(reply.handedOn);
        },
        (err: unknown) => this.fail(err instanceof Error ? err : new Error(String(err))),
      );
      this.batches.push(batch);
    }
    this.strings = [];
    this.parts = [];
    this.transfer = [];
    this.queued = 0;
  }

  /** Checks here the records a thread handed back (see DigestReply); the first refused fails the whole. */
  private checkHandedOn(elements: readonly string[]): void {
    try {
      for (const element of elements) this.localChecker!.checkElement(element);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    // A refused record is already a transfer_failed naming it; anything else is the hashing breaking down.
    this.failure = err instanceof IdnsError ? err : new IdnsError('transfer_failed', `computing the zone digest failed: ${err.message}`, { cause: err });
  }
}
