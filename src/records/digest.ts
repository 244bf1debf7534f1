import { createCipheriv, createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { endianness } from 'node:os';
import { b64u } from './encoding.js';

/**
 * The zone digest: an LtHash (Bellare–Micciancio multiset hash, as used by Facebook's LtHash16) over
 * every record in the zone except the zone record itself, each taken as `type "\n" key "\n" jws` so the
 * digest also fixes which key each record is stored under (a transfer cannot swap them). Each record maps to 1024 16-bit
 * lanes (2048 bytes: the ChaCha20 key stream under the SHA-256 of the element, docs/protocol.md §5); the
 * zone's state is the lane-wise sum mod 2^16. Adding or removing a record is one hash and 1024 additions,
 * so the primary keeps the digest current in O(1) per change, and a secondary recomputes it over a
 * transfer at hashing speed.
 */
export const DIGEST_LANES = 1024;
export const DIGEST_STATE_BYTES = DIGEST_LANES * 2;

/** The running multiset hash of a zone. */
export class ZoneDigest {
  /** The lanes, as native 16-bit integers. */
  private readonly lanes: Uint16Array;
  /** The same memory, two lanes per 32-bit word, for adding two lanes at a time. */
  private readonly words: Uint32Array;

  private constructor(lanes: Uint16Array) {
    this.lanes = lanes;
    this.words = new Uint32Array(lanes.buffer, lanes.byteOffset, DIGEST_LANES / 2);
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
    this.addOutput(elementOutput(digestElement(type, key, jws)), 1);
  }

  /** Adds one record given as its digest element (`digestElement`, or its UTF-8 bytes). */
  addElement(element: string | Uint8Array): void {
    this.addOutput(elementOutput(element), 1);
  }

  /** Removes one record (exactly as it was added) from the multiset. */
  remove(type: string, key: string, jws: string): void {
    this.addOutput(elementOutput(digestElement(type, key, jws)), -1);
  }

  /** Adds another multiset (given as its stored state) to this one: the digest of the union. */
  merge(state: Uint8Array): void {
    const other = ZoneDigest.fromState(state).lanes;
    const lanes = this.lanes;
    for (let i = 0; i < DIGEST_LANES; i++) lanes[i] = lanes[i]! + other[i]!;
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

  /** Adds (sign 1) or subtracts (sign -1) one element's expansion, 1024 little-endian lanes. */
  private addOutput(bytes: Buffer, sign: 1 | -1): void {
    if (LITTLE_ENDIAN) {
      // The output bytes already are the lanes. Two lanes per 32-bit word: the high lanes are added
      // (or subtracted) with the low halves masked off, the low lanes on their own, each modulo 2^16.
      // This is several times faster than lane by lane on a Uint16Array.
      const h = alignedWords(bytes);
      const w = this.words;
      if (sign === 1) {
        for (let i = 0; i < DIGEST_LANES / 2; i++) {
          const a = w[i]!;
          const x = h[i]!;
          w[i] = ((a & 0xffff0000) + (x & 0xffff0000)) | ((a + x) & 0xffff);
        }
      } else {
        for (let i = 0; i < DIGEST_LANES / 2; i++) {
          const a = w[i]!;
          const x = h[i]!;
          w[i] = ((a & 0xffff0000) - (x & 0xffff0000)) | ((a - x) & 0xffff);
        }
      }
      return;
    }
    const lanes = this.lanes;
    for (let i = 0; i < DIGEST_LANES; i++) lanes[i] = lanes[i]! + sign * bytes.readUInt16LE(i * 2);
  }
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** The bytes (as a string, hashed as UTF-8) that stand for one record in the digest. */
export function digestElement(type: string, key: string, jws: string): string {
  return `${type}\n${key}\n${jws}`;
}

/** The part of sodium-native the expansion uses (the package ships no types). */
interface ChaChaBinding {
  crypto_stream_chacha20_ietf(out: Buffer, nonce: Buffer, key: Buffer): void;
}

/** libsodium's ChaCha20 when its binding loads (≈0.9 µs for 2 KiB, written in place), else node:crypto's (same bytes). */
const sodium = loadSodium();
const ZERO_NONCE = Buffer.alloc(12);
/** node:crypto's ChaCha20 IV: the 32-bit block counter (little-endian) and the 96-bit nonce, all zero as RFC 8439's stream starts. */
const ZERO_IV = Buffer.alloc(16);
const ZEROS = Buffer.alloc(DIGEST_STATE_BYTES);
/** One expansion at a time, reused: it is added to the lanes before the next is made. */
const expansion = Buffer.alloc(DIGEST_STATE_BYTES);

/**
 * An element's 2048 bytes: the ChaCha20 key stream (RFC 8439, nonce and counter zero) under the key
 * SHA-256(element). A third of the cost of SHAKE128's 2048 bytes, the expansion before (docs/protocol.md
 * §5): the digest is computed for every record a transfer brings and every record a change writes.
 */
function elementOutput(element: string | Uint8Array): Buffer {
  const key = createHash('sha256').update(element).digest();
  if (sodium === null) return createCipheriv('chacha20', key, ZERO_IV).update(ZEROS);
  sodium.crypto_stream_chacha20_ietf(expansion, ZERO_NONCE, key);
  return expansion;
}

function loadSodium(): ChaChaBinding | null {
  try {
    // createRequire: sodium-native is a CommonJS addon, and a failed load must leave node:crypto in place.
    return createRequire(import.meta.url)('sodium-native') as ChaChaBinding;
  } catch {
    // node:crypto gives the same bytes, a little slower. The binding's failure to load is reported once,
    // by the server's Ed25519 installer (ed25519-sodium.ts), which loads the same package.
    return null;
  }
}

const scratch = new Uint32Array(DIGEST_LANES / 2);

/** The hash output as 32-bit words, viewed in place when aligned, else copied. */
function alignedWords(bytes: Buffer): Uint32Array {
  if (bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, DIGEST_LANES / 2);
  new Uint8Array(scratch.buffer).set(bytes.subarray(0, DIGEST_STATE_BYTES));
  return scratch;
}
