import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { b64u } from './encoding.js';

/**
 * The zone digest: an LtHash (Bellare–Micciancio multiset hash, as used by Facebook's LtHash16) over
 * every record in the zone except the zone record itself, each taken as `type "\n" key "\n" jws` so the
 * digest also fixes which key each record is stored under (a transfer cannot swap them). Each record maps to 1024 16-bit
 * lanes (SHAKE128, 2048 bytes); the zone's state is the lane-wise sum mod 2^16. Adding or removing a record
 * is one hash and 1024 additions, so the primary keeps the digest current in O(1) per change, and a
 * secondary recomputes it over a transfer at hashing speed.
 */
export const DIGEST_LANES = 1024;
export const DIGEST_STATE_BYTES = DIGEST_LANES * 2;

/** The running multiset hash of a zone. */
export class ZoneDigest {
  private readonly lanes: Uint16Array;

  private constructor(lanes: Uint16Array) {
    this.lanes = lanes;
  }

  /** The digest of an empty zone. */
  static empty(): ZoneDigest {
    return new ZoneDigest(new Uint16Array(DIGEST_LANES));
  }

  /** Restores a digest from its stored state. */
  static fromState(state: Uint8Array): ZoneDigest {
    if (state.byteLength !== DIGEST_STATE_BYTES) throw new Error(`digest state must be ${DIGEST_STATE_BYTES} bytes`);
    const lanes = new Uint16Array(DIGEST_LANES);
    const view = new DataView(state.buffer, state.byteOffset, state.byteLength);
    for (let i = 0; i < DIGEST_LANES; i++) lanes[i] = view.getUint16(i * 2, true);
    return new ZoneDigest(lanes);
  }

  /** Adds one record, stored under (type, key), to the multiset. */
  add(type: string, key: string, jws: string): void {
    const h = elementLanes(type, key, jws);
    for (let i = 0; i < DIGEST_LANES; i++) this.lanes[i] = (this.lanes[i]! + h[i]!) & 0xffff;
  }

  /** Removes one record (exactly as it was added) from the multiset. */
  remove(type: string, key: string, jws: string): void {
    const h = elementLanes(type, key, jws);
    for (let i = 0; i < DIGEST_LANES; i++) this.lanes[i] = (this.lanes[i]! - h[i]!) & 0xffff;
  }

  /** Adds every record of another digest (the two multisets' union): records hashed elsewhere, in bulk. */
  merge(other: ZoneDigest): void {
    for (let i = 0; i < DIGEST_LANES; i++) this.lanes[i] = (this.lanes[i]! + other.lanes[i]!) & 0xffff;
  }

  /** The state to store, little-endian lanes. */
  state(): Buffer {
    const out = Buffer.alloc(DIGEST_STATE_BYTES);
    for (let i = 0; i < DIGEST_LANES; i++) out.writeUInt16LE(this.lanes[i]!, i * 2);
    return out;
  }

  /** The value published in the zone record: base64url(SHA-256(state)). */
  value(): string {
    return b64u(createHash('sha256').update(this.state()).digest());
  }

  /** An independent copy. */
  clone(): ZoneDigest {
    return new ZoneDigest(new Uint16Array(this.lanes));
  }
}

const LITTLE_ENDIAN = endianness() === 'LE';

function elementLanes(type: string, key: string, jws: string): Uint16Array {
  const bytes = createHash('shake128', { outputLength: DIGEST_STATE_BYTES }).update(`${type}\n${key}\n${jws}`).digest();
  // On a little-endian machine (every one idns runs on in practice) the bytes already are the lanes.
  if (LITTLE_ENDIAN && bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, DIGEST_LANES);
  const lanes = new Uint16Array(DIGEST_LANES);
  for (let i = 0; i < DIGEST_LANES; i++) lanes[i] = bytes.readUInt16LE(i * 2);
  return lanes;
}
