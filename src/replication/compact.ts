import { isAscii } from 'node:buffer';
import { IdnsError } from '../errors.js';
import { MAX_JWS_LENGTH } from '../records/jws.js';
import type { LoadedRecord, StoredType } from '../store/records.js';

/** Longest key a transfer line may carry (a handle, a zone name or a hash: all far shorter). */
export const MAX_TRANSFER_KEY_LENGTH = 400;

/** What a compact transfer stream is made of, in stream order. */
export type CompactItem =
  | { kind: 'json'; value: unknown }
  | {
      kind: 'records';
      rows: LoadedRecord[];
      /**
       * The run's record lines with each line's two tabs turned into newlines, so that
       * `bytes[ranges[2i], ranges[2i+1])` is exactly the digest element of `rows[i]` (docs/protocol.md §5).
       * Its buffer is its own (it can be handed to another thread).
       */
      bytes: Uint8Array;
      ranges: Uint32Array;
    };

const TAB = 0x09;
const NL = 0x0a;
const BRACE = 0x7b;

/**
 * Splits a compact transfer stream (docs/protocol.md §11.1) into its JSON lines (the start and end lines)
 * and runs of record lines (`type TAB key TAB jws`), holding at most one partial line beyond the chunk
 * being read. A stream that is not ASCII, a malformed record line, or a line longer than `maxLineBytes`
 * ends it with a transfer_failed error.
 */
export async function* compactItems(body: AsyncIterable<Uint8Array>, maxLineBytes: number): AsyncGenerator<CompactItem> {
  let pending: Buffer | null = null;
  for await (const raw of body) {
    const chunk = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    if (!isAscii(chunk)) throw new IdnsError('transfer_failed', 'a compact transfer carries a byte that is not ASCII');
    let from = 0;
    if (pending !== null) {
      const nl = chunk.indexOf(NL);
      if (nl === -1) {
        pending = Buffer.concat([pending, chunk]);
        if (pending.length > maxLineBytes) throw new IdnsError('transfer_failed', `a transfer line is longer than ${maxLineBytes} bytes`);
        continue;
      }
      // The line that straddles two chunks is split on its own, from a small buffer.
      const line = Buffer.concat([pending, chunk.subarray(0, nl + 1)]);
      pending = null;
      yield* splitLines(line, 0, line.length, maxLineBytes);
      from = nl + 1;
    }
    const last = chunk.lastIndexOf(NL);
    if (last >= from) {
      yield* splitLines(chunk, from, last + 1, maxLineBytes);
      from = last + 1;
    }
    if (from < chunk.length) {
      pending = Buffer.from(chunk.subarray(from));
      if (pending.length > maxLineBytes) throw new IdnsError('transfer_failed', `a transfer line is longer than ${maxLineBytes} bytes`);
    }
  }
  if (pending !== null && pending.length > 0) throw new IdnsError('transfer_failed', 'the transfer stream ended in the middle of a line');
}

/** Splits `buf[start, end)`, whole lines each ending in a newline, into items. */
function* splitLines(buf: Buffer, start: number, end: number, maxLineBytes: number): Generator<CompactItem> {
  let rows: LoadedRecord[] = [];
  let ranges: number[] = [];
  let tabs: number[] = [];
  let runStart = -1;
  const flush = (runEnd: number): CompactItem => {
    const bytes = Uint8Array.prototype.slice.call(buf, runStart, runEnd);
    for (const t of tabs) bytes[t - runStart] = NL;
    const item: CompactItem = { kind: 'records', rows, bytes, ranges: Uint32Array.from(ranges, (r) => r - runStart) };
    rows = [];
    ranges = [];
    tabs = [];
    runStart = -1;
    return item;
  };
  let a = start;
  while (a < end) {
    const e = buf.indexOf(NL, a);
    if (e - a > maxLineBytes) throw new IdnsError('transfer_failed', `a transfer line is longer than ${maxLineBytes} bytes`);
    if (e === a) {
      a = e + 1;
      continue;
    }
    if (buf[a] === BRACE) {
      if (runStart !== -1) yield flush(a);
      yield { kind: 'json', value: parseJson(buf.toString('latin1', a, e)) };
      a = e + 1;
      continue;
    }
    const t1 = buf.indexOf(TAB, a);
    const t2 = t1 === -1 || t1 >= e ? -1 : buf.indexOf(TAB, t1 + 1);
    if (t2 === -1 || t2 >= e) throw new IdnsError('transfer_failed', 'a transfer line is not "type TAB key TAB record"');
    const t3 = buf.indexOf(TAB, t2 + 1);
    if (t3 !== -1 && t3 < e) throw new IdnsError('transfer_failed', 'a transfer line has more than three fields');
    const type = typeAt(buf, a, t1);
    if (type === null || t2 - t1 - 1 > MAX_TRANSFER_KEY_LENGTH) throw new IdnsError('transfer_failed', 'a transfer line has a bad type or key');
    if (e - t2 - 1 > MAX_JWS_LENGTH) throw new IdnsError('transfer_failed', 'a transfer line has a bad record');
    if (runStart === -1) runStart = a;
    rows.push({ type, key: buf.toString('latin1', t1 + 1, t2), jws: buf.toString('latin1', t2 + 1, e) });
    ranges.push(a, e);
    tabs.push(t1, t2);
    a = e + 1;
  }
  if (runStart !== -1) yield flush(end);
}

const TYPE_NAMES: readonly StoredType[] = ['handle', 'denial', 'delegation', 'op'];

/** The record type spelled by `buf[a, b)`, compared byte by byte (no string made for it). */
function typeAt(buf: Buffer, a: number, b: number): StoredType | null {
  next: for (const name of TYPE_NAMES) {
    if (name.length !== b - a) continue;
    for (let i = 0; i < name.length; i++) if (buf[a + i] !== name.charCodeAt(i)) continue next;
    return name;
  }
  return null;
}

function parseJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch (cause) {
    throw new IdnsError('transfer_failed', 'a transfer line is not valid JSON', { cause });
  }
}
