import { IdnsError, type ErrorCode } from '../errors.js';

/**
 * An error as it crosses between threads. postMessage copies an Error as a plain object, losing its class
 * and cause, so an IdnsError is sent as its code, message and details and made again on the other side:
 * the caller sees the same typed error the thread threw.
 */
export interface WireError {
  /** The IdnsError's code; null for any other error (a bug or a failure of the runtime). */
  code: ErrorCode | null;
  message: string;
  details?: Record<string, unknown>;
}

/** An error made fit for postMessage. */
export function toWire(err: unknown): WireError {
  if (err instanceof IdnsError) return { code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) };
  return { code: null, message: err instanceof Error ? err.message : String(err) };
}

/** The error a WireError stands for: the IdnsError again, or an Error naming the thread it came from. */
export function fromWire(err: WireError, thread: string): Error {
  if (err.code === null) return new Error(`${thread} thread: ${err.message}`);
  return new IdnsError(err.code, err.message, err.details !== undefined ? { details: err.details } : undefined);
}
