import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ErrorCode } from '../errors.js';
import { IdnsError } from '../errors.js';
import type { Logger } from '../log.js';
import { note } from './observe.js';

/** The one place error codes become HTTP statuses. */
export const STATUS_OF: Record<ErrorCode, ContentfulStatusCode> = {
  invalid_handle: 400,
  invalid_zone_name: 400,
  invalid_request: 400,
  invalid_json: 400,
  payload_too_large: 413,
  invalid_jws: 400,
  invalid_signature: 403,
  invalid_key: 400,
  invalid_endpoint: 400,
  invalid_resource: 400,
  invalid_config: 500,
  iat_out_of_range: 400,
  request_timeout: 408,
  headers_too_large: 431,
  expectation_failed: 417,
  not_authoritative: 421,
  zone_not_found: 404,
  zone_exists: 409,
  not_primary: 307,
  handle_not_found: 404,
  handle_exists: 409,
  handle_mismatch: 400,
  stale_prev: 409,
  replayed: 409,
  history_full: 409,
  recovery_refused: 409,
  handle_reserved: 409,
  unauthorized_key: 403,
  missing_proof: 403,
  confusable_host: 400,
  registration_closed: 403,
  invite_required: 403,
  invite_invalid: 403,
  storage_full: 507,
  storage_busy: 503,
  key_unavailable: 503,
  zone_unavailable: 503,
  journal_too_old: 410,
  auth_required: 401,
  auth_failed: 403,
  transfer_failed: 502,
  transfer_refused: 502,
  rate_limited: 429,
  no_trust_anchor: 422,
  resolution_failed: 502,
  referral_limit: 502,
  budget_exceeded: 504,
  address_refused: 502,
  invalid_publication: 502,
  dns_failed: 502,
  anchor_refused: 502,
  webfinger_failed: 502,
  network_error: 502,
  bad_response: 502,
  verification_failed: 502,
  // A witness's answers to add-checkpoint (C2SP tlog-witness gives these statuses).
  unknown_log: 404,
  checkpoint_unsigned: 403,
  log_forked: 409,
  invalid_proof: 422,
  internal: 500,
};

/** The JSON error body of every failed request. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Record<string, unknown> };
}

/** An error as a response: status, extra headers and the JSON body; a 5xx never carries internal detail. */
export interface ErrorReply {
  status: ContentfulStatusCode;
  headers: Record<string, string>;
  body: ErrorBody;
}

/**
 * The one mapping of errors to responses, for the application and the fast paths alike. `pathAndQuery`
 * is the request's, for the Location of a write redirected to the primary.
 */
export function errorReply(err: unknown, pathAndQuery: string, method: string, log: Logger): ErrorReply {
  // A body cut off by its client, or by the server's own timeouts (framing.ts), is the client's doing, not a bug.
  if (isAbortedBody(err)) err = new IdnsError('invalid_request', 'the connection closed before the request body ended', { cause: err });
  if (err instanceof IdnsError) {
    const status = STATUS_OF[err.code];
    const headers: Record<string, string> = {};
    if ((err.code === 'rate_limited' || err.code === 'storage_busy') && typeof err.details?.retryAfter === 'number')
      headers['Retry-After'] = String(err.details.retryAfter);
    // A write sent to a secondary goes to the zone's primary: same path, same method (307 keeps the body).
    if (err.code === 'not_primary' && typeof err.details?.primary === 'string') headers.Location = `${err.details.primary.replace(/\/+$/, '')}${pathAndQuery}`;
    if (status >= 500) {
      // A bug is an error; a zone not loaded yet, a full disk or an unreachable upstream is a condition.
      (status === 500 ? log.error : log.warn)('request failed', { code: err.code, err, path: pathOf(pathAndQuery) });
      if (err.code === 'internal' || err.code === 'invalid_config') return { status: 500, headers, body: body('internal', 'internal error') };
    }
    const b = body(err.code, err.message);
    if (err.details) b.error.details = err.details;
    return { status, headers, body: b };
  }
  log.error('unexpected error', { err, path: pathOf(pathAndQuery), method });
  return { status: 500, headers: {}, body: body('internal', 'internal error') };
}

/** Node's error for a request whose connection closed before its body ended. */
function isAbortedBody(err: unknown): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === 'ECONNRESET' && err.message === 'aborted';
}

const pathOf = (pathAndQuery: string): string => pathAndQuery.split('?')[0]!;

/** Renders an error as the JSON error response (see errorReply). */
export function errorResponse(c: Context, err: unknown, log: Logger): Response {
  const url = new URL(c.req.url);
  const reply = errorReply(err, `${url.pathname}${url.search}`, c.req.method, log);
  note(c, { outcome: reply.body.error.code });
  for (const [name, value] of Object.entries(reply.headers)) c.header(name, value);
  return c.json(reply.body, reply.status);
}

/** The message of a body over the limit, the same from the application and the fast paths. */
export function tooLargeMessage(limitBytes: number): string {
  return `the request body is larger than ${limitBytes} bytes`;
}

/** Builds an error body. */
export function body(code: ErrorCode, message: string): ErrorBody {
  return { error: { code, message } };
}
