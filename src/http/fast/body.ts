import type { IncomingMessage } from 'node:http';
import { IdnsError } from '../../errors.js';

/** The body, exactly `length` bytes as its Content-Length says (node's parser ends it there). */
export function readBody(req: IncomingMessage, length: number): Promise<string> {
  // Events rather than the async iterator: this runs once per request, and the iterator's
  // promise per chunk showed in profiles.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    req.on('data', (chunk: Buffer) => {
      got += chunk.length;
      chunks.push(chunk);
    });
    let ended = false;
    req.once('end', () => {
      ended = true;
      if (got !== length) reject(new IdnsError('invalid_request', 'the request body ended before its Content-Length'));
      else resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks, got).toString('utf8'));
    });
    req.once('error', reject);
    req.once('close', () => {
      if (!ended) reject(new IdnsError('invalid_request', 'the client went away before the body ended'));
    });
  });
}
