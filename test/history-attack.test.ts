import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyRing } from '../src/authority/keyring.js';
import { decodePayload } from '../src/authority/editor.js';
import { RECORD_TYP, signCompact } from '../src/records/jws.js';
import type { SigningKey } from '../src/records/keys.js';
import { createResolver } from '../src/resolver/resolver.js';
import { Cluster, idns, register, type Node } from './support/cluster.js';
import { send } from './support/http.js';
import { newUserKey } from './support/keys.js';
import { runIdns } from './support/process.js';

/**
 * The attack of issue 17, end to end with real processes: a proxy in front of a zone's only server holds
 * the zone's private key (as a compromised primary, a malicious operator or anyone who stole the key
 * would) and re-signs one user's handle record with the attacker's keys and endpoint, passing everything
 * else through unchanged, the history evidence included. The record's zone signature is perfect; only its
 * owner's history says it is not hers. The CLI walk, the resolver role (a real `idns serve` process),
 * resolveMany and the library must each refuse it with verification_failed, and resolve an honest
 * handle of the same zone on the same path.
 */

const ZONE = 'example';
const VICTIM = `alice@${ZONE}`;
const HONEST = `bob@${ZONE}`;
const ATTACKER_ENDPOINT = 'https://evil.example/alice';
const owner = newUserKey();
const attacker = newUserKey();
const cluster = new Cluster();

let primary: Node;
let kid: string;
let proxy: { url: string; rewritten: number; close: () => Promise<void> };

/** An HTTP server that forwards every request to `target` and re-signs the victim's handle record in authoritative answers. */
async function reSigningProxy(target: string, key: SigningKey): Promise<typeof proxy> {
  const state = { rewritten: 0 };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const upstream = await fetch(`${target}${req.url}`, { method: req.method ?? 'GET' });
      let body = Buffer.from(await upstream.arrayBuffer());
      if (req.url?.startsWith(`/v1/resolve/${encodeURIComponent(VICTIM)}`) || req.url?.startsWith(`/v1/resolve/${VICTIM}`)) {
        const answer = JSON.parse(body.toString()) as { status: string; record: string };
        if (answer.status === 'answer') {
          const payload = decodePayload(answer.record);
          // Everything the zone key alone can do: a new record, same op, genesis and seq, other keys and endpoint.
          answer.record = signCompact({ ...payload, keys: [attacker.public], endpoint: ATTACKER_ENDPOINT }, key, RECORD_TYP);
          body = Buffer.from(JSON.stringify(answer));
          state.rewritten += 1;
        }
      }
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
      res.end(body);
    })().catch((err: unknown) => {
      res.writeHead(502);
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    get rewritten() {
      return state.rewritten;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

beforeAll(async () => {
  primary = await cluster.node('primary');
  const created = await idns(['zone', 'create', ZONE, '--server-url', primary.url, '--data', primary.dir, '--json']);
  kid = created.keyThumbprints[0] as string;
  await cluster.start(primary);
  for (const h of [VICTIM, HONEST]) expect((await register(primary.url, owner, h)).status).toBe(201);
  // The attacker holds the zone's private key, read from the primary's data directory.
  proxy = await reSigningProxy(primary.url, new KeyRing(join(primary.dir, 'keys')).load(ZONE, kid));
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await cluster.cleanup();
});

describe("a zone key holder re-signing a user's record with other keys", () => {
  it("the proxy does what it claims: the record it serves has a valid zone signature and the attacker's keys", async () => {
    const res = await send(proxy.url, 'GET', `/v1/resolve/${VICTIM}`);
    expect(res.status).toBe(200);
    const record = decodePayload((res.json as { record: string }).record);
    expect(record).toMatchObject({ endpoint: ATTACKER_ENDPOINT, keys: [attacker.public] });
    // Zone signature and record schema alone accept it: only the history shows the forgery.
    const { checkAnswer } = await import('../src/client/answers.js');
    expect(() => checkAnswer(res.json, VICTIM, new Map([[ZONE, [kid]]]), undefined, { allowLoopbackEndpoints: true })).toThrow(
      /does not follow from its history: its endpoint, keys or links are not the state/,
    );
  });

  it('the CLI walk (idns lookup) refuses it and resolves the honest handle', async () => {
    const base = ['--root', proxy.url, '--anchor', `${ZONE}=${kid}`, '--allow-private'];
    const forged = await runIdns(['lookup', VICTIM, ...base]);
    expect(forged.code).not.toBe(0);
    expect(forged.stderr).toMatch(/verification_failed|does not follow from its history/);
    expect(forged.stdout).not.toContain('evil.example');
    const honest = await runIdns(['lookup', HONEST, ...base, '--json']);
    expect(honest.code).toBe(0);
    expect(JSON.parse(honest.stdout)).toMatchObject({ handle: HONEST, endpoint: `https://home.example/${HONEST}`, operatorAsserted: false });
  });

  it('idns resolve against the proxy refuses it', async () => {
    const forged = await runIdns(['resolve', VICTIM, '--server', proxy.url, '--anchor', `${ZONE}=${kid}`, '--allow-private']);
    expect(forged.code).not.toBe(0);
    expect(forged.stderr).toMatch(/does not follow from its history/);
  });

  it('the resolver role (a real idns serve process walking through the proxy) refuses it and resolves the honest handle', async () => {
    const resolverNode = await cluster.node('resolver', ['--root', proxy.url, '--anchor', `${ZONE}=${kid}`, '--allow-private']);
    await cluster.start(resolverNode);
    const before = proxy.rewritten;
    const forged = await send(resolverNode.url, 'GET', `/v1/lookup/${encodeURIComponent(VICTIM)}`);
    expect(proxy.rewritten).toBeGreaterThan(before);
    expect(forged.status).toBe(502);
    expect((forged.json as { error: { code: string; message: string } }).error).toMatchObject({ code: 'verification_failed' });
    expect(forged.text).not.toContain('evil.example');
    const honest = await send(resolverNode.url, 'GET', `/v1/lookup/${encodeURIComponent(HONEST)}`);
    expect(honest.status).toBe(200);
    expect(honest.json).toMatchObject({ handle: HONEST, endpoint: `https://home.example/${HONEST}`, verified: true });
  });

  it('the library (resolve, resolveMany) refuses it and resolves the honest handle; so does a direct path to the real server', async () => {
    const library = createResolver({ trustAnchors: new Map([[ZONE, [kid]]]), rootServers: [proxy.url], allowPrivate: true });
    try {
      await expect(library.resolve(VICTIM)).rejects.toMatchObject({ code: 'verification_failed' });
      const many = await library.resolveMany([VICTIM, HONEST]);
      expect(many[0]).toMatchObject({ handle: VICTIM, error: { code: 'verification_failed' } });
      expect(many[1]).toMatchObject({ handle: HONEST, result: { endpoint: `https://home.example/${HONEST}`, verified: true } });
    } finally {
      await library.close();
    }
    // Without the proxy, the victim's own record resolves: the refusal was the forgery's, not the handle's.
    const direct = createResolver({ trustAnchors: new Map([[ZONE, [kid]]]), rootServers: [primary.url], allowPrivate: true });
    try {
      expect(await direct.resolve(VICTIM)).toMatchObject({ endpoint: `https://home.example/${VICTIM}`, keys: [owner.public], operatorAsserted: false });
    } finally {
      await direct.close();
    }
  });
});
