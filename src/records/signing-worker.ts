// The server's Ed25519 (libsodium), installed before anything signs or verifies.
import './ed25519-sodium.js';
import { workerData } from 'node:worker_threads';
import type { KeyObject } from 'node:crypto';
import { ZoneDigest } from './digest.js';
import { signCompactText } from './jws.js';
import { serveJobs } from '../threads/worker.js';
import type { SigningBatch, SignedBatch } from './signing-pool.js';

/**
 * A thread of the record signing pool (signing-pool.ts): signs each payload of a batch with the zone key
 * and adds the signed records to a digest of the batch, so the main thread only stores the results.
 */
const { privateKey, kid, typ } = workerData as { privateKey: KeyObject; kid: string; typ: string };
const key = { kid, privateKey };

serveJobs<SigningBatch, SignedBatch>((batch) => {
  const digest = ZoneDigest.empty();
  const jws = batch.items.map((item) => {
    const signed = signCompactText(item.payload, key, typ);
    digest.add(item.type, item.key, signed);
    return signed;
  });
  const state = digest.state();
  return { value: { jws, digestState: state }, transfer: [state.buffer as ArrayBuffer] };
});
