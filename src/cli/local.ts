import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { IdnsError } from '../errors.js';
import type { LocalContext } from '../local-context.js';

/**
 * Opens the data directory for an operator command (the same database a running server uses). Its modules
 * (the store, libsodium, zod's schemas) are loaded here, not when the command module is, so that `--help`
 * and argument errors answer without them.
 */
export async function openLocal(values: { data?: string | undefined; config?: string | undefined }, existing = false): Promise<LocalContext> {
  const [{ loadConfig }, { LocalContext }, { createLogger }] = await Promise.all([import('../config.js'), import('../local-context.js'), import('../log.js')]);
  const config = loadConfig({ data: values.data, config: values.config });
  // A command that only reads must not make a data directory out of a mistyped --data.
  if (existing && !existsSync(join(config.dataDir, 'idns.sqlite'))) {
    throw new IdnsError('invalid_config', `${config.dataDir} is not an idns data directory (it holds no idns.sqlite): nothing to read there`);
  }
  return openingDataDir(config.dataDir, () => new LocalContext(config, undefined, createLogger('warn')));
}

/** Opens a context on `dataDir`, turning file-system failures (a data directory that is a file…) into one-line reasons. */
export function openingDataDir<T>(dataDir: string, open: () => T): T {
  try {
    return open();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^(E[A-Z]+|SQLITE_[A-Z_]+)$/.test(code)) {
      throw new IdnsError('invalid_config', `cannot use the data directory ${dataDir}: ${(err as Error).message}`, { cause: err });
    }
    throw err;
  }
}

/** Runs `fn` with the local context and always closes it; with `existing` (a command that only reads), on an existing data directory only. */
export async function withLocal<T>(
  values: { data?: string | undefined; config?: string | undefined },
  fn: (ctx: LocalContext) => T | Promise<T>,
  existing = false,
): Promise<T> {
  const ctx = await openLocal(values, existing);
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
