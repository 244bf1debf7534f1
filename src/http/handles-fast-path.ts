import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppContext } from '../context.js';
import { IdnsError } from '../errors.js';
import { errorReply, tooLargeMessage } from './errors.js';
import { sendFast } from './fast-reply.js';
import { clientKeyOf } from './rate-limits.js';
import { parseJsonObject } from './request.js';
import { changeRequestOf } from './routes/handles.js';

const ROUTE = '/v1/handles';

/**
 * Registration, `POST /v1/handles`, without the general HTTP stack: on a busy primary the stack took as
 * long as the change itself (bench/analysis.md, target 4). It applies what the application applies to
 * this endpoint — the per-client write limit, the body limit, the body's form, the error mapping, the
 * request log and metrics — by the same functions; a body without a Content-Length (chunked) goes to
 * the full application, which stays the definition of the endpoint.
 */
export class HandlesFastPath {
  constructor(private readonly ctx: AppContext) {}

  /** Takes the request and returns true, or returns false to leave it to the full application. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    if (req.method !== 'POST' || req.url !== ROUTE) return false;
    const length = req.headers['content-length'];
    if (length === undefined || req.headers['transfer-encoding'] !== undefined || !/^\d{1,12}$/.test(length)) return false;
    void this.serve(req, res, Number(length), performance.now());
    return true;
  }

  private async serve(req: IncomingMessage, res: ServerResponse, length: number, started: number): Promise<void> {
    const ctx = this.ctx;
    try {
      // In the application's order: the body limit, then the client's write limit.
      if (length > ctx.config.limits.bodyBytes) throw new IdnsError('payload_too_large', tooLargeMessage(ctx.config.limits.bodyBytes));
      const limits = ctx.rateLimits;
      if (limits.config.enabled) limits.writes.take(clientKeyOf(req.socket.remoteAddress ?? ''), 1);
      const text = await readBody(req, length);
      const result = await ctx.changes.submit(changeRequestOf(parseJsonObject(text)), { expectAction: 'register' });
      sendFast(ctx, req, res, started, {
        route: ROUTE,
        status: 201,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(result),
        role: 'change',
        action: 'register',
        zone: result.zone,
        outcome: 'accepted',
      });
    } catch (err) {
      const reply = errorReply(err, ROUTE, 'POST', ctx.log);
      if (!req.complete) res.setHeader('connection', 'close'); // the body was not read: do not reuse the connection
      sendFast(ctx, req, res, started, {
        route: ROUTE,
        status: reply.status,
        headers: { 'content-type': 'application/json', ...reply.headers },
        body: JSON.stringify(reply.body),
        role: 'change',
        action: 'register',
        outcome: reply.body.error.code,
      });
    }
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
