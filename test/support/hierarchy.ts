import { rmSync } from 'node:fs';
import type { Clock } from '../../src/clock.js';
import type { ResolverConfig } from '../../src/config.js';
import type { LookupResult, VerifiedResult } from '../../src/resolver/resolver.js';
import { signChangeRequest } from '../../src/client/requests.js';
import { newUserKey, type UserKey } from './keys.js';
import { startTestServer, tempDir, type TestServer } from './server.js';

/** One zone of a test hierarchy: two real servers over one data directory (two processes' worth of HTTP). */
export interface TestZone {
  name: string;
  a: TestServer;
  b: TestServer;
  kid: string;
  dataDir: string;
}

/** A running hierarchy: root → example → {social.example, news.example}, and root → skip.example.org. */
export interface Hierarchy {
  zones: Map<string, TestZone>;
  rootServers: string[];
  anchors: Map<string, string[]>;
  owner: UserKey;
  /** Registers a handle in its zone (on server a). */
  register(handle: string, zone: string, endpoint?: string): Promise<void>;
  close(): Promise<void>;
}

const ZONES = ['.', 'example', 'social.example', 'news.example', 'skip.example.org'];
const DELEGATIONS: [string, string][] = [
  ['.', 'example'],
  ['example', 'social.example'],
  ['example', 'news.example'],
  // The root may delegate several levels down at once.
  ['.', 'skip.example.org'],
];

/**
 * The resolver role of a test server that walks `h` from its root, anchored at the root's key: no
 * discovery, no WebFinger bridge, private addresses allowed (everything is on loopback); `more` replaces
 * any of it.
 */
export function hierarchyResolver(h: Hierarchy, more: Partial<ResolverConfig> = {}): ResolverConfig {
  return {
    rootServers: h.rootServers,
    forwarders: [],
    discovery: null,
    webfinger: false,
    anchors: { '.': [h.anchors.get('.')![0]!] },
    allowPrivate: true,
    cache: {},
    limits: {},
    ...more,
  };
}

/** Starts the hierarchy with a few handles at every level. */
export async function startHierarchy(options: { clock?: Clock } = {}): Promise<Hierarchy> {
  const zones = new Map<string, TestZone>();
  for (const name of ZONES) {
    const { dir } = tempDir();
    const a = await startTestServer({ dataDir: dir, ...(options.clock ? { clock: options.clock } : {}) });
    const b = await startTestServer({ dataDir: dir, ...(options.clock ? { clock: options.clock } : {}) });
    const info = a.ctx.zones.create(name, { servers: [a.url, b.url], allowLoopbackEndpoints: true });
    zones.set(name, { name, a, b, kid: info.keyThumbprints[0]!, dataDir: dir });
  }
  for (const [parent, child] of DELEGATIONS) {
    const c = zones.get(child)!;
    zones.get(parent)!.a.ctx.zones.delegate(parent, child, { servers: [c.a.url, c.b.url], ds: [c.kid] });
  }
  const owner = newUserKey();
  const h: Hierarchy = {
    zones,
    rootServers: [zones.get('.')!.a.url, zones.get('.')!.b.url],
    anchors: new Map([['.', [zones.get('.')!.kid]]]),
    owner,
    async register(handle, zone, endpoint = `https://home.example/${handle}`) {
      const jws = signChangeRequest({ action: 'register', handle, endpoint, keys: [owner.public] }, owner.private, options.clock);
      await zones.get(zone)!.a.ctx.changes.submit(jws);
    },
    async close() {
      for (const z of zones.values()) {
        await z.a.close();
        await z.b.close();
        rmSync(z.dataDir, { recursive: true, force: true });
      }
    },
  };
  await h.register('alice@social.example', 'social.example');
  await h.register('bob@example', 'example');
  await h.register('carol@news.example', 'news.example');
  await h.register('dave@org', '.');
  await h.register('eve@deep.skip.example.org', 'skip.example.org');
  return h;
}

/**
 * Counts the authoritative queries (`GET /v1/resolve`) the hierarchy's servers answered with 200 (answers
 * and referrals); malformed background traffic only ever gets 4xx, so it does not count.
 */
export async function resolveQueries(h: Hierarchy): Promise<number> {
  let total = 0;
  for (const z of h.zones.values()) {
    for (const s of [z.a, z.b]) {
      const text = await (await fetch(`${s.url}/metrics`)).text();
      for (const line of text.split('\n')) {
        if (line.startsWith('idns_http_requests_total{route="/v1/resolve/:handle"') && line.includes('status="200"')) total += Number(line.split(' ').pop());
      }
    }
  }
  return total;
}

/** The lookup result as verified (with its proof); fails the test on a result bridged from WebFinger. */
export function verified(r: LookupResult): VerifiedResult {
  if (!r.verified) throw new Error(`expected a verified result for ${r.handle}, got one bridged from ${r.source}`);
  return r;
}
