import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CreateZoneOptions } from '../../src/authority/zones.js';
import { systemClock, type Clock } from '../../src/clock.js';
import { DEFAULT_CONFIG, type ServerConfig } from '../../src/config.js';
import { AppContext } from '../../src/context.js';
import { startServer, type RunningServer } from '../../src/http/server.js';
import { createLogger } from '../../src/log.js';

/** A temporary directory removed by the returned function. */
export function tempDir(prefix = 'idns-test-'): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A real idns server in this process, on a free loopback port, over a fresh data directory. */
export interface TestServer {
  ctx: AppContext;
  url: string;
  server: RunningServer;
  dataDir: string;
  close: () => Promise<void>;
}

/** Starts a server; `zones` maps zone names to creation options (servers default to the server's own URL). */
export async function startTestServer(
  options: { clock?: Clock; zones?: Record<string, Partial<CreateZoneOptions>>; config?: Partial<ServerConfig>; dataDir?: string; background?: boolean } = {},
): Promise<TestServer> {
  const tmp = options.dataDir ? null : tempDir();
  const dataDir = options.dataDir ?? tmp!.dir;
  const config: ServerConfig = { ...structuredClone(DEFAULT_CONFIG), dataDir, bootstrap: false, ...options.config };
  const ctx = new AppContext(config, options.clock ?? systemClock, createLogger('silent'));
  const server = await startServer(ctx, '127.0.0.1', 0);
  for (const [name, zone] of Object.entries(options.zones ?? {})) {
    ctx.zones.create(name, { servers: [server.url], ...zone });
  }
  // Replication, notifies and upkeep run only where a test asks for them, as `idns serve` runs them.
  if (options.background) ctx.startBackground();
  return {
    ctx,
    url: server.url,
    server,
    dataDir,
    close: async () => {
      await server.close();
      await ctx.close();
      tmp?.remove();
    },
  };
}
