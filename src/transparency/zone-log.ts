import { createHash } from 'node:crypto';
import { IdnsError } from '../errors.js';
import type { PublicJwk, SigningKey } from '../records/keys.js';
import { checkpointText, parseCheckpoint, type Checkpoint } from './checkpoint.js';
import { leafHash } from './merkle.js';
import { ed25519NoteSigner, ed25519NoteVerifier, openNote, parseNote, signNote } from './note.js';
import { MAP_LINE, mapRootOf } from './zone-map.js';

/**
 * A zone's log (docs/protocol.md §13): an append-only Merkle tree (RFC 9162) with one leaf per change of
 * the zone, in the order the journal lists them: each history entry added, each delegation put or
 * removed, and each zone record signed (the last leaf of every version a zone record was signed for).
 * A leaf is `kind || SHA-256(key) || SHA-256(record)`: hashes only, so the log reveals no handle a
 * denial hides. Each version's zone record is followed by a checkpoint (C2SP tlog-checkpoint) of the
 * tree, signed by the zone key.
 */

/** The kinds of leaves, the first byte of each. */
export const LEAF_KINDS = { entry: 1, delegation: 2, undelegation: 3, zone: 4 } as const;

/** The leaf bytes of a change, or null for a change the log does not record (handle records and denials follow from entries). */
export function changeLeaf(action: 'put' | 'del', type: string, key: string, jws: string | null): Buffer | null {
  let kind: number;
  if (action === 'put' && type === 'op') kind = LEAF_KINDS.entry;
  else if (action === 'put' && type === 'delegation') kind = LEAF_KINDS.delegation;
  else if (action === 'del' && type === 'delegation') kind = LEAF_KINDS.undelegation;
  else if (action === 'put' && type === 'zone') kind = LEAF_KINDS.zone;
  else return null;
  return Buffer.concat([Buffer.from([kind]), sha256(key), sha256(action === 'put' ? (jws ?? '') : '')]);
}

/** The leaf hash (RFC 9162: SHA-256(0x00 || leaf)) of a change, or null when the log does not record it. */
export function changeLeafHash(action: 'put' | 'del', type: string, key: string, jws: string | null): Buffer | null {
  const leaf = changeLeaf(action, type, key, jws);
  return leaf === null ? null : leafHash(leaf);
}

/** The leaf hash of a zone record: the last leaf of the tree a checkpoint of that version commits to. */
export function zoneRecordLeafHash(zoneRecord: string): Buffer {
  return changeLeafHash('put', 'zone', '', zoneRecord)!;
}

/** The origin of a zone's checkpoints, also the name of the zone key as their signer: `<zone>/idns-log`. */
export function logOrigin(zone: string): string {
  return `${zone}/idns-log`;
}

/** The zone whose log an origin names (`<zone>/idns-log`), or null. */
export function zoneOfLogOrigin(origin: string): string | null {
  const zone = origin.endsWith('/idns-log') ? origin.slice(0, -'/idns-log'.length) : null;
  return zone !== null && zone !== '' && logOrigin(zone) === origin ? zone : null;
}

/** A checkpoint of the zone's log and its map (the map's root as an extension line), signed by the zone key (a C2SP signed note). */
export function signCheckpoint(zone: string, size: number, root: Buffer, mapRoot: Buffer, key: SigningKey): string {
  const origin = logOrigin(zone);
  const extensions = [`${MAP_LINE}${mapRoot.toString('base64')}`];
  return signNote(checkpointText({ origin, size, root, extensions }), [ed25519NoteSigner(origin, key.privateKey, key.publicJwk)]);
}

/** The map root a stored checkpoint states (null for none: a checkpoint of an older idns, or none at all); the note was checked when it was stored. */
export function checkpointMapRoot(note: string): Buffer | null {
  if (note === '') return null;
  return mapRootOf(parseCheckpoint(parseNote(note).text).extensions);
}

/**
 * Opens a zone's checkpoint: a signed note whose origin is the zone's and which one of `keys` (the keys
 * its zone record lists) signed. Throws verification_failed otherwise.
 */
export function openCheckpoint(zone: string, note: unknown, keys: readonly PublicJwk[]): Checkpoint & { note: string } {
  const origin = logOrigin(zone);
  const { note: opened } = openNote(
    note,
    keys.map((k) => ed25519NoteVerifier(origin, k)),
  );
  const checkpoint = parseCheckpoint(opened.text);
  if (checkpoint.origin !== origin) throw new IdnsError('verification_failed', `a checkpoint of ${checkpoint.origin}, not of ${origin}`);
  return { ...checkpoint, note: note as string };
}

/** The tree size a stored checkpoint states (0 for none); the note was checked when it was stored. */
export function checkpointSize(note: string): number {
  if (note === '') return 0;
  return Number(note.split('\n', 2)[1]);
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
