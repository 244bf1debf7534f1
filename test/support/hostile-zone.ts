import type { CreateZoneOptions } from '../../src/authority/zones.js';
import { sendJson, startFakeServer, zoneKey, zoneReply, ZoneSigner, type FakeServer } from './fake-server.js';
import { startHierarchy, type Hierarchy } from './hierarchy.js';
import { startTestServer, type TestServer } from './server.js';

/**
 * A zone that signs hostile records with its real key behind a genuine delegation: a real server holds
 * the zone (so its key file is real), `example` of a test hierarchy delegates it naming that key, and a
 * fake server in front answers every lookup with the handle record `record(handle)` signs.
 */
export interface HostileZone {
  h: Hierarchy;
  real: TestServer;
  fake: FakeServer;
  signer: ZoneSigner;
  close(): Promise<void>;
}

/** Starts a hierarchy with `zone` (below `example`) answered by a fake server signing `record(handle)`. */
export async function startHostileZone(
  zone: string,
  record: (handle: string, z: HostileZone) => string,
  zoneOptions: Partial<CreateZoneOptions> = {},
): Promise<HostileZone> {
  const h = await startHierarchy();
  const real = await startTestServer({ zones: { [zone]: zoneOptions } });
  const kid = real.ctx.zones.info(zone).keyThumbprints[0]!;
  const signer = new ZoneSigner(zone, zoneKey(real.dataDir, zone, kid));
  const z = { h, real, signer } as HostileZone;
  z.fake = await startFakeServer((_req, res, q) => {
    sendJson(res, 200, zoneReply('answer', zone, record(q.handle ?? '', z), signer.zoneRecord([z.fake.url])));
  });
  z.close = async () => {
    await z.fake.close();
    await real.close();
    await h.close();
  };
  h.zones.get('example')!.a.ctx.zones.delegate('example', zone, { servers: [z.fake.url], ds: [kid] });
  return z;
}
