import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AppContext } from '../context.js';
import { requestIdFor } from './observe.js';

/** A response produced by a fast path, with what the request log and the metrics say about it. */
export interface FastReply {
  /** The route pattern the full application would have matched, e.g. `/v1/lookup/:handle`. */
  route: string;
  status: number;
  /** A fresh object for this response: Content-Length and X-Request-Id are added to it. */
  headers: OutgoingHttpHeaders;
  /** The body, or its chunks, written in turn as one write to the socket. */
  body: string | Buffer | readonly (string | Buffer)[];
  role: string;
  /** With role `change`: the change's action (register, update, delete). */
  action?: string;
  zone?: string;
  outcome: string;
}

/**
 * Writes a fast path's response exactly as the full application's `observe` middleware would account
 * for it: the same X-Request-Id rule, the same request and query metrics, the same request log line.
 * `started` is `performance.now()` when the request reached the fast path.
 */
export function sendFast(ctx: AppContext, req: IncomingMessage, res: ServerResponse, started: number, reply: FastReply): void {
  const given = req.headers['x-request-id'];
  const id = requestIdFor(typeof given === 'string' ? given : undefined);
  // Completed in place rather than copied: this runs once per request of the busiest endpoints.
  const headers = reply.headers;
  headers['x-request-id'] = id;
  const body = reply.body;
  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    headers['content-length'] = typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    res.writeHead(reply.status, headers);
    res.end(body);
  } else {
    let length = 0;
    for (const chunk of body) length += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    headers['content-length'] = length;
    res.writeHead(reply.status, headers);
    // Corked, the headers and every chunk leave in one writev.
    res.cork();
    for (let i = 0; i < body.length - 1; i++) res.write(body[i]!);
    res.end(body[body.length - 1]);
    res.uncork();
  }
  const method = req.method ?? 'GET';
  const elapsed = performance.now() - started;
  ctx.metrics.request(reply.route, method, reply.status, elapsed / 1000);
  if (reply.role === 'change') ctx.metrics.changes.inc({ action: reply.action ?? 'unknown', outcome: reply.outcome });
  else ctx.metrics.queries.inc({ role: reply.role, outcome: reply.outcome });
  const ms = Math.round(elapsed * 100) / 100;
  const line = { reqId: id, method, route: reply.route, status: reply.status, ms, ...(reply.zone ? { zone: reply.zone } : {}), outcome: reply.outcome };
  if (reply.status >= 500) ctx.log.warn('request', line);
  else ctx.log.info('request', line);
}
