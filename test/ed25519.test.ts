import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ed25519, ed25519Fallback, nodeEd25519 } from '../src/records/ed25519.js';
// The server's loader: importing it installs libsodium, as every server entry point does.
import { sodiumEd25519 } from '../src/records/ed25519-sodium.js';
import { b64u } from '../src/records/encoding.js';
import type { PublicJwk } from '../src/records/keys.js';
import { spawnServer, type ServerProcess } from './support/process.js';
import { tempDir } from './support/server.js';

// RFC 8032 section 7.1, TEST 2 (one-byte message) and TEST 3 (two bytes).
const VECTORS = [
  {
    secret: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    public: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    secret: 'c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7',
    public: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    message: 'af82',
    signature: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
];

const sodium = sodiumEd25519(createRequire(import.meta.url)('sodium-native'));
const backends = [nodeEd25519, sodium];

function keysOf(v: (typeof VECTORS)[number]) {
  const x = b64u(Buffer.from(v.public, 'hex'));
  const jwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x };
  const privateKey = createPrivateKey({ key: { ...jwk, d: b64u(Buffer.from(v.secret, 'hex')) }, format: 'jwk' });
  return { jwk, privateKey, publicKey: createPublicKey(privateKey) };
}

describe('Ed25519 backends', () => {
  it("libsodium is the one in use once the server's loader ran and sodium-native is installed", () => {
    expect(ed25519.name).toBe('libsodium');
    expect(ed25519Fallback).toBeNull();
  });

  for (const backend of backends) {
    it(`${backend.name} signs the RFC 8032 test vectors byte for byte and verifies them`, () => {
      for (const v of VECTORS) {
        const { jwk, privateKey, publicKey } = keysOf(v);
        const message = Buffer.from(v.message, 'hex');
        const signature = backend.sign(message, privateKey);
        expect(signature.toString('hex')).toBe(v.signature);
        // A second signature with the same KeyObject (remembered raw key) is the same.
        expect(backend.sign(message, privateKey).toString('hex')).toBe(v.signature);
        expect(backend.verify(message, signature, publicKey)).toBe(true);
        expect(backend.verify(message, signature, jwk)).toBe(true);
      }
    });

    it(`${backend.name} refuses a changed message, a changed signature and another key`, () => {
      const [a, b] = VECTORS.map(keysOf) as [ReturnType<typeof keysOf>, ReturnType<typeof keysOf>];
      const message = Buffer.from('an idns record');
      const signature = backend.sign(message, a.privateKey);
      expect(backend.verify(message, signature, a.jwk)).toBe(true);
      expect(backend.verify(Buffer.from('an idns recorD'), signature, a.jwk)).toBe(false);
      const flipped = Buffer.from(signature);
      flipped[10] = flipped[10]! ^ 1;
      expect(backend.verify(message, flipped, a.publicKey)).toBe(false);
      expect(backend.verify(message, signature, b.jwk)).toBe(false);
      expect(backend.verify(message, signature, b.publicKey)).toBe(false);
    });
  }

  it('both backends agree on signatures of random messages with a generated key', () => {
    const { jwk, privateKey } = keysOf(VECTORS[0]!);
    for (let i = 0; i < 50; i++) {
      const message = Buffer.from(`record ${i} ${'x'.repeat(i * 13)}`);
      const s1 = nodeEd25519.sign(message, privateKey);
      const s2 = sodium.sign(message, privateKey);
      expect(s2.equals(s1)).toBe(true);
      expect(nodeEd25519.verify(message, s2, jwk) && sodium.verify(message, s1, jwk)).toBe(true);
    }
  });

  it('libsodium refuses to sign with a public key', () => {
    const { publicKey } = keysOf(VECTORS[0]!);
    expect(() => sodium.sign(Buffer.from('x'), publicKey)).toThrow(/private key/);
  });

  it('IDNS_ED25519=node makes a process use node:crypto', () => {
    const loader = fileURLToPath(new URL('../dist/records/ed25519-sodium.js', import.meta.url));
    const dist = fileURLToPath(new URL('../dist/records/ed25519.js', import.meta.url));
    const script = `import(${JSON.stringify(loader)}).then(() => import(${JSON.stringify(dist)})).then((m) => console.log(m.ed25519.name + ' | ' + m.ed25519Fallback))`;
    const run = (env: NodeJS.ProcessEnv) =>
      execFileSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20_000 }).trim();
    expect(run({ IDNS_ED25519: 'node' })).toBe('node:crypto | IDNS_ED25519=node');
    expect(run({ IDNS_ED25519: '' })).toBe('libsodium | null');
  });

  it("without the server's loader a process uses node:crypto and never loads sodium-native", () => {
    const dist = fileURLToPath(new URL('../dist/records/jws.js', import.meta.url));
    const ed = fileURLToPath(new URL('../dist/records/ed25519.js', import.meta.url));
    const script = `import(${JSON.stringify(dist)}).then(() => import(${JSON.stringify(ed)})).then((m) => {
      const loaded = Object.keys(require.cache).some((p) => p.includes('sodium-native'));
      console.log(m.ed25519.name + ' | ' + m.ed25519Fallback + ' | ' + loaded);
    })`;
    const out = execFileSync(process.execPath, ['-e', script], { env: { ...process.env, IDNS_ED25519: '' }, encoding: 'utf8', timeout: 20_000 }).trim();
    expect(out).toBe('node:crypto | null | false');
  });
});

describe('idns serve', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** The fields of the server's `listening` log line (JSON), waited for at most 10 s. */
  async function listening(server: ServerProcess): Promise<Record<string, unknown>> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const line = server
        .output()
        .split('\n')
        .find((l) => l.includes('"listening"'));
      if (line) return JSON.parse(line) as Record<string, unknown>;
      if (Date.now() > deadline) throw new Error(`no listening line:\n${server.output()}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('logs the Ed25519 implementation, and for a resolver whether its heap is compacted', async () => {
    let last: ServerProcess | null = null;
    const start = async (extra: string[], env?: NodeJS.ProcessEnv) => {
      const data = tempDir('idns-serve-');
      cleanups.push(data.remove);
      const server = await spawnServer(['--listen', '127.0.0.1:0', '--data', data.dir, '--no-bootstrap', '--log-level', 'info', ...extra], env ? { env } : {});
      cleanups.push(() => server.stop());
      last = server;
      return listening(server);
    };
    const authority = await start([]);
    expect(authority.ed25519).toBe('libsodium');
    // node:crypto when asked for, without the warning a failed binding gets.
    expect((await start([], { ...process.env, IDNS_ED25519: 'node' })).ed25519).toBe('node:crypto');
    expect(last!.output()).not.toContain('falls back');
    expect(authority).not.toHaveProperty('compactHeap');
    const role = ['--root', 'http://127.0.0.1:9', '--anchor', `.=${'A'.repeat(43)}`];
    expect((await start(role)).compactHeap).toBe(true);
    const configDir = tempDir('idns-serve-config-');
    cleanups.push(configDir.remove);
    const config = join(configDir.dir, 'idns.json');
    writeFileSync(config, JSON.stringify({ resolver: { cache: { compactHeap: false } } }));
    expect((await start([...role, '--config', config])).compactHeap).toBe(false);
  });
});
