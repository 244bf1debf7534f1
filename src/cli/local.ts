import { loadConfig, type ServerConfig } from '../config.js';
import { IdnsError } from '../errors.js';
import type { Logger } from '../log.js';
import { AppContext } from '../context.js';
import { createLogger } from '../log.js';

/** Opens the data directory for an operator command (the same database a running server uses). */
export function openLocal(values: { data?: string | undefined; config?: string | undefined }): AppContext {
  return openContext(loadConfig({ data: values.data, config: values.config }), createLogger('warn'));
}

/** Opens a server context, turning file-system failures (a data directory that is a file…) into one-line reasons. */
export function openContext(config: ServerConfig, log?: Logger): AppContext {
  try {
    return new AppContext(config, undefined, log);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^(E[A-Z]+|SQLITE_[A-Z_]+)$/.test(code)) {
      throw new IdnsError('invalid_config', `cannot use the data directory ${config.dataDir}: ${(err as Error).message}`, { cause: err });
    }
    throw err;
  }
}

/** Runs `fn` with the local context and always closes it. */
export async function withLocal<T>(values: { data?: string | undefined; config?: string | undefined }, fn: (ctx: AppContext) => T | Promise<T>): Promise<T> {
  const ctx = openLocal(values);
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

/** Options every command that works on the data directory takes. */
export const localOptions = {
  data: { type: 'string' },
  config: { type: 'string' },
  json: { type: 'boolean' },
} as const;
