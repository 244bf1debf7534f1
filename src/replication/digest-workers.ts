import { Worker } from 'node:worker_threads';
import { DIGEST_LANES, DIGEST_STATE_BYTES, ZoneDigest, digestElement } from '../records/digest.js';
import { IdnsError } from '../errors.js';

// The worker's code is a plain script (not a module file) so that it runs the same from the TypeScript
// sources under test and from dist/. It computes exactly the sum ZoneDigest.add computes (docs/protocol.md
// §5) over the elements it is sent; test/digest-workers.test.ts checks that the two agree.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const LITTLE_ENDIAN = require('node:os').endianness() === 'LE';
const LANES = ${DIGEST_LANES};
const WORDS = LANES / 2;
const words = new Uint32Array(WORDS);
const lanes = new Uint16Array(words.buffer);
const scratch = new Uint32Array(WORDS);
function add(element) {
  const b = createHash('shake128', { outputLength: ${DIGEST_STATE_BYTES} }).update(element).digest();
  if (LITTLE_ENDIAN) {
    // Two 16-bit lanes per 32-bit word, each added modulo 2^16 (as ZoneDigest does).
    let h;
    if (b.byteOffset % 4 === 0) h = new Uint32Array(b.buffer, b.byteOffset, WORDS);
    else (h = scratch), new Uint8Array(scratch.buffer).set(b.subarray(0, ${DIGEST_STATE_BYTES}));
    for (let i = 0; i < WORDS; i++) {
      const a = words[i];
      const x = h[i];
      words[i] = ((a & 0xffff0000) + (x & 0xffff0000)) | ((a + x) & 0xffff);
    }
  } else {
    for (let i = 0; i < LANES; i++) lanes[i] += b.readUInt16LE(i * 2);
  }
}
parentPort.on('message', (m) => {
  if (m === null) {
    const state = Buffer.alloc(${DIGEST_STATE_BYTES});
    for (let i = 0; i < LANES; i++) state.writeUInt16LE(lanes[i], i * 2);
    parentPort.postMessage(state);
    return;
  }
  for (const s of m.strings) add(s);
  for (const { bytes, ranges } of m.parts) {
    for (let j = 0; j < ranges.length; j += 2) add(bytes.subarray(ranges[j], ranges[j + 1]));
  }
  parentPort.postMessage(1);
});
`;

interface Slot {
  worker: Worker;
}

interface Part {
  bytes: Uint8Array;
  ranges: Uint32Array;
}

/**
 * The digest of a stream of records, computed in worker threads while the caller goes on parsing and
 * storing: records are sent in batches, round robin, and the workers' partial sums are added at the end
 * (the digest is a sum, so the split does not change it). The number of batches in flight is bounded,
 * so a fast stream waits for the hashing (`room()`) instead of queueing without bound. The first
 * records are hashed here: a small zone is done before a thread would have started.
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
  private wake: (() => void) | null = null;
  private closed = false;

  /**
   * Hashes the first `inlineFirst` records in this thread, then uses `workers` threads, sending batches of
   * about `batchSize` records, at most `maxInFlight` batches queued in all.
   */
  constructor(
    private readonly workers: number,
    private readonly batchSize = 512,
    private readonly maxInFlight = 8,
    private readonly inlineFirst = 4096,
  ) {}

  private start(): Slot[] {
    return Array.from({ length: Math.max(1, this.workers) }, () => {
      const slot: Slot = { worker: new Worker(WORKER_SOURCE, { eval: true }) };
      slot.worker.on('message', (m: unknown) => {
        if (typeof m !== 'number') return;
        this.inFlight -= 1;
        this.poke();
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

  /** True when more batches may be sent without waiting. */
  hasRoom(): boolean {
    return this.inFlight < this.maxInFlight;
  }

  /** Waits until the workers have room for another batch (or have failed). */
  async room(): Promise<void> {
    while (this.failure === null && this.inFlight >= this.maxInFlight) await new Promise<void>((r) => (this.wake = r));
    if (this.failure) throw this.failure;
  }

  /** Waits for every record added so far and returns their digest; the workers are stopped. */
  async finish(): Promise<ZoneDigest> {
    if (this.queued > 0) this.send();
    const states = await Promise.all(
      (this.slots ?? []).map(
        (slot) =>
          new Promise<Uint8Array>((resolve, reject) => {
            const onMessage = (m: unknown) => {
              if (m instanceof Uint8Array) {
                slot.worker.off('message', onMessage);
                resolve(m);
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
    if (this.slots === null && this.hashedHere + this.queued <= this.inlineFirst) {
      for (const s of this.strings) this.local.addElement(s);
      for (const { bytes, ranges } of this.parts) for (let i = 0; i < ranges.length; i += 2) this.local.addElement(bytes.subarray(ranges[i], ranges[i + 1]));
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
    this.failure = new IdnsError('transfer_failed', `computing the zone digest failed: ${err.message}`, { cause: err });
    this.poke();
  }

  private poke(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}
