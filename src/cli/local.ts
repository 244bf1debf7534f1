import { loadConfig } from '../config.js';
import { AppContext } from '../context.js';
import { createLogger } from '../log.js';

/** Opens the data directory for an operator command (the same database a running server uses). */
export function openLocal(values: { data?: string | undefined; config?: string | undefined }): AppContext {
  const config = loadConfig({ data: values.data, config: values.config });
  return new AppContext(config, undefined, createLogger('warn'));
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
