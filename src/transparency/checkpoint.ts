import type { KeyObject } from 'node:crypto';
import { IdnsError } from '../errors.js';
import { ed25519 } from '../records/ed25519.js';
import type { PublicJwk } from '../records/keys.js';
import { HASH_BYTES } from './merkle.js';
import { assureKeyName, NOTE_COSIGNATURE_V1, noteKeyId, rawKey, type NoteSigner, type NoteVerifier } from './note.js';

/**
 * Checkpoints (C2SP tlog-checkpoint) and their witnesses' cosignatures (C2SP tlog-cosignature, the
 * Ed25519 type 0x04). A checkpoint is a note whose text is the log's origin, its tree size and its root
 * hash; a cosignature is a note signature over `cosignature/v1`, the time, and that text.
 */

/** A checkpoint's text as read. */
export interface Checkpoint {
  origin: string;
  size: number;
  root: Buffer;
  /** Lines after the root hash: idns writes one, its map's root (zone-map.ts MAP_LINE); others are opaque. */
  extensions: string[];
}

/** The text of a checkpoint: origin, tree size, base64 root hash, then any extension lines, each on its own line. */
export function checkpointText(c: Pick<Checkpoint, 'origin' | 'size' | 'root'> & { extensions?: readonly string[] }): string {
  if (c.origin.length === 0 || c.origin.includes('\n')) throw new IdnsError('internal', 'a checkpoint origin is one non-empty line');
  const extensions = c.extensions ?? [];
  if (extensions.some((l) => l.length === 0 || l.includes('\n'))) throw new IdnsError('internal', 'a checkpoint extension is one non-empty line');
  return `${c.origin}\n${c.size}\n${c.root.toString('base64')}\n${extensions.map((l) => `${l}\n`).join('')}`;
}

/** Reads a checkpoint's text (a note's, already opened). Throws verification_failed saying what is wrong. */
export function parseCheckpoint(text: string): Checkpoint {
  const lines = text.split('\n');
  // The text ends in a newline: the last piece is empty.
  if (lines.length < 4 || lines.pop() !== '') throw fail('a checkpoint is at least three lines, each ending in a newline');
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin.length === 0) throw fail('a checkpoint with an empty origin');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText)))
    throw fail(`a checkpoint tree size ${JSON.stringify(sizeText.slice(0, 40))}`);
  const root = Buffer.from(rootText, 'base64');
  if (root.length !== HASH_BYTES || root.toString('base64') !== rootText) throw fail('a checkpoint root hash that is not 32 bytes of base64');
  if (extensions.some((l) => l.length === 0)) throw fail('a checkpoint with an empty extension line');
  return { origin, size: Number(sizeText), root, extensions };
}

/** The message a v1 cosignature signs: `cosignature/v1`, `time T`, then the checkpoint's text. */
export function cosignedMessage(text: string, time: number): string {
  return `cosignature/v1\ntime ${time}\n${text}`;
}

/** A witness's cosigner (type 0x04) for `name`: signs a checkpoint's text at the time `now()` gives (POSIX seconds). */
export function cosigner(name: string, privateKey: KeyObject, publicJwk: PublicJwk, now: () => number): NoteSigner {
  assureKeyName(name);
  return {
    name,
    keyId: noteKeyId(name, NOTE_COSIGNATURE_V1, rawKey(publicJwk)),
    sign: (text) => {
      const time = now();
      const stamp = Buffer.alloc(8);
      stamp.writeBigUInt64BE(BigInt(time));
      return Buffer.concat([stamp, ed25519.sign(Buffer.from(cosignedMessage(text, time)), privateKey)]);
    },
  };
}

/** A verifier of a witness's cosignatures (type 0x04) for `name` and its public key. */
export function cosignatureVerifier(name: string, publicJwk: PublicJwk): NoteVerifier {
  assureKeyName(name);
  return {
    name,
    keyId: noteKeyId(name, NOTE_COSIGNATURE_V1, rawKey(publicJwk)),
    verify: (text, signature) => {
      const time = cosignatureTime(signature);
      return time !== null && ed25519.verify(Buffer.from(cosignedMessage(text, time)), signature.subarray(8), publicJwk);
    },
  };
}

/** The time a cosignature states (POSIX seconds), or null when it is not a timestamped Ed25519 signature. */
export function cosignatureTime(signature: Buffer): number | null {
  if (signature.length !== 8 + 64) return null;
  const time = signature.readBigUInt64BE(0);
  return time > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(time);
}

function fail(why: string): IdnsError {
  return new IdnsError('verification_failed', why);
}
