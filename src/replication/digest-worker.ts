// The server's Ed25519 (libsodium), installed before anything signs or verifies.
import '../records/ed25519-sodium.js';
import { parentPort, workerData } from 'node:worker_threads';
import { ZoneDigest } from '../records/digest.js';
import { ContentChecker, type ContentCheckSpec } from './content-checks.js';

/**
 * A thread of DigestWorkers (digest-workers.ts): adds the digest elements it is sent to its partial sum
 * and, when the transfer asks for it, checks each record as a resolver would (content-checks.ts), so that
 * neither the hashing nor the checks hold the thread that parses and stores the stream.
 */
const checker = workerData === null ? null : new ContentChecker(workerData as ContentCheckSpec);
const digest = ZoneDigest.empty();

/** A batch of elements: strings, and byte runs holding elements at [ranges[2i], ranges[2i+1]). */
interface Batch {
  strings: string[];
  parts: { bytes: Uint8Array; ranges: Uint32Array }[];
}

parentPort!.on('message', (m: Batch | null) => {
  if (m === null) {
    const state = digest.state();
    parentPort!.postMessage({ state, checked: checker?.checked ?? 0, signatures: checker?.signatures ?? 0 });
    return;
  }
  try {
    for (const s of m.strings) {
      checker?.checkElement(s);
      digest.addElement(s);
    }
    for (const { bytes, ranges } of m.parts) {
      const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let j = 0; j < ranges.length; j += 2) {
        // Compact streams are ASCII (checked as they are split), so latin1 reads them exactly.
        checker?.checkBytes(buf, ranges[j]!, ranges[j + 1]!);
        digest.addElement(buf.subarray(ranges[j], ranges[j + 1]));
      }
    }
    parentPort!.postMessage(1);
  } catch (err) {
    parentPort!.postMessage({ error: (err as Error).message });
  }
});
