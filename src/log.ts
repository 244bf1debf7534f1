import pino from 'pino';
import { IdnsError } from './errors.js';

/** Structured logging: one JSON object per line (pino), on stderr. Secrets (keys, invite codes) are never passed in. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** Whether lines at `level` are written, so that a hot path can skip building them. */
  enabled(level: Exclude<LogLevel, 'silent'>): boolean;
}

/**
 * A logger writing JSON lines at or above `level`, to stderr or to `out` (tests). Errors passed as the
 * `err` field are serialised with their message and code; only unexpected ones (not an IdnsError: a
 * bug) with their stack, so an expected failure (a server that cannot be reached, a refused transfer)
 * is one short line.
 */
export function createLogger(level: LogLevel, out?: (line: string) => void): Logger {
  const destination = out ? { write: out } : pino.destination({ dest: 2, sync: false });
  const p = pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: serializeError },
    },
    destination,
  );
  return {
    debug: (msg, fields) => p.debug(fields ?? {}, msg),
    info: (msg, fields) => p.info(fields ?? {}, msg),
    warn: (msg, fields) => p.warn(fields ?? {}, msg),
    error: (msg, fields) => p.error(fields ?? {}, msg),
    enabled: (level) => p.isLevelEnabled(level),
  };
}

/** An `err` field: an IdnsError (an expected, typed failure) as its code and message; anything else in full, stack included. */
function serializeError(err: unknown): unknown {
  if (err instanceof IdnsError) return { type: 'IdnsError', code: err.code, message: err.message };
  return err instanceof Error ? pino.stdSerializers.err(err) : err;
}
