import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { DEFAULT_CONFIG } from '../src/config.js';
import { makeServerCertificate } from './support/certs.js';
import { newUserKey } from './support/keys.js';
import { spawnServer } from './support/process.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

// HTTPS between idns servers, with a CA and certificates made inside the test (openssl).
describe('HTTPS', () => {
  const tmp = tempDir('idns-tls-');
  const pem = (name: string) => join(tmp.dir, name);
  const owner = newUserKey();
  const servers: TestServer[] = [];
  let primary: TestServer;
  let kid: string;

  beforeAll(async () => {
    // ca.pem, server.pem and server.key in tmp.dir, read through pem().
    makeServerCertificate(tmp.dir);

    primary = await startTestServer({ zones: { example: {} }, config: { tls: { cert: pem('server.pem'), key: pem('server.key'), ca: [] } } });
    servers.push(primary);
    kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    await primary.ctx.changes.submit(
      signChangeRequest({ action: 'register', handle: 'alice@example', endpoint: 'https://home.example/alice', keys: [owner.public] }, owner.private),
    );
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    tmp.remove();
  });

  it('serves over https with the configured certificate', async () => {
    expect(primary.url.startsWith('https://127.0.0.1:')).toBe(true);
    const agent = new Agent({ connect: { ca: (await import('node:fs')).readFileSync(pem('ca.pem')) } });
    const res = await request(`${primary.url}/v1/resolve/alice@example`, { dispatcher: agent });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    await agent.close();
  });

  it('lets a secondary copy over https when it trusts the CA (--ca), and refuses otherwise', async () => {
    const trusting = await startTestServer({ config: { tls: { cert: null, key: null, ca: [pem('ca.pem')] } } });
    servers.push(trusting);
    trusting.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    const ok = await trusting.ctx.replicator.checkNow('example');
    expect(ok.lastError).toBeNull();
    expect((await fetch(`${trusting.url}/v1/resolve/alice@example`)).status).toBe(200);

    const untrusting = await startTestServer();
    servers.push(untrusting);
    untrusting.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    const refused = await untrusting.ctx.replicator.checkNow('example');
    expect(refused.lastError).toMatch(/certificate/i);
  });

  it('lets the resolver walk https servers when it trusts the CA', async () => {
    const resolverConfig = {
      rootServers: [primary.url],
      forwarders: [],
      discovery: null,
      webfinger: false,
      anchors: { example: [kid] },
      allowPrivate: true,
      cache: {},
      limits: {},
    };
    const trusting = await startTestServer({ config: { tls: { cert: null, key: null, ca: [pem('ca.pem')] }, resolver: resolverConfig } });
    servers.push(trusting);
    const found = await fetch(`${trusting.url}/v1/lookup/alice@example`);
    expect(found.status).toBe(200);
    expect(await found.json()).toMatchObject({ endpoint: 'https://home.example/alice' });
    const untrusting = await startTestServer({ config: { ...DEFAULT_CONFIG, dataDir: tempDir().dir, bootstrap: false, resolver: resolverConfig } });
    servers.push(untrusting);
    const refused = await fetch(`${untrusting.url}/v1/lookup/alice@example`);
    expect(refused.status).toBe(502);
  });

  it('idns serve takes --tls-cert, --tls-key and --ca', async () => {
    const data = tempDir();
    const p = await spawnServer([
      '--listen',
      '127.0.0.1:0',
      '--data',
      data.dir,
      '--tls-cert',
      pem('server.pem'),
      '--tls-key',
      pem('server.key'),
      '--ca',
      pem('ca.pem'),
    ]);
    try {
      expect(p.url.startsWith('https://')).toBe(true);
    } finally {
      await p.stop();
      data.remove();
    }
  });
});

describe('HTTPS certificate renewal without a restart (idns ctl reload)', () => {
  it('serves the certificate now in the configured files to new connections once reloaded', async () => {
    const tmp = tempDir('idns-tls-reload-');
    const first = join(tmp.dir, 'first');
    const second = join(tmp.dir, 'second');
    const { mkdirSync, copyFileSync, readFileSync } = await import('node:fs');
    mkdirSync(first);
    mkdirSync(second);
    makeServerCertificate(first);
    makeServerCertificate(second);
    const live = join(tmp.dir, 'live');
    mkdirSync(live);
    for (const f of ['server.pem', 'server.key']) copyFileSync(join(first, f), join(live, f));
    const s = await startTestServer({ config: { tls: { cert: join(live, 'server.pem'), key: join(live, 'server.key'), ca: [] } } });
    const status = async (ca: string) => {
      const agent = new Agent({ connect: { ca: readFileSync(join(ca, 'ca.pem')) } });
      try {
        const res = await request(`${s.url}/healthz`, { dispatcher: agent });
        await res.body.dump();
        return res.statusCode;
      } catch (err) {
        return (err as Error).message;
      } finally {
        await agent.close();
      }
    };
    try {
      expect(await status(first)).toBe(200);
      // The certificate is renewed on disk (by another CA here, so that the test can tell which is served).
      for (const f of ['server.pem', 'server.key']) copyFileSync(join(second, f), join(live, f));
      expect(await status(first)).toBe(200);
      expect(s.server.reloadTls()).toBe(true);
      expect(await status(second)).toBe(200);
      expect(await status(first)).toMatch(/certificate/i);
    } finally {
      await s.close();
      tmp.remove();
    }
  });
});
