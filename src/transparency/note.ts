import { createHash, type KeyObject } from 'node:crypto';
import { IdnsError } from '../errors.js';
import { ed25519 } from '../records/ed25519.js';
import type { PublicJwk } from '../records/keys.js';

/**
 * Signed notes (C2SP signed-note): a text ending in a newline, a blank line, and signature lines
 * `— <key name> base64(key ID || signature)`. A zone's checkpoints are notes signed by the zone key,
 * and witnesses add their cosignatures as more signature lines (checkpoint.ts).
 */

/** Signature types (C2SP signed-note): an Ed25519 note signature, and a timestamped Ed25519 cosignature (c2sp.org/tlog-cosignature). */
export const NOTE_ED25519 = 0x01;
export const NOTE_COSIGNATURE_V1 = 0x04;

/** Largest note read from the network, and most signature lines in it (the spec asks at least 16 be accepted). */
export const MAX_NOTE_BYTES = 64 * 1024;
export const MAX_NOTE_SIGNATURES = 100;

const DASH = '\u2014 ';
// Controls other than the newline are not allowed anywhere in a note (C2SP signed-note, Format).
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f]/;
// With the u flag a surrogate pair is one code point: this matches only a half of one, which no UTF-8 text holds.
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** One signature line of a note: the key's name and ID, and the signature bytes after the ID. */
export interface NoteSignature {
  name: string;
  keyId: number;
  signature: Buffer;
}

/** A note as read: its text (with its final newline) and its signature lines, in order. */
export interface Note {
  text: string;
  signatures: NoteSignature[];
}

/** A key that signs notes: its name and ID, and how it signs a text. */
export interface NoteSigner {
  name: string;
  keyId: number;
  sign(text: string): Buffer;
}

/** A key that verifies notes: its name and ID, and whether a signature of a text is its own. */
export interface NoteVerifier {
  name: string;
  keyId: number;
  verify(text: string, signature: Buffer): boolean;
}

/** The key ID of C2SP signed-note: SHA-256(name || 0x0A || type || public key)[:4], big-endian. */
export function noteKeyId(name: string, type: number, publicKey: Buffer): number {
  return createHash('sha256')
    .update(name)
    .update(Buffer.from([0x0a, type]))
    .update(publicKey)
    .digest()
    .readUInt32BE(0);
}

/** Throws unless `name` is a key name: non-empty, no spaces (of any kind) and no '+'. */
export function assureKeyName(name: string): void {
  if (name.length === 0 || /[\s+]/u.test(name) || CONTROL.test(name)) {
    throw new IdnsError('invalid_request', `${JSON.stringify(name.slice(0, 100))} is not a note key name (non-empty, no spaces, no "+")`);
  }
}

/** An Ed25519 note signer (type 0x01) for `name`, with the private key and its public JWK. */
export function ed25519NoteSigner(name: string, privateKey: KeyObject, publicJwk: PublicJwk): NoteSigner {
  assureKeyName(name);
  return { name, keyId: noteKeyId(name, NOTE_ED25519, rawKey(publicJwk)), sign: (text) => ed25519.sign(Buffer.from(text), privateKey) };
}

/** An Ed25519 note verifier (type 0x01) for `name` and a public JWK. */
export function ed25519NoteVerifier(name: string, publicJwk: PublicJwk): NoteVerifier {
  assureKeyName(name);
  return {
    name,
    keyId: noteKeyId(name, NOTE_ED25519, rawKey(publicJwk)),
    verify: (text, signature) => signature.length === 64 && ed25519.verify(Buffer.from(text), signature, publicJwk),
  };
}

/** A note of `text` signed by each of `signers`, in order. */
export function signNote(text: string, signers: readonly NoteSigner[]): string {
  assureNoteText(text);
  return formatNote({ text, signatures: signers.map((s) => ({ name: s.name, keyId: s.keyId, signature: s.sign(text) })) });
}

/** A note's wire form: its text, a blank line, its signature lines. */
export function formatNote(note: Note): string {
  let out = `${note.text}\n`;
  for (const s of note.signatures) {
    const id = Buffer.alloc(4);
    id.writeUInt32BE(s.keyId);
    out += `${DASH}${s.name} ${Buffer.concat([id, s.signature]).toString('base64')}\n`;
  }
  return out;
}

/**
 * Reads a note (C2SP signed-note): within MAX_NOTE_BYTES and MAX_NOTE_SIGNATURES, no control characters
 * but newlines, a text ending in a newline, separated by the last blank line from at least one well-formed
 * signature line. Checks no signature. Throws verification_failed saying what is wrong.
 */
export function parseNote(input: unknown): Note {
  if (typeof input !== 'string') throw fail('a note is text');
  if (Buffer.byteLength(input) > MAX_NOTE_BYTES) throw fail(`a note of more than ${MAX_NOTE_BYTES} bytes`);
  if (CONTROL.test(input) || LONE_SURROGATE.test(input)) throw fail('a note holds a control character or is not valid UTF-8');
  const split = input.lastIndexOf('\n\n');
  if (split < 0) throw fail('a note has no blank line before its signatures');
  const text = input.slice(0, split + 1);
  const lines = input.slice(split + 2);
  if (!lines.endsWith('\n')) throw fail("a note's last signature line does not end in a newline");
  const signatures = lines
    .slice(0, -1)
    .split('\n')
    .map((line): NoteSignature => {
      if (!line.startsWith(DASH)) throw fail(`a note's signature line does not begin with "— ": ${JSON.stringify(line.slice(0, 80))}`);
      const rest = line.slice(DASH.length);
      const space = rest.lastIndexOf(' ');
      const name = rest.slice(0, Math.max(0, space));
      const b64 = rest.slice(space + 1);
      if (space <= 0 || /[\s+]/u.test(name) || !BASE64.test(b64)) throw fail(`a malformed note signature line: ${JSON.stringify(line.slice(0, 80))}`);
      const bytes = Buffer.from(b64, 'base64');
      if (bytes.length < 5) throw fail('a note signature of no bytes after its key ID');
      return { name, keyId: bytes.readUInt32BE(0), signature: bytes.subarray(4) };
    });
  if (signatures.length > MAX_NOTE_SIGNATURES) throw fail(`a note of more than ${MAX_NOTE_SIGNATURES} signatures`);
  return { text, signatures };
}

/**
 * Reads a note and checks it against the keys known here (C2SP signed-note, Signatures): lines of unknown
 * keys are ignored; a line of a known key (same name and ID) that does not verify rejects the note; at
 * least one must verify. Returns the note and the verifiers whose signatures verified, each once, with
 * their signature bytes. Throws verification_failed otherwise.
 */
export function openNote(input: unknown, verifiers: readonly NoteVerifier[]): { note: Note; verified: { verifier: NoteVerifier; signature: Buffer }[] } {
  const note = parseNote(input);
  const verified: { verifier: NoteVerifier; signature: Buffer }[] = [];
  for (const s of note.signatures) {
    const v = verifiers.find((k) => k.name === s.name && k.keyId === s.keyId);
    if (v === undefined || verified.some((x) => x.verifier === v)) continue;
    if (!v.verify(note.text, s.signature)) throw fail(`the note's signature by ${s.name} does not verify`);
    verified.push({ verifier: v, signature: s.signature });
  }
  if (verified.length === 0) throw fail('the note has no signature by a key known here');
  return { note, verified };
}

/** A verifier key's text (C2SP signed-note): `name+hex(key ID)+base64(type || public key)`. */
export function verifierKey(name: string, type: number, publicKey: Buffer): string {
  assureKeyName(name);
  return `${name}+${noteKeyId(name, type, publicKey).toString(16).padStart(8, '0')}+${Buffer.concat([Buffer.from([type]), publicKey]).toString('base64')}`;
}

/** Reads a verifier key: its name, key ID (checked against the key), type and public key bytes. Throws invalid_request. */
export function parseVerifierKey(vkey: string): { name: string; keyId: number; type: number; publicKey: Buffer } {
  // The base64 may itself hold '+': the name and the ID are the first two fields.
  const first = vkey.indexOf('+');
  const second = vkey.indexOf('+', first + 1);
  const name = vkey.slice(0, Math.max(0, first));
  const hex = vkey.slice(first + 1, second);
  const b64 = vkey.slice(second + 1);
  if (first <= 0 || second < 0 || !/^[0-9a-f]{8}$/.test(hex) || !BASE64.test(b64))
    throw new IdnsError('invalid_request', `${JSON.stringify(vkey.slice(0, 100))} is not a verifier key`);
  assureKeyName(name);
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length < 2) throw new IdnsError('invalid_request', 'a verifier key without its public key');
  const type = bytes[0]!;
  const publicKey = bytes.subarray(1);
  const keyId = Number.parseInt(hex, 16);
  if (noteKeyId(name, type, publicKey) !== keyId)
    throw new IdnsError('invalid_request', `the verifier key of ${name} names key ID ${hex}, which is not its key's`);
  return { name, keyId, type, publicKey };
}

/** Throws unless `text` may be a note's text: ending in a newline, no blank line at its end, no controls. */
function assureNoteText(text: string): void {
  if (!text.endsWith('\n') || text === '\n' || CONTROL.test(text) || text.includes('\n\u2014 ')) {
    throw new IdnsError('invalid_request', 'a note text ends in a newline, and holds no control characters and no signature line');
  }
}

/** The 32 bytes of an Ed25519 public JWK. */
export function rawKey(jwk: PublicJwk): Buffer {
  return Buffer.from(jwk.x, 'base64url');
}

function fail(why: string): IdnsError {
  return new IdnsError('verification_failed', why);
}
