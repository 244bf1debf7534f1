import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { COMPACT_JWS_TEXT, fnv1a } from '../records/encoding.js';

/**
 * What an answer file holds: the signed handle records of one zone's content at one version. The file
 * is derived data, rebuilt from the database whenever it cannot be trusted to match it.
 */
export interface AnswerFileMeta {
  zone: string;
  /** The zone row's content id and creation time: a different copy, or a zone deleted and made again, is a different zone. */
  content: string;
  createdAt: number;
  /** The zone version the records were read at, and the signed zone record of that version. */
  version: number;
  zoneRecord: string;
  entries: number;
}

// Layout (little-endian):
//   magic "IDNSANS4" | u32 meta length | u32 slot count | meta (JSON, UTF-8, padded to 8 bytes)
//   slots: slot count × 8 bytes: u32 hash, u32 entry reference (offset in the entries / 8, plus 1; 0 = empty)
//   entries, each starting at a multiple of 8: u32 length, u16 key length, u32 TTL, u32 signature
//   expiry, u32 record length, f64 leaf (−1: none), key, signed record, history evidence (JSON text;
//   all three ASCII)
//   trailer "IDNSEND1"
// A file whose size or trailer does not match is refused: it was cut short.
// 4: the evidence is numbered entries (`[[seq,"jws"],…]`); 5: the leaf. A file of an earlier form is refused and built again.
const MAGIC = Buffer.from('IDNSANS5');
const TRAILER = Buffer.from('IDNSEND1');
const FIXED = 16;
const SLOT = 8;
/**
 * Slot tables up to this size (8M slots: zones of up to 4M handles) are read into memory when the file
 * is opened, so that a lookup is one pread instead of two; larger ones are read a few slots at a time.
 */
export const SLOTS_IN_MEMORY_BYTES = 64 * 1024 * 1024;
/** Slots read per pread: with at most half the slots used, a probe rarely needs a second read. */
const SLOTS_PER_READ = 8;
/** Bytes read for an entry before its length is known: a handle's record and its evidence are ~1,500 bytes; longer ones take a second read. */
const READ_AHEAD = 2048;
const WRITE_BUFFER = 1 << 20;
const MAX_KEY = 0xffff;
/** Longest entry: records are bounded far below this by the zone's limits; larger ones are left to the database. */
const MAX_ENTRY = WRITE_BUFFER;
/** The entries' end a 32-bit reference in units of 8 bytes can reach. */
const MAX_DATA = (2 ** 32 - 2) * 8;
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const ENTRY_HEAD = 26;

/** A handle's record as an answer file holds it: the compact JWS, the TTL and expiry its payload gives, and its answer's evidence. */
export interface FileRecord {
  jws: string;
  ttl: number;
  exp: number;
  /** The history entries its answer carries (AuthoritativeAnswer.history), as JSON text. */
  history: string;
  /** The leaf of the last of those entries in the zone's log (docs/protocol.md §13), or null when the zone had no log. */
  leaf: number | null;
}

/**
 * A record where the file's read buffer holds it: `bytes[jwsStart, jwsEnd)` its compact JWS and
 * `bytes[jwsEnd, end)` its history's JSON text (FileRecord's, as bytes). Valid until the file's next
 * read: an answer is spliced from it at once, with no string made of the record (bench target 1: the
 * strings were most of a read's garbage, and each scavenge holds every request in flight).
 */
export interface FileRecordSpan {
  bytes: Buffer;
  jwsStart: number;
  jwsEnd: number;
  end: number;
  ttl: number;
  exp: number;
  leaf: number | null;
}

/** The error for a file that is not a complete answer file. */
export class AnswerFileInvalid extends Error {}

/** The hash that places a key in the slot table (keys are ASCII, so FNV-1a over code units is over bytes). */
export const keyHash = fnv1a;

/** Slots for `n` entries: a power of two, at least twice as many. */
function slotCountFor(n: number): number {
  let slots = 16;
  while (slots < n * 2) slots *= 2;
  return slots;
}

/**
 * Writes an answer file: the records to `path`.tmp, synced, then renamed over `path`, so that `path` is
 * always either absent or complete. `count` bounds how many records `records` yields (it sizes the
 * table). Records the file cannot hold as they are (a key that is not printable ASCII, a JWS that is not
 * compact, times that are not 32-bit integers) are left out: the database answers for them. Returns how
 * many went in.
 */
export function writeAnswerFile(path: string, meta: Omit<AnswerFileMeta, 'entries'>, count: number, records: Iterable<FileRecord & { key: string }>): number {
  const slotCount = slotCountFor(count);
  const slots = Buffer.alloc(slotCount * SLOT);
  const view = new Uint32Array(slots.buffer, slots.byteOffset, slotCount * 2);
  const mask = slotCount - 1;
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    // The data goes after a space left for the header and slots, which are written last (their size
    // depends on the meta, which holds the entry count: reserve room for the largest count).
    const metaRoom = Buffer.byteLength(JSON.stringify({ ...meta, entries: count })) + 8;
    const dataAt = FIXED + pad8(metaRoom) + slots.length;
    const staging = Buffer.alloc(WRITE_BUFFER);
    let staged = 0;
    let written = 0;
    let entries = 0;
    for (const { key, jws, ttl, exp, history, leaf } of records) {
      const len = ENTRY_HEAD + key.length + jws.length + history.length;
      if (
        key.length > MAX_KEY ||
        len > MAX_ENTRY ||
        !PRINTABLE_ASCII.test(key) ||
        !COMPACT_JWS_TEXT.test(jws) ||
        !PRINTABLE_ASCII.test(history) ||
        !isU32(ttl) ||
        !isU32(exp) ||
        !(leaf === null || (Number.isSafeInteger(leaf) && leaf >= 0))
      ) {
        continue;
      }
      if (entries >= count) throw new Error(`answer file ${path}: more records than the ${count} counted`);
      if (staged + len > WRITE_BUFFER) {
        writeSync(fd, staging, 0, staged, dataAt + written);
        written += staged;
        staged = 0;
      }
      const offset = written + staged;
      if (offset + len > MAX_DATA) throw new Error(`answer file ${path}: more than ${MAX_DATA} bytes of records`);
      const h = keyHash(key);
      let i = h & mask;
      while (view[i * 2 + 1] !== 0) i = (i + 1) & mask;
      view[i * 2] = h;
      view[i * 2 + 1] = offset / 8 + 1;
      staged = pad8(putEntry(staging, staged, len, key, jws, history, ttl, exp, leaf));
      entries += 1;
    }
    writeSync(fd, staging, 0, staged, dataAt + written);
    written += staged;
    writeSync(fd, TRAILER, 0, TRAILER.length, dataAt + written);
    const metaBytes = Buffer.alloc(pad8(metaRoom), 0x20);
    metaBytes.write(JSON.stringify({ ...meta, entries }));
    const head = Buffer.alloc(FIXED);
    MAGIC.copy(head, 0);
    head.writeUInt32LE(metaBytes.length, 8);
    head.writeUInt32LE(slotCount, 12);
    writeSync(fd, Buffer.concat([head, metaBytes, slots]), 0, dataAt, 0);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
    return entries;
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
}

function putEntry(buf: Buffer, at: number, len: number, key: string, jws: string, history: string, ttl: number, exp: number, leaf: number | null): number {
  buf.writeUInt32LE(len, at);
  buf.writeUInt16LE(key.length, at + 4);
  buf.writeUInt32LE(ttl, at + 6);
  buf.writeUInt32LE(exp, at + 10);
  buf.writeUInt32LE(jws.length, at + 14);
  buf.writeDoubleLE(leaf ?? -1, at + 18);
  let to = at + ENTRY_HEAD;
  to += buf.write(key, to, 'latin1');
  to += buf.write(jws, to, 'latin1');
  return to + buf.write(history, to, 'latin1');
}

function leafOf(stored: number): number | null {
  if (stored === -1) return null;
  if (!(Number.isSafeInteger(stored) && stored >= 0)) throw new AnswerFileInvalid('an answer file entry with a damaged leaf');
  return stored;
}

function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n < 2 ** 32;
}

function pad8(n: number): number {
  return (n + 7) & ~7;
}

/**
 * A read-only answer file: a handle's signed record in one pread of its entry, the slot table held in
 * memory (two preads, its slots then its entry, for a table larger than SLOTS_IN_MEMORY_BYTES). Reads
 * are synchronous, as SQLite's are: they come from the page cache.
 */
export class AnswerFile {
  private readonly slotBuf = Buffer.alloc(SLOT * SLOTS_PER_READ);
  private readonly slotView = new Uint32Array(this.slotBuf.buffer, this.slotBuf.byteOffset, SLOTS_PER_READ * 2);
  private entryBuf = Buffer.allocUnsafe(READ_AHEAD);
  private fd: number | null;

  private constructor(
    fd: number,
    readonly path: string,
    readonly meta: AnswerFileMeta,
    private readonly slotCount: number,
    private readonly slotsAt: number,
    private readonly dataAt: number,
    /** The slot table, when it is held in memory. */
    private readonly table: Uint32Array | null,
  ) {
    this.fd = fd;
  }

  /**
   * Opens and checks a file, reading its slot table into memory when that is at most `slotsInMemoryBytes`;
   * throws AnswerFileInvalid when it is not a complete answer file.
   */
  static open(path: string, slotsInMemoryBytes = SLOTS_IN_MEMORY_BYTES): AnswerFile {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      const head = Buffer.alloc(FIXED);
      if (size < FIXED + TRAILER.length || readSync(fd, head, 0, FIXED, 0) !== FIXED || !head.subarray(0, 8).equals(MAGIC)) {
        throw new AnswerFileInvalid(`${path} is not an answer file`);
      }
      const metaLen = head.readUInt32LE(8);
      const slotCount = head.readUInt32LE(12);
      if (metaLen > 64 * 1024 || slotCount < 16 || (slotCount & (slotCount - 1)) !== 0 || FIXED + metaLen + slotCount * SLOT > size) {
        throw new AnswerFileInvalid(`${path} has a damaged header`);
      }
      const metaBytes = Buffer.alloc(metaLen);
      readSync(fd, metaBytes, 0, metaLen, FIXED);
      let meta: AnswerFileMeta;
      try {
        meta = JSON.parse(metaBytes.toString('utf8')) as AnswerFileMeta;
      } catch (cause) {
        throw new AnswerFileInvalid(`${path} has a damaged header`, { cause });
      }
      if (
        typeof meta.zone !== 'string' ||
        typeof meta.content !== 'string' ||
        typeof meta.zoneRecord !== 'string' ||
        !Number.isSafeInteger(meta.version) ||
        !Number.isSafeInteger(meta.entries) ||
        typeof meta.createdAt !== 'number'
      ) {
        throw new AnswerFileInvalid(`${path} has a damaged header`);
      }
      const tail = Buffer.alloc(TRAILER.length);
      readSync(fd, tail, 0, TRAILER.length, size - TRAILER.length);
      if (!tail.equals(TRAILER)) throw new AnswerFileInvalid(`${path} was cut short`);
      const slotsAt = FIXED + metaLen;
      let table: Uint32Array | null = null;
      if (slotCount * SLOT <= slotsInMemoryBytes) {
        // Its own allocation, not a slice of the shared pool; read whole (readSync may return less).
        const bytes = Buffer.allocUnsafeSlow(slotCount * SLOT);
        for (let at = 0; at < bytes.length;) {
          const n = readSync(fd, bytes, at, bytes.length - at, slotsAt + at);
          if (n === 0) throw new AnswerFileInvalid(`${path} was cut short`);
          at += n;
        }
        table = new Uint32Array(bytes.buffer, bytes.byteOffset, slotCount * 2);
      }
      return new AnswerFile(fd, path, meta, slotCount, slotsAt, slotsAt + slotCount * SLOT, table);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  /** The record stored for `key`, or undefined when the file has none. */
  get(key: string): FileRecord | undefined {
    const s = this.span(key);
    if (s === undefined) return undefined;
    return {
      jws: s.bytes.toString('latin1', s.jwsStart, s.jwsEnd),
      ttl: s.ttl,
      exp: s.exp,
      history: s.bytes.toString('latin1', s.jwsEnd, s.end),
      leaf: s.leaf,
    };
  }

  /** Where the record stored for `key` lies in the read buffer (valid until the next read), or undefined when the file has none. */
  span(key: string): FileRecordSpan | undefined {
    const fd = this.fd;
    if (fd === null) throw new Error(`answer file ${this.path} is closed`);
    const h = keyHash(key);
    const mask = this.slotCount - 1;
    let i = h & mask;
    const table = this.table;
    if (table !== null) {
      for (let probed = 0; probed < this.slotCount; probed++, i = (i + 1) & mask) {
        const ref = table[i * 2 + 1]!;
        if (ref === 0) return undefined;
        if (table[i * 2] !== h) continue;
        const found = this.entry(fd, (ref - 1) * 8, key);
        if (found !== undefined) return found;
      }
      return undefined;
    }
    const view = this.slotView;
    for (let probed = 0; probed < this.slotCount;) {
      const n = Math.min(SLOTS_PER_READ, this.slotCount - i);
      readSync(fd, this.slotBuf, 0, n * SLOT, this.slotsAt + i * SLOT);
      for (let j = 0; j < n; j++, probed++) {
        const ref = view[j * 2 + 1]!;
        if (ref === 0) return undefined;
        if (view[j * 2] !== h) continue;
        const found = this.entry(fd, (ref - 1) * 8, key);
        if (found !== undefined) return found;
      }
      i = (i + n) & mask;
    }
    return undefined;
  }

  /** The entry at `offset` when it is `key`'s: one read of READ_AHEAD bytes, a second for a longer entry. */
  private entry(fd: number, offset: number, key: string): FileRecordSpan | undefined {
    let buf = this.entryBuf;
    const got = readSync(fd, buf, 0, READ_AHEAD, this.dataAt + offset);
    const len = got >= ENTRY_HEAD ? buf.readUInt32LE(0) : 0;
    if (len < ENTRY_HEAD || len > MAX_ENTRY) throw new AnswerFileInvalid(`${this.path} was cut short or is damaged`);
    if (len > got) {
      if (len > buf.length) buf = this.entryBuf = Buffer.allocUnsafe(len);
      if (readSync(fd, buf, 0, len, this.dataAt + offset) !== len) throw new AnswerFileInvalid(`${this.path} was cut short`);
    }
    const keyLen = buf.readUInt16LE(4);
    if (keyLen !== key.length) return undefined;
    // Keys are printable ASCII (writeAnswerFile): compared byte by byte, with no string made.
    for (let i = 0; i < keyLen; i++) if (buf[ENTRY_HEAD + i] !== key.charCodeAt(i)) return undefined;
    const jwsEnd = ENTRY_HEAD + keyLen + buf.readUInt32LE(14);
    if (jwsEnd > len) throw new AnswerFileInvalid(`${this.path} is damaged`);
    return {
      bytes: buf,
      jwsStart: ENTRY_HEAD + keyLen,
      jwsEnd,
      end: len,
      ttl: buf.readUInt32LE(6),
      exp: buf.readUInt32LE(10),
      leaf: leafOf(buf.readDoubleLE(18)),
    };
  }

  /** Closes the file (idempotent). */
  close(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
  }
}
