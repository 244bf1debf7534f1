import { maxHeaderSize, STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ServerConfig } from '../config.js';
import { IdnsError, type ErrorCode } from '../errors.js';
import { body, STATUS_OF } from './errors.js';

/**
 * Answers for what is refused before a request reaches the application: Node's HTTP parser errors and
 * timeouts (the server's 'clientError'), a request without Host, an Expect the server cannot meet,
 * CONNECT. Node would answer these itself with an empty body; here every one gets the JSON error body
 * like any other error, with `Connection: close` (the connection cannot be trusted to be in step).
 */

/** The error a 'clientError' of Node's HTTP layer stands for, or null for a transport error (reset, TLS). */
export function framingError(err: NodeJS.ErrnoException & { reason?: string }, limits: ServerConfig['limits']): IdnsError | null {
  const code = err.code ?? '';
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return timeoutError(limits);
  if (code === 'HPE_HEADER_OVERFLOW') return new IdnsError('headers_too_large', `the request headers are larger than ${maxHeaderSize} bytes`);
  if (code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') return new IdnsError('payload_too_large', 'the chunk extensions of the request body are too large');
  // Every other HPE_ code is a malformed request: bad method, URL, header, framing or chunk.
  if (code.startsWith('HPE_')) return new IdnsError('invalid_request', `malformed HTTP request: ${err.reason ?? code}`);
  return null;
}

/** The request was not received within the configured times. */
export function timeoutError(limits: ServerConfig['limits']): IdnsError {
  return new IdnsError(
    'request_timeout',
    `the request was not received in time (headers within ${limits.headersTimeoutMs} ms, the whole request within ${limits.requestTimeoutMs} ms)`,
  );
}

/** The bytes of a complete JSON error response that closes the connection. */
export function rawErrorResponse(err: IdnsError): string {
  const status = STATUS_OF[err.code];
  const json = JSON.stringify(body(err.code, err.message));
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\nConnection: close\r\n\r\n${json}`
  );
}

/**
 * Answers a connection Node's HTTP layer gave up on and closes it. The answer is written only where it
 * cannot corrupt what the client reads: the socket is writable and no response on it has begun (Node's
 * own rule for its default answer). When the error is in a later request pipelined behind one whose
 * answer is still being made, that answer goes first, so that each answer stays with its request.
 * Transport errors get no answer.
 */
export function answerClientError(err: IdnsError | null, socket: Socket): void {
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (err !== null && inFlight && !inFlight.headersSent && inFlight.req.complete && !socket.destroyed) {
    inFlight.once('finish', () => answerClientError(err, socket));
    inFlight.once('close', () => socket.destroy());
    return;
  }
  if (err !== null && socket.writable && !inFlight?.headersSent) socket.write(rawErrorResponse(err));
  socket.destroy();
}

/** Sends a JSON error on a request's response and closes the connection after it. */
export function refuse(res: ServerResponse, code: ErrorCode, message: string): void {
  const json = JSON.stringify(body(code, message));
  res.writeHead(STATUS_OF[code], { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json), connection: 'close' });
  res.end(json);
}

/** A Host value: a name or IPv4 address, or an IPv6 literal in brackets, and an optional port. */
const HOST = /^(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/;

/**
 * Why a request's Host is refused (400), or null when it is fine: an HTTP/1.1 request needs exactly
 * one (RFC 9112 §3.2), and one that is there must be a host. Checked before every path, the fast ones included,
 * so that no path answers a request the application would refuse.
 */
export function hostProblem(req: IncomingMessage): string | null {
  // Node keeps the first of several Host fields and drops the others; RFC 9112 §3.2 refuses the request.
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 4 && (name === 'Host' || name === 'host' || name.toLowerCase() === 'host')) hosts += 1;
  }
  if (hosts > 1) return 'a request may have only one Host header';
  const host = req.headers.host;
  if (host === undefined) return req.httpVersionMajor === 1 && req.httpVersionMinor === 1 ? 'an HTTP/1.1 request needs a Host header' : null;
  const m = HOST.exec(host);
  if (m === null || (m[1] !== undefined && Number(m[1]) > 65535)) return 'the Host header is not a host name or address with an optional port';
  return null;
}
