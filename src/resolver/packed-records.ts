import type { NumberedEntry } from '../records/history-chain.js';
import type { Proof, Resolution } from './proof.js';

/** A proof as a resolver's cache keeps it: its record and its history packed (RecordPacker). */
export type StoredProof = Omit<Proof, 'history'> & { history?: string };

/** A resolution as a resolver's cache keeps it, with its proof packed. */
export type StoredResolution = Omit<Resolution, 'proof'> & { proof: StoredProof };

/**
 * The compact form in which a resolver keeps the signed records of the answers it caches (bench target 8:
 * a cached handle's record and history entry were ~1,300 of its ~2,400 bytes).
 *
 * A compact JWS (`header.payload.signature`, base64url) is kept as one Latin-1 string: a marker, the index
 * of its protected header in a table of the headers seen (a zone signs every record with one header, so
 * the ~100 characters repeat in every record), the payload's length, then the payload's and the signature's
 * bytes (a quarter smaller than their base64url). Unpacking gives back the same characters: a record is
 * packed only when re-encoding its bytes gives its text exactly (base64url without padding, canonical),
 * else it is kept as it came. A handle's history (`[[seq, jws], …]`) is one string of its entries, each
 * packed: two arrays and a string an entry cost ~120 bytes more than the entry's own characters.
 *
 * Packed strings are the resolver's own: its cache and its history book hold them, and what it gives out
 * (results, proofs) is unpacked first.
 */
export class RecordPacker {
  private readonly headers: string[] = [];
  private readonly headerIndex = new Map<string, number>();
  private headerChars = 0;
  /** The packed history made of each entries array, so that the book and the cache, given one array, share one string. */
  private readonly histories = new WeakMap<readonly NumberedEntry[], string>();

  /** At most `maxHeaders` distinct headers are remembered (`maxHeaderChars` characters); a record with another is kept as it came. */
  constructor(
    private readonly maxHeaders = 4096,
    private readonly maxHeaderChars = 1 << 20,
  ) {}

  /** A compact JWS in packed form, or the JWS itself when it does not pack losslessly (a packed one is returned as it is). */
  pack(jws: string): string {
    if (jws.charCodeAt(0) === MARK) return jws;
    const a = jws.indexOf('.');
    const b = a < 0 ? -1 : jws.indexOf('.', a + 1);
    if (b < 0 || jws.indexOf('.', b + 1) >= 0) return jws;
    const payload = Buffer.from(jws.slice(a + 1, b), 'base64url');
    const signature = Buffer.from(jws.slice(b + 1), 'base64url');
    // Lossless only: base64url decoding skips what is not base64url and ignores stray bits.
    if (payload.length > MAX_PAYLOAD || !sameText(payload, jws, a + 1, b) || !sameText(signature, jws, b + 1, jws.length)) return jws;
    const index = this.headerOf(jws.slice(0, a));
    if (index < 0) return jws;
    const out = Buffer.allocUnsafe(HEAD + payload.length + signature.length);
    out[0] = MARK;
    out.writeUInt16BE(index, 1);
    out.writeUIntBE(payload.length, 3, 3);
    payload.copy(out, HEAD);
    signature.copy(out, HEAD + payload.length);
    return out.toString('latin1');
  }

  /** The compact JWS that `s` (packed or not) stands for. */
  unpack(s: string): string {
    if (s.charCodeAt(0) !== MARK) return s;
    // The bytes go through one scratch buffer: a buffer from Buffer's shared pool for each record would
    // interleave with the small buffers others keep (the wire's heads), and each pool block stays alive
    // as long as any of them does.
    if (scratch.length < s.length) scratch = Buffer.allocUnsafeSlow(Math.max(s.length, 2 * scratch.length));
    const end = scratch.write(s, 0, 'latin1');
    const length = scratch.readUIntBE(3, 3);
    return `${this.headers[scratch.readUInt16BE(1)]!}.${scratch.toString('base64url', HEAD, HEAD + length)}.${scratch.toString('base64url', HEAD + length, end)}`;
  }

  /** A handle's history entries as one packed string (the same string for the same array). */
  packHistory(entries: readonly NumberedEntry[]): string {
    let packed = this.histories.get(entries);
    if (packed === undefined) {
      const parts: string[] = [];
      for (const [seq, jws] of entries) {
        const p = this.pack(jws);
        parts.push(`${seq}:${p.length}:`, p);
      }
      // join gives one flat string: a concatenation would keep its pieces and a node per piece.
      packed = parts.join('');
      this.histories.set(entries, packed);
    }
    return packed;
  }

  /** The entries of a packed history, unpacked. */
  unpackHistory(packed: string): NumberedEntry[] {
    const entries: NumberedEntry[] = [];
    for (let at = 0; at < packed.length;) {
      const colon = packed.indexOf(':', at);
      const next = packed.indexOf(':', colon + 1);
      const start = next + 1;
      const end = start + Number(packed.slice(colon + 1, next));
      entries.push([Number(packed.slice(at, colon)), this.unpack(packed.slice(start, end))]);
      at = end;
    }
    return entries;
  }

  /** The stored form of a proof: its record and history packed (the history as the book packed the same array). */
  packProof(p: Proof): StoredProof {
    // Member by member (PROOF_MEMBERS lists them all): a spread gives the object room for more members, 8 bytes each.
    const stored: StoredProof =
      p.history === undefined
        ? { steps: p.steps, record: this.pack(p.record) }
        : { steps: p.steps, record: this.pack(p.record), history: this.packHistory(p.history) };
    if (p.noCut !== undefined) stored.noCut = p.noCut;
    if (p.anchor !== undefined) stored.anchor = p.anchor;
    if (p.entry !== undefined) stored.entry = p.entry;
    return stored;
  }

  /** The proof a stored one stands for, its record and history unpacked (a new object). */
  unpackProof(p: StoredProof): Proof {
    const proof: Proof =
      p.history === undefined
        ? { steps: p.steps, record: this.unpack(p.record) }
        : { steps: p.steps, record: this.unpack(p.record), history: this.unpackHistory(p.history) };
    if (p.noCut !== undefined) proof.noCut = p.noCut;
    if (p.anchor !== undefined) proof.anchor = p.anchor;
    if (p.entry !== undefined) proof.entry = p.entry;
    return proof;
  }

  private headerOf(header: string): number {
    const known = this.headerIndex.get(header);
    if (known !== undefined) return known;
    if (this.headers.length >= this.maxHeaders || this.headerChars + header.length > this.maxHeaderChars) return -1;
    // A copy of its own (the slice would keep the whole record it was cut from), and Latin-1 only.
    const own = Buffer.from(header, 'latin1').toString('latin1');
    if (own !== header) return -1;
    this.headers.push(own);
    this.headerIndex.set(own, this.headers.length - 1);
    this.headerChars += own.length;
    return this.headers.length - 1;
  }
}

/**
 * The packer of a process's resolvers and of the HTTP layer that writes their results: one table of
 * headers (bounded) for all.
 */
export const recordPacker = new RecordPacker();

/** Every member of a proof, so that a new one cannot be left out of packProof and unpackProof unnoticed (a compile error here). */
const PROOF_MEMBERS: Record<keyof Proof, true> = { steps: true, record: true, history: true, noCut: true, anchor: true, entry: true };
void PROOF_MEMBERS;

/** Where unpack reads a packed record's bytes (grown as needed; one thread uses it at a time). */
let scratch = Buffer.allocUnsafeSlow(4096);

/** First character of a packed record: a JWS starts with a base64url character, never a control character. */
const MARK = 1;
/** Marker, header index (2 bytes), payload length (3 bytes). */
const HEAD = 6;
const MAX_PAYLOAD = 2 ** 24 - 1;

/** Whether `bytes` encode, in base64url without padding, to exactly `text[from, to)`. */
function sameText(bytes: Buffer, text: string, from: number, to: number): boolean {
  const encoded = bytes.toString('base64url');
  return encoded.length === to - from && text.startsWith(encoded, from);
}
