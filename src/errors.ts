/**
 * Typed errors with stable codes. The code is the contract: clients and tests match on it, the HTTP
 * layer maps it to a status in exactly one place (src/http/errors.ts), and messages may change freely.
 */
export type ErrorCode =
  // input
  | 'invalid_handle'
  | 'invalid_zone_name'
  | 'invalid_request'
  | 'invalid_json'
  | 'payload_too_large'
  | 'invalid_jws'
  | 'invalid_signature'
  | 'invalid_key'
  | 'invalid_endpoint'
  | 'invalid_resource'
  | 'invalid_config'
  | 'iat_out_of_range'
  // HTTP framing (Node's parser and the server's connection limits)
  | 'request_timeout'
  | 'headers_too_large'
  | 'expectation_failed'
  // authority
  | 'not_authoritative'
  | 'zone_not_found'
  | 'zone_exists'
  | 'not_primary'
  | 'handle_not_found'
  | 'handle_exists'
  | 'handle_mismatch'
  | 'stale_prev'
  | 'replayed'
  | 'history_full'
  | 'recovery_refused'
  | 'handle_reserved'
  | 'unauthorized_key'
  | 'missing_proof'
  | 'confusable_host'
  | 'registration_closed'
  | 'invite_required'
  | 'invite_invalid'
  | 'storage_full'
  | 'storage_busy'
  | 'key_unavailable'
  | 'zone_unavailable'
  | 'journal_too_old'
  | 'auth_required'
  | 'auth_failed'
  | 'transfer_failed'
  | 'transfer_refused'
  | 'rate_limited'
  // resolver
  | 'no_trust_anchor'
  | 'resolution_failed'
  | 'referral_limit'
  | 'budget_exceeded'
  | 'address_refused'
  // discovery (DNS and HTTPS publications, the WebFinger bridge)
  | 'invalid_publication'
  | 'dns_failed'
  | 'anchor_refused'
  | 'webfinger_failed'
  // client side
  | 'network_error'
  | 'bad_response'
  | 'verification_failed'
  | 'unknown_log'
  | 'checkpoint_unsigned'
  | 'log_forked'
  | 'invalid_proof'
  | 'internal';

/** Base class of every error idns raises on purpose. */
export class IdnsError extends Error {
  readonly code: ErrorCode;
  /** Extra machine-readable facts for the client (never secrets). */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'IdnsError';
    this.code = code;
    this.details = options?.details;
  }
}

/** True when `err` is an IdnsError, optionally with the given code. */
export function isIdnsError(err: unknown, code?: ErrorCode): err is IdnsError {
  return err instanceof IdnsError && (code === undefined || err.code === code);
}
