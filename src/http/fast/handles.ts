import type { IncomingMessage } from 'node:http';
import type { AppContext } from '../../context.js';
import { IdnsError } from '../../errors.js';
import { parseJsonObject } from '../request.js';
import { changeRequestOf, registerReply } from '../routes/handles.js';
import type { FastEndpoint, FastReply, RequestHead } from './dispatch.js';

/**
 * Registration, `POST /v1/handles`, on the fast path: on a busy primary the general stack took as long
 * as the change itself (bench/analysis.md, target 4). The dispatcher has applied the body limit and the
 * client's write limit; this reads the body (its Content-Length: a chunked one goes to the application),
 * submits the change and answers by the route's rule (routes/handles.ts `registerReply`).
 */
export class HandlesEndpoint implements FastEndpoint {
  constructor(private readonly ctx: AppContext) {}

  /** The registration's reply, once the change is accepted; errors reject to the error mapping. */
  async answer(req: IncomingMessage, _param: string, head: RequestHead): Promise<FastReply> {
    const text = await readBody(req, Number(head.contentLength));
    const result = await this.ctx.changes.submit(changeRequestOf(parseJsonObject(text)), { expectAction: 'register' });
    const reply = registerReply(result);
    return {
      status: reply.status,
      headers: reply.headers,
      body: reply.body,
      tally: null,
      facts: { role: 'change', action: 'register', zone: result.zone, outcome: 'accepted' },
    };
  }
}

/** The body, exactly `length` bytes as its Content-Length says (node's parser ends it there). */
function readBody(req: IncomingMessage, length: number): Promise<string> {
  // Events rather than the async iterator: this runs once per registration, and the iterator's
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
