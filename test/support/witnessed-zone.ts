import { afterEach } from 'vitest';
import { signChangeRequest } from '../../src/client/requests.js';
import type { ServerConfig } from '../../src/config.js';
import type { UserKey } from './keys.js';
import { startTestServer, tempDir, type TestServer } from './server.js';
import { cpSync } from 'node:fs';

/**
 * Set-ups shared by the tests of zone logs, witnesses and witnessed resolution: servers closed after each
 * test, registrations by one owner, and a primary whose two secondaries witness its zone.
 */

/** Starts in-process servers for a test file; each is closed (with `cleanups`, run after) after every test. */
export function serversOfEachTest(): { server: (options?: Parameters<typeof startTestServer>[0]) => Promise<TestServer>; cleanups: (() => void)[] } {
  const started: TestServer[] = [];
  const cleanups: (() => void)[] = [];
  afterEach(async () => {
    for (const s of started.splice(0).reverse()) await s.close();
    for (const c of cleanups.splice(0)) c();
  });
  return {
    server: async (options = {}) => {
      const s = await startTestServer(options);
      started.push(s);
      return s;
    },
    cleanups,
  };
}

/** Registers `handle` on `s` (its primary) for `owner`, with an endpoint named after it. */
export async function registerHandle(s: TestServer, handle: string, owner: UserKey): Promise<void> {
  await s.ctx.changes.submit(
    signChangeRequest({ action: 'register', handle, endpoint: `https://home.example/${handle}`, keys: [owner.public] }, owner.private),
  );
}

/**
 * A primary of zone `example` whose zone record lists two secondaries, each copying it (and so
 * witnessing it); every server runs its background work. `witnesses`: the secondaries' witness thumbprints.
 */
export async function witnessedZone(server: (options?: Parameters<typeof startTestServer>[0]) => Promise<TestServer>, config: Partial<ServerConfig> = {}) {
  const [a, b] = [await server({ background: true, config }), await server({ background: true, config })];
  const primary = await server({ background: true, config });
  primary.ctx.zones.create('example', { servers: [primary.url, a.url, b.url] });
  const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
  for (const s of [a, b]) {
    s.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await s.ctx.replicator.checkNow('example');
  }
  const witnesses = await Promise.all([a, b].map(async (s) => ((await (await fetch(`${s.url}/v1/witness`)).json()) as { thumbprint: string }).thumbprint));
  return { primary, secondaries: [a, b], kid, witnesses };
}

/** A fork of `primary`: a server on a copy of its data directory (the same zone key, the same history so far), to go its own way. */
export async function forkOf(
  primary: TestServer,
  server: (options?: Parameters<typeof startTestServer>[0]) => Promise<TestServer>,
  cleanups: (() => void)[],
): Promise<TestServer> {
  const copy = tempDir('idns-fork-');
  cleanups.push(copy.remove);
  primary.ctx.store.checkpoint();
  cpSync(primary.dataDir, copy.dir, { recursive: true });
  return server({ dataDir: copy.dir });
}
