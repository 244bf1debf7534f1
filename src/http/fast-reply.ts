import { randomUUID } from 'node:crypto';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { AppContext } from '../context.js';
import { REQUEST_ID } from './observe.js';

/** A response produced by a fast path, with what the request log and the metrics say about it. */
export interface FastReply {
  /** The route pattern the full application would have matched, e.g. `/v1/lookup/:handle`. */
  route: string;
  status: number;
  headers: OutgoingHttpHeaders;
  body: string | Buffer;
  role: string;
  zone: string;
  outcome: string;
}

/**
 * Writes a fast path's response exactly as the full application's `observe` middleware would account
 * for it: the same X-Request-Id rule, the same request and query metrics, the same request log line.
 * `started` is `performance.now()` when the request reached the fast path.
 */
export function sendFast(ctx: AppContext, req: IncomingMessage, res: ServerResponse, started: number, reply: FastReply): void {
  const given = req.headers['x-request-id'];
  const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
  res.writeHead(reply.status, {
    ...reply.headers,
    'content-length': typeof reply.body === 'string' ? Buffer.byteLength(reply.body) : reply.body.length,
    'x-request-id': id,
  });
  res.end(reply.body);
  const method = req.method ?? 'GET';
  ctx.metrics.requests.inc({ route: reply.route, method, status: String(reply.status) });
  ctx.metrics.queries.inc({ role: reply.role, outcome: reply.outcome });
  const ms = Math.round((performance.now() - started) * 100) / 100;
  const line = { reqId: id, method, route: reply.route, status: reply.status, ms, zone: reply.zone, outcome: reply.outcome };
  if (reply.status >= 500) ctx.log.warn('request', line);
  else ctx.log.info('request', line);
}
