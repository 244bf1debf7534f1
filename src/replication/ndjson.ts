import { TextDecoder } from 'node:util';
import { IdnsError } from '../errors.js';

/**
 * Splits a byte stream into JSON lines, holding at most one partial line in memory; a line longer than
 * `maxLineBytes` (a peer trying to make us buffer without bound) ends the stream with an error.
 */
export async function* ndjsonLines(body: AsyncIterable<Uint8Array>, maxLineBytes: number): AsyncGenerator<unknown> {
  for await (const batch of ndjsonBatches(body, maxLineBytes)) yield* batch;
}

/**
 * Like ndjsonLines, but yields the lines of each chunk of the stream together (one await per chunk, not
 * per line: a transfer carries millions of lines).
 */
export async function* ndjsonBatches(body: AsyncIterable<Uint8Array>, maxLineBytes: number): AsyncGenerator<unknown[]> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pending = '';
  for await (const chunk of body) {
    const text = pending + decode(decoder, chunk, true);
    const batch: unknown[] = [];
    let from = 0;
    let nl: number;
    // Walk the chunk by index: re-slicing the remainder after every line would be quadratic in the chunk.
    while ((nl = text.indexOf('\n', from)) !== -1) {
      const line = text.slice(from, nl);
      from = nl + 1;
      if (line.trim() === '') continue;
      let value: unknown;
      try {
        value = parseLine(line);
      } catch (err) {
        // The lines before a bad one still count (a reader may be done before it, at the end line).
        if (batch.length > 0) yield batch;
        throw err;
      }
      batch.push(value);
    }
    pending = text.slice(from);
    if (batch.length > 0) yield batch;
    if (pending.length > maxLineBytes) throw new IdnsError('transfer_failed', `a transfer line is longer than ${maxLineBytes} bytes`);
  }
  pending += decode(decoder, undefined, false);
  if (pending.trim() !== '') throw new IdnsError('transfer_failed', 'the transfer stream ended in the middle of a line');
}

function parseLine(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch (cause) {
    throw new IdnsError('transfer_failed', 'a transfer line is not valid JSON', { cause });
  }
}

function decode(decoder: TextDecoder, chunk: Uint8Array | undefined, stream: boolean): string {
  try {
    return decoder.decode(chunk, { stream });
  } catch (cause) {
    throw new IdnsError('transfer_failed', 'the transfer stream is not valid UTF-8', { cause });
  }
}
