import { IdnsError } from '../errors.js';
import { parseCheckpoint, type Checkpoint } from './checkpoint.js';
import { HASH_BYTES, MAX_PROOF_HASHES, verifyConsistency } from './merkle.js';
import { formatNote, openNote, type NoteSigner, type NoteVerifier } from './note.js';

/**
 * A witness's decisions (C2SP tlog-witness, `add-checkpoint`), apart from how it stores its state and
 * speaks HTTP: per log (origin), the latest checkpoint it cosigned; a new one is cosigned only when the
 * log's key signed it and a consistency proof shows it extends the one held. Two checkpoints of one log
 * that no proof joins are evidence that the log showed different histories (a fork): the witness keeps
 * both and cosigns nothing more of that log.
 */

/** What a witness holds of one log: the latest checkpoint it cosigned (its note as the log signed it). */
export interface WitnessedCheckpoint {
  origin: string;
  size: number;
  root: Buffer;
  note: string;
}

/** Two signed checkpoints of one log that do not join: the one held, the one offered, and why. */
export interface ForkEvidence {
  origin: string;
  held: string;
  offered: string;
  /** The consistency proof offered with it (base64 hashes), when there was one. */
  proof: string[];
  why: string;
}

/** An add-checkpoint request's body (C2SP tlog-witness): `old N`, consistency proof lines, a blank line, the checkpoint note. */
export interface AddCheckpoint {
  oldSize: number;
  proof: Buffer[];
  note: string;
}

/** The outcome of an add-checkpoint request, with the HTTP status C2SP tlog-witness gives it. */
export type AddCheckpointOutcome =
  | { status: 200; cosignatures: string; held: WitnessedCheckpoint }
  | { status: 400 | 403 | 404 | 409 | 422; message: string; heldSize?: number; evidence?: ForkEvidence };

/** The body of an add-checkpoint request. */
export function formatAddCheckpoint(request: AddCheckpoint): string {
  return `old ${request.oldSize}\n${request.proof.map((h) => `${h.toString('base64')}\n`).join('')}\n${request.note}`;
}

/** Reads an add-checkpoint request's body; throws invalid_request saying what is wrong (HTTP 400). */
export function parseAddCheckpoint(body: string): AddCheckpoint {
  const blank = body.indexOf('\n\n');
  if (blank < 0) throw new IdnsError('invalid_request', 'an add-checkpoint body is "old N", proof lines, a blank line and the checkpoint');
  const [old, ...lines] = body.slice(0, blank).split('\n') as [string, ...string[]];
  const m = /^old (0|[1-9][0-9]{0,15})$/.exec(old);
  if (m === null || !Number.isSafeInteger(Number(m[1]))) throw new IdnsError('invalid_request', 'an add-checkpoint body begins with "old N"');
  if (lines.length > MAX_PROOF_HASHES - 1) throw new IdnsError('invalid_request', `more than ${MAX_PROOF_HASHES - 1} consistency proof lines`);
  const proof = lines.map((line) => {
    const hash = Buffer.from(line, 'base64');
    if (hash.length !== HASH_BYTES || hash.toString('base64') !== line) throw new IdnsError('invalid_request', 'a consistency proof line is not a base64 hash');
    return hash;
  });
  return { oldSize: Number(m[1]), proof, note: body.slice(blank + 2) };
}

/**
 * Decides an add-checkpoint request as C2SP tlog-witness does. `logs` gives the verifiers of a known
 * origin's keys; `held` the checkpoint last cosigned for it; `forked` whether evidence of a fork of it is
 * kept (then nothing more is cosigned). On 200 the caller stores `held` before answering, atomically
 * with the check (the spec's race: two requests checked against the same held size).
 */
export function addCheckpoint(
  request: AddCheckpoint,
  logs: (origin: string) => readonly NoteVerifier[] | undefined,
  held: (origin: string) => WitnessedCheckpoint | undefined,
  forked: (origin: string) => boolean,
  cosigner: NoteSigner,
): AddCheckpointOutcome {
  const origin = request.note.slice(0, Math.max(0, request.note.indexOf('\n')));
  const verifiers = logs(origin);
  if (verifiers === undefined) return { status: 404, message: `no log ${JSON.stringify(origin.slice(0, 100))} is witnessed here` };
  let checkpoint: Checkpoint;
  try {
    const opened = openNote(request.note, verifiers);
    checkpoint = parseCheckpoint(opened.note.text);
  } catch (err) {
    if (err instanceof IdnsError) return { status: 403, message: `the checkpoint is not signed by a key of ${origin}: ${err.message}` };
    throw err;
  }
  if (checkpoint.origin !== origin) return { status: 403, message: 'the checkpoint is not of the origin it names' };
  if (forked(origin)) return { status: 409, message: `this witness keeps evidence that ${origin} forked; it cosigns nothing more of it` };
  if (request.oldSize > checkpoint.size) return { status: 400, message: `old size ${request.oldSize} is larger than the checkpoint's ${checkpoint.size}` };
  const last = held(origin);
  const lastSize = last?.size ?? 0;
  if (request.oldSize !== lastSize) return { status: 409, message: `the latest checkpoint cosigned here is of size ${lastSize}`, heldSize: lastSize };
  const fork = (why: string): AddCheckpointOutcome => ({
    status: 409,
    message: `${origin} is not consistent with the checkpoint cosigned here: ${why}`,
    evidence: { origin, held: last!.note, offered: request.note, proof: request.proof.map((h) => h.toString('base64')), why },
  });
  if (last === undefined || lastSize === 0) {
    if (request.proof.length !== 0) return { status: 422, message: 'a consistency proof from size 0 is empty' };
  } else if (lastSize === checkpoint.size) {
    if (!last.root.equals(checkpoint.root) || request.proof.length !== 0) return fork(`two checkpoints of size ${lastSize} with different roots`);
  } else {
    try {
      verifyConsistency(lastSize, checkpoint.size, request.proof, last.root, checkpoint.root);
    } catch (err) {
      if (!(err instanceof IdnsError)) throw err;
      return fork(err.message);
    }
  }
  const text = request.note.slice(0, request.note.lastIndexOf('\n\n') + 1);
  // The response body: the cosigner's signature line on the checkpoint's text.
  const cosignatures = formatNote({ text, signatures: [{ name: cosigner.name, keyId: cosigner.keyId, signature: cosigner.sign(text) }] }).slice(
    text.length + 1,
  );
  return { status: 200, cosignatures, held: { origin, size: checkpoint.size, root: checkpoint.root, note: request.note } };
}
