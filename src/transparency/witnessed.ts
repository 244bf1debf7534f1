import { IdnsError } from '../errors.js';
import { parsePublicJwk, thumbprint, type PublicJwk } from '../records/keys.js';
import { cosignatureTime, cosignatureVerifier } from './checkpoint.js';
import { HASH_BYTES, MAX_PROOF_HASHES, verifyInclusion } from './merkle.js';
import { ed25519NoteVerifier, MAX_NOTE_SIGNATURES, openNote, type NoteVerifier } from './note.js';
import { parseCheckpoint, type Checkpoint } from './checkpoint.js';
import { changeLeafHash, logOrigin, zoneRecordLeafHash } from './zone-log.js';
import { witnessName } from './witness-name.js';
import { MAX_MAP_PROOF, mapKey, mapRootOf, mapValue, storedKeyOf, verifyMapMembership } from './zone-map.js';
import { decodeCompact } from '../records/jws.js';
import { MAX_NO_CUT_PROOFS } from '../records/verify-core.js';

/** What a resolver requires of a zone's checkpoints (`--witness THUMBPRINT… --witness-quorum N`). */
export interface WitnessPolicy {
  /** Thumbprints of the witness keys that count. */
  witnesses: readonly string[];
  /** How many of them must have cosigned. */
  quorum: number;
  /** How old the youngest `quorum` cosignatures may be, s (default one hour). */
  freshnessSeconds: number;
}

/** Default freshness bound of witnessed answers: one hour (docs/protocol.md §14). */
export const DEFAULT_WITNESS_FRESHNESS_SECONDS = 3600;

/** A checkpoint that bound an answer, verified: its tree, and until when its cosignatures make it fresh enough (epoch s). */
export interface BoundCheckpoint extends Checkpoint {
  note: string;
  /** The quorum's cosignatures are within the freshness bound until then; Infinity without a policy. */
  freshUntil: number;
}

/** Seconds a cosignature's time may lie ahead of the verifier's clock (as records' `iat`, docs/protocol.md §3). */
const CLOCK_SKEW_SECONDS = 300;

/**
 * Checks an answer's log binding (docs/protocol.md §13.5): the checkpoint is the zone's, signed by a key
 * of `zoneKeys`; `zoneRecord` is its tree's last leaf; `records` (the answer's `record`, then its `noCut`
 * denials; a referral's delegation), verified already, are the zone's current ones by the map the
 * checkpoint names (§13.6); `entry` (a handle answer's history entry, as `handle#seq` and its JWS) is the
 * leaf the binding names; and, with a policy, at least `quorum` of its witnesses cosigned it within the
 * freshness bound, each checked with a key the binding carries whose thumbprint the policy names. Throws
 * verification_failed saying what does not hold.
 */
export function verifyAnswerLog(
  zone: string,
  zoneRecord: string,
  zoneKeys: readonly PublicJwk[],
  input: unknown,
  policy: WitnessPolicy | null,
  nowSeconds: number,
  records: readonly string[],
  entry?: { key: string; jws: string },
): BoundCheckpoint {
  const log = shapeOf(input);
  const checkpoint = verifyCheckpoint(zone, log.checkpoint, zoneKeys, log.witnesses, policy, nowSeconds);
  verifyInclusion(zoneRecordLeafHash(zoneRecord), checkpoint.size - 1, checkpoint.size, log.zoneRecord, checkpoint.root);
  verifyCurrent(zone, checkpoint, records, log.map);
  if (entry !== undefined) {
    if (log.entry === undefined) throw fail(`the answer carries no inclusion proof of history entry ${entry.key}`);
    verifyInclusion(changeLeafHash('put', 'op', entry.key, entry.jws)!, log.entry.leaf, checkpoint.size, log.entry.proof, checkpoint.root);
  }
  return checkpoint;
}

/**
 * Checks that each of `records` is the one its zone holds now under its key: a membership proof (of
 * `proofs`, in the same order) in the map whose root the checkpoint names. A checkpoint that names no
 * map (an older idns) proves nothing current: refused, so that a replayed older record, within its
 * signature's validity, is not taken with a newer checkpoint.
 */
function verifyCurrent(zone: string, checkpoint: Checkpoint, records: readonly string[], proofs: Buffer[][] | undefined): void {
  const root = mapRootOf(checkpoint.extensions);
  if (root === null) throw fail(`the checkpoint of ${zone} names no map of its records: it cannot show them current`);
  if (proofs === undefined || proofs.length !== records.length)
    throw fail(`the binding carries ${proofs?.length ?? 0} map proofs for the answer's ${records.length} records`);
  records.forEach((jws, i) => {
    const payload = decodeCompact(jws).payload as Record<string, unknown>;
    const type = payload.type;
    if (type !== 'handle' && type !== 'delegation' && type !== 'denial') throw fail(`a ${String(type)} record has no place in the map`);
    verifyMapMembership(mapKey(type, storedKeyOf(type, payload)), mapValue(jws), proofs[i]!, root);
  });
}

/**
 * Checks a checkpoint of `zone`'s log: signed by a key of `zoneKeys` under the zone's origin, of a tree
 * that is not empty, and, with a policy, cosigned by `quorum` of its witnesses within the freshness bound,
 * each checked with a key of `witnessKeys` (by name, as a binding or the zone's record carries them)
 * whose thumbprint the policy names. Throws verification_failed saying what does not hold.
 */
export function verifyCheckpoint(
  zone: string,
  note: string,
  zoneKeys: readonly PublicJwk[],
  witnessKeys: Readonly<Record<string, unknown>>,
  policy: WitnessPolicy | null,
  nowSeconds: number,
): BoundCheckpoint {
  const origin = logOrigin(zone);
  const verifiers: NoteVerifier[] = zoneKeys.map((k) => ed25519NoteVerifier(origin, k));
  const counted = new Set<NoteVerifier>();
  if (policy !== null) {
    for (const [name, key] of Object.entries(witnessKeysOf(witnessKeys))) {
      if (!policy.witnesses.includes(thumbprint(key))) continue;
      const v = cosignatureVerifier(name, key);
      verifiers.push(v);
      counted.add(v);
    }
  }
  const { note: opened, verified } = openNote(note, verifiers);
  if (!verified.some((v) => !counted.has(v.verifier))) throw fail(`the checkpoint is not signed by a key of zone ${zone}`);
  const checkpoint = parseCheckpoint(opened.text);
  if (checkpoint.origin !== origin) throw fail(`a checkpoint of ${checkpoint.origin}, not of ${origin}`);
  if (checkpoint.size === 0) throw fail('a checkpoint of an empty log');
  let freshUntil = Infinity;
  if (policy !== null) {
    const times = verified
      .filter((v) => counted.has(v.verifier))
      .map((v) => cosignatureTime(v.signature)!)
      .filter((t) => t <= nowSeconds + CLOCK_SKEW_SECONDS)
      .sort((a, b) => b - a);
    const youngest = times.slice(0, policy.quorum);
    const oldest = youngest.at(-1);
    if (youngest.length < policy.quorum || oldest === undefined || oldest + policy.freshnessSeconds < nowSeconds) {
      const fresh = times.filter((t) => t + policy.freshnessSeconds >= nowSeconds).length;
      throw fail(
        `the checkpoint of ${zone} is cosigned by ${fresh} of the witnesses required within the last ${policy.freshnessSeconds} s; ${policy.quorum} needed`,
      );
    }
    freshUntil = oldest + policy.freshnessSeconds;
  }
  return { ...checkpoint, note, freshUntil };
}

/**
 * The witness keys of a binding that are keys, each under the name its thumbprint gives (at most
 * MAX_NOTE_SIGNATURES): anything else counts for no witness (the quorum decides whether enough remain).
 */
function witnessKeysOf(witnessKeys: Readonly<Record<string, unknown>>): Record<string, PublicJwk> {
  const keys: Record<string, PublicJwk> = {};
  for (const [name, value] of Object.entries(witnessKeys).slice(0, MAX_NOTE_SIGNATURES)) {
    let key: PublicJwk;
    try {
      key = parsePublicJwk(value, `witness key ${name.slice(0, 80)}`);
    } catch (err) {
      if (err instanceof IdnsError) continue;
      throw err;
    }
    if (witnessName(thumbprint(key)) === name) keys[name] = key;
  }
  return keys;
}

/**
 * A zone's log binding as a forwarded proof's step carries it (docs/protocol.md §7): the checkpoint, the
 * witness keys that came with it, and the zone record's inclusion proof. A resolver that checked the
 * binding keeps it with the proof it serves, so that a resolver forwarding to it can check it too.
 */
export interface StepLog {
  checkpoint: string;
  witnesses: Record<string, PublicJwk>;
  zoneRecord: string[];
  /** The map proofs of the records the step vouches for (a referral's delegation; the last step's record and noCut). */
  map: string[][];
}

/** A handle answer's history entry in its zone's log, as a forwarded proof carries it (its leaf and inclusion proof). */
export interface EntryProof {
  leaf: number;
  proof: string[];
}

/**
 * What a proof keeps of a binding that verifyAnswerLog accepted: only the members it read (the entry
 * only when it was checked: `withEntry`), and of the witness keys those that are keys under their own
 * names (whichever witnesses a forwarding resolver requires, it finds theirs), so that nothing else a
 * server added is held or passed on.
 */
export function keptBinding(input: unknown, withEntry: boolean): { log: StepLog; entry?: EntryProof } {
  const shape = shapeOf(input);
  const log: StepLog = {
    checkpoint: shape.checkpoint,
    witnesses: witnessKeysOf(shape.witnesses),
    zoneRecord: shape.zoneRecord.map(b64),
    map: (shape.map ?? []).map((p) => p.map(b64)),
  };
  return !withEntry || shape.entry === undefined ? { log } : { log, entry: { leaf: shape.entry.leaf, proof: shape.entry.proof.map(b64) } };
}

function b64(hash: Buffer): string {
  return hash.toString('base64');
}

interface AnswerLogShape {
  checkpoint: string;
  witnesses: Record<string, unknown>;
  zoneRecord: Buffer[];
  entry?: { leaf: number; proof: Buffer[] };
  map?: Buffer[][];
}

/** The binding's members, of the right types and within bounds (the note's own bounds are openNote's). */
function shapeOf(input: unknown): AnswerLogShape {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw fail('the answer carries no log binding');
  const log = input as Record<string, unknown>;
  if (typeof log.checkpoint !== 'string') throw fail('a log binding without a checkpoint');
  const witnesses = log.witnesses ?? {};
  if (typeof witnesses !== 'object' || witnesses === null || Array.isArray(witnesses) || Object.keys(witnesses).length > MAX_NOTE_SIGNATURES) {
    throw fail(`a log binding's witnesses are an object of at most ${MAX_NOTE_SIGNATURES} keys`);
  }
  const shape: AnswerLogShape = { checkpoint: log.checkpoint, witnesses: witnesses as Record<string, unknown>, zoneRecord: proofHashes(log.zoneRecord) };
  if (log.entry !== undefined) {
    const e = log.entry as { leaf?: unknown; proof?: unknown } | null;
    if (typeof e !== 'object' || e === null || !Number.isSafeInteger(e.leaf) || (e.leaf as number) < 0)
      throw fail("a log binding's entry without a leaf number");
    shape.entry = { leaf: e.leaf as number, proof: proofHashes(e.proof) };
  }
  if (log.map !== undefined) {
    // One proof per record of an answer: its record and at most MAX_NO_CUT_PROOFS denials of noCut.
    if (!Array.isArray(log.map) || log.map.length > 1 + MAX_NO_CUT_PROOFS)
      throw fail(`a log binding's map is a list of at most ${1 + MAX_NO_CUT_PROOFS} proofs`);
    shape.map = log.map.map((p) => proofHashes(p, MAX_MAP_PROOF));
  }
  return shape;
}

/** A proof's hashes as a server gives them (base64), at most `most` (a log's proofs: MAX_PROOF_HASHES); anything else throws verification_failed. */
export function proofHashes(value: unknown, most = MAX_PROOF_HASHES): Buffer[] {
  if (!Array.isArray(value) || value.length > most) throw fail(`a proof is a list of at most ${most} hashes`);
  return value.map((h) => {
    const hash = typeof h === 'string' ? Buffer.from(h, 'base64') : Buffer.alloc(0);
    if (hash.length !== HASH_BYTES || hash.toString('base64') !== h) throw fail('a proof hash is not 32 bytes of base64');
    return hash;
  });
}

function fail(why: string): IdnsError {
  return new IdnsError('verification_failed', why);
}
