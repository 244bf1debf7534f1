import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { newUserKey } from './support/keys.js';
import { IDNS_BIN } from './support/process.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('idns demo', () => {
  it('runs a federation whose resolution survives the loss of a primary, and Ctrl-C stops every process', async () => {
    const child = spawn(process.execPath, [IDNS_BIN, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      // Seven processes start: the bound catches a hang, not a busy machine's slow start.
      const deadline = Date.now() + 90_000;
      while (!out.includes('kill -9')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the demo did not start:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const url = (name: string) => new RegExp(`${name}\\s+(http://\\S+)\\s+pid (\\d+)`).exec(out)!;
      const resolver = url('resolver')[1]!;
      const pids = [...out.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
      expect(pids).toHaveLength(7);
      const socialPrimaryPid = Number(url('social-primary')[2]);

      const alice = await fetch(`${resolver}/v1/lookup/alice@social.example`);
      expect(alice.status).toBe(200);
      expect(await alice.json()).toMatchObject({ zone: 'social.example', endpoint: 'https://social.example/users/alice' });

      // A write through the secondary is redirected to the primary.
      const dave = newUserKey();
      const request = signChangeRequest(
        { action: 'register', handle: 'dave@social.example', endpoint: 'https://social.example/users/dave', keys: [dave.public] },
        dave.private,
      );
      const reg = await fetch(`${url('social-secondary')[1]}/v1/handles`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ request }),
      });
      expect(reg.status).toBe(201);
      // The primary notifies its secondary, which copies the change within moments.
      const secondary = url('social-secondary')[1]!;
      const copied = Date.now() + 30_000;
      while ((await fetch(`${secondary}/v1/resolve/dave@social.example`)).status !== 200) {
        if (Date.now() > copied) throw new Error('the secondary never got the new handle');
        await new Promise((r) => setTimeout(r, 50));
      }

      // Lose the primary of social.example: a name never looked up before still resolves, from the secondary.
      process.kill(socialPrimaryPid, 'SIGKILL');
      const carol = await fetch(`${resolver}/v1/lookup/carol@social.example`);
      expect(carol.status).toBe(200);
      expect(await carol.json()).toMatchObject({ endpoint: 'https://social.example/users/carol' });
      // The handle registered before the loss resolves too.
      expect((await fetch(`${resolver}/v1/lookup/dave@social.example`)).status).toBe(200);

      const dataDir = /data: (\S+?)[,)]/.exec(out)![1]!;
      child.kill('SIGINT');
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000))]);
      expect(code).toBe(0);
      for (const pid of pids) expect(alive(pid), `pid ${pid} still running`).toBe(false);
      expect(existsSync(dataDir)).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 180_000);
});

describe('idns demo --data DIR, started again', () => {
  /** Starts the demo on `data`, resolves once it printed its servers: their URLs and a stop function. */
  async function startDemo(data: string): Promise<{ urls: Map<string, string>; stop: () => Promise<number | null> }> {
    const child = spawn(process.execPath, [IDNS_BIN, 'demo', '--data', data], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const deadline = Date.now() + 90_000;
    while (!out.includes('kill -9')) {
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw new Error(`the demo did not start:\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const urls = new Map([...out.matchAll(/^ {2}(\S+)\s+(http:\/\/\S+)\s+pid \d+$/gm)].map((m) => [m[1]!, m[2]!]));
    return {
      urls,
      stop: async () => {
        child.kill('SIGINT');
        const code = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
        return code;
      },
    };
  }

  it('comes back on the same ports, so it still replicates and redirects writes', async () => {
    const data = mkdtempSync(join(tmpdir(), 'idns-demo-again-'));
    try {
      const first = await startDemo(data);
      expect(first.urls.size).toBe(7);
      expect(await first.stop()).toBe(0);
      const again = await startDemo(data);
      try {
        expect(again.urls).toEqual(first.urls);
        const dave = newUserKey();
        const request = signChangeRequest(
          { action: 'register', handle: 'dave@social.example', endpoint: 'https://social.example/users/dave', keys: [dave.public] },
          dave.private,
        );
        const reg = await fetch(`${again.urls.get('social-secondary')}/v1/handles`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ request }),
        });
        expect(reg.status).toBe(201);
        const copied = Date.now() + 30_000;
        while ((await fetch(`${again.urls.get('social-secondary')}/v1/resolve/dave@social.example`)).status !== 200) {
          if (Date.now() > copied) throw new Error('the secondary never got the new handle');
          await new Promise((r) => setTimeout(r, 50));
        }
        expect((await fetch(`${again.urls.get('resolver')}/v1/lookup/alice@social.example`)).status).toBe(200);
      } finally {
        await again.stop();
      }
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  }, 240_000);
});
