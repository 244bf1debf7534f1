import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { queryAuthoritative } from '../src/client/answers.js';
import { signChangeRequest } from '../src/client/requests.js';
import { parseDocument, parseTxt } from '../src/discovery/publication.js';
import { thumbprint } from '../src/records/keys.js';
import { newUserKey, writeUserKey } from './support/keys.js';
import { runIdns, spawnServer, type ServerProcess } from './support/process.js';
import { cleanupEachTest } from './support/cleanup.js';
import { tempDir } from './support/server.js';

// The `idns` command as people and scripts use it: real CLI processes against a real `idns serve`.

const cleanups = cleanupEachTest();

function newDir(): string {
  const tmp = tempDir('idns-cli-');
  cleanups.push(tmp.remove);
  return tmp.dir;
}

/** Starts `idns serve` on a free port over `data` (bootstrapping zone localhost unless told not to). */
async function serve(data: string, extra: string[] = []): Promise<ServerProcess> {
  const server = await spawnServer(['--listen', '127.0.0.1:0', '--data', data, ...extra]);
  cleanups.push(() => server.stop('SIGKILL'));
  return server;
}

/** A working directory with its own data directory and a bootstrapped server (zone localhost, open). */
async function setup(): Promise<{ cwd: string; data: string; url: string; idns: (args: string[]) => ReturnType<typeof runIdns> }> {
  const cwd = newDir();
  const data = join(cwd, 'data');
  const server = await serve(data);
  return { cwd, data, url: server.url, idns: (args) => runIdns(args, { cwd }) };
}

/** Asserts a failed command: the exit status, and one line on stderr that contains `code`. */
function expectFailure(res: { code: number | null; stdout: string; stderr: string }, status: number, code: string): void {
  expect(res.code, `stdout: ${res.stdout}\nstderr: ${res.stderr}`).toBe(status);
  const lines = res.stderr.trimEnd().split('\n');
  expect(lines, res.stderr).toHaveLength(1);
  expect(lines[0]).toContain(code);
  expect(lines[0]).toMatch(/^idns: /);
}

/** Asserts a failed command with --json: the exit status, and one JSON line on stderr, {"error":{"code","message"}}. */
function expectJsonFailure(res: { code: number | null; stdout: string; stderr: string }, status: number, code: string): void {
  expect(res.code, `stdout: ${res.stdout}\nstderr: ${res.stderr}`).toBe(status);
  expect(res.stdout).toBe('');
  expect(JSON.parse(res.stderr)).toEqual({ error: { code, message: expect.any(String) } });
}

function expectOk(res: { code: number | null; stdout: string; stderr: string }): string {
  expect(res.code, `stdout: ${res.stdout}\nstderr: ${res.stderr}`).toBe(0);
  return res.stdout;
}

const THUMBPRINT = /^[A-Za-z0-9_-]{43}$/;

describe('README quick start', () => {
  it('keygen, register alice@localhost, resolve her with verification, bob does not exist', async () => {
    const { cwd, url, idns } = await setup();

    const kid = expectOk(await idns(['keygen', '--out', 'alice.jwk'])).trim();
    expect(kid).toMatch(THUMBPRINT);
    expect(statSync(join(cwd, 'alice.jwk')).mode & 0o777).toBe(0o600);
    const jwk = JSON.parse(readFileSync(join(cwd, 'alice.jwk'), 'utf8')) as Record<string, string>;
    expect(jwk).toMatchObject({ kty: 'OKP', crv: 'Ed25519' });
    expect(jwk.d).toBeDefined();

    const reg = expectOk(
      await idns(['handle', 'register', 'alice@localhost', '--key', 'alice.jwk', '--endpoint', 'https://social.example/users/alice', '--server', url]),
    );
    expect(reg).toMatch(/register alice@localhost: accepted in zone localhost at serial \d+/);

    const resolved = expectOk(await idns(['resolve', 'alice@localhost', '--server', url]));
    expect(resolved).toContain('https://social.example/users/alice');
    expect(resolved).toContain('verified');
    expect(resolved).toContain(kid);

    // Case is normalised: the same handle.
    expect(expectOk(await idns(['resolve', 'Alice@LOCALHOST', '--server', url]))).toContain('https://social.example/users/alice');

    const bob = await idns(['resolve', 'bob@localhost', '--server', url]);
    expect(bob.code, bob.stderr).toBe(3);
    expect(bob.stdout).toContain('does not exist');
    expect(bob.stdout).toContain('verified');
  });

  it('prints JSON with --json: keygen, zone show, handle register, resolve (answer and denial)', async () => {
    const { data, url, idns } = await setup();

    const key = JSON.parse(expectOk(await idns(['keygen', '--out', 'carol.jwk', '--json']))) as { thumbprint: string; publicKey: Record<string, string> };
    expect(key.thumbprint).toMatch(THUMBPRINT);
    expect(key.publicKey).toMatchObject({ kty: 'OKP', crv: 'Ed25519' });
    expect(key.publicKey).not.toHaveProperty('d');

    const zone = JSON.parse(expectOk(await idns(['zone', 'show', 'localhost', '--data', data, '--json']))) as {
      zone: string;
      serial: number;
      policy: string;
      keyThumbprints: string[];
      record: string;
    };
    expect(zone).toMatchObject({ zone: 'localhost', policy: 'open' });
    expect(zone.keyThumbprints).toHaveLength(1);
    expect(zone.keyThumbprints[0]).toMatch(THUMBPRINT);
    expect(zone.record.split('.')).toHaveLength(3);

    const reg = JSON.parse(
      expectOk(
        await idns([
          'handle',
          'register',
          'carol@localhost',
          '--key',
          'carol.jwk',
          '--endpoint',
          'https://social.example/users/carol',
          '--server',
          url,
          '--json',
        ]),
      ),
    ) as { handle: string; zone: string; serial: number; action: string; op: string };
    expect(reg).toMatchObject({ handle: 'carol@localhost', zone: 'localhost', action: 'register', serial: zone.serial + 1 });

    const answer = JSON.parse(expectOk(await idns(['resolve', 'carol@localhost', '--server', url, '--json']))) as Record<string, unknown>;
    expect(answer).toMatchObject({
      status: 'answer',
      handle: 'carol@localhost',
      endpoint: 'https://social.example/users/carol',
      zone: 'localhost',
      op: reg.op,
      zoneKey: zone.keyThumbprints[0],
    });
    expect((answer.keys as unknown[]).length).toBe(1);

    const denial = await idns(['resolve', 'dave@localhost', '--server', url, '--json']);
    expect(denial.code).toBe(3);
    expect(JSON.parse(denial.stdout)).toMatchObject({ status: 'denial', handle: 'dave@localhost', zone: 'localhost' });
  });
});

describe('handle update, rotate, delete, show and log', () => {
  it('changes a handle through its life; an old key cannot change it after rotation', async () => {
    const { cwd, url, idns } = await setup();
    // Key files made in-process (keygen itself is tested elsewhere) to keep the test fast.
    const [k1, k2, k3] = ['k1.jwk', 'k2.jwk', 'k3.jwk'].map((name) => {
      const key = newUserKey();
      writeUserKey(cwd, name, key);
      return key.kid;
    }) as [string, string, string];
    const h = 'bob@localhost';
    const s = ['--server', url];
    // The server's verified state, checked in-process.
    const resolveJson = async () => {
      const a = await queryAuthoritative(url, h);
      if (a.status !== 'answer') throw new Error(`${h} does not resolve`);
      return { endpoint: a.record.endpoint, keys: a.record.keys.map(thumbprint), serial: a.serial, op: a.record.op };
    };

    expectOk(await idns(['handle', 'register', h, '--key', 'k1.jwk', '--endpoint', 'https://social.example/users/bob', ...s]));

    const upd = JSON.parse(expectOk(await idns(['handle', 'update', h, '--key', 'k1.jwk', '--endpoint', 'https://other.example/bob', ...s, '--json']))) as {
      action: string;
      op: string;
    };
    expect(upd.action).toBe('update');
    let now = await resolveJson();
    expect(now.endpoint).toBe('https://other.example/bob');
    expect(now.op).toBe(upd.op);

    // Adding a key keeps the endpoint; both keys are on the handle.
    expectOk(await idns(['handle', 'update', h, '--key', 'k1.jwk', '--add-key', 'k3.jwk', ...s]));
    expect(await resolveJson()).toMatchObject({ keys: [k1, k3], endpoint: 'https://other.example/bob' });
    // Removing it again, signed by the key being kept.
    expectOk(await idns(['handle', 'update', h, '--key', 'k1.jwk', '--remove-key', k3, ...s]));
    const shownJson = JSON.parse(expectOk(await idns(['handle', 'show', h, ...s, '--json']))) as { endpoint: string; keys: unknown[]; op: string };
    expect(shownJson.keys).toHaveLength(1);
    expect(thumbprint(shownJson.keys[0] as never)).toBe(k1);
    expect(shownJson.op).toBe((await resolveJson()).op);

    const rot = expectOk(await idns(['handle', 'rotate', h, '--key', 'k1.jwk', '--new-key', 'k2.jwk', ...s]));
    expect(rot).toContain('accepted');
    const shown = expectOk(await idns(['handle', 'show', h, ...s]));
    expect(shown).toContain(k2);
    expect(shown).not.toContain(k1);
    now = await resolveJson();
    expect(now.keys).toEqual([k2]);
    expect(now.endpoint).toBe('https://other.example/bob');

    // The old key is no longer on the handle: refused with a stable code, and nothing changes.
    const refused = await idns(['handle', 'update', h, '--key', 'k1.jwk', '--endpoint', 'https://evil.example/bob', ...s]);
    expectFailure(refused, 1, 'unauthorized_key');
    expect(refused.stdout).toBe('');
    const after = await resolveJson();
    expect(after.endpoint).toBe('https://other.example/bob');
    expect(after.op).toBe(now.op);
    expect(after.serial).toBe(now.serial);
    // Nor can it delete.
    expectFailure(await idns(['handle', 'delete', h, '--key', 'k1.jwk', ...s]), 1, 'unauthorized_key');

    // The new key can.
    expectOk(await idns(['handle', 'update', h, '--key', 'k2.jwk', '--endpoint', 'https://social.example/users/bob', ...s]));

    const log = JSON.parse(expectOk(await idns(['handle', 'log', h, ...s, '--json']))) as {
      handle: string;
      operations: { action: string; op: string; seq: number }[];
    };
    expect(log.handle).toBe(h);
    expect(log.operations.map((o) => o.action)).toEqual(['register', 'update', 'update', 'update', 'update', 'update']);
    expect(log.operations.map((o) => o.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(log.operations.at(-1)!.op).toBe((await resolveJson()).op);

    expect(expectOk(await idns(['handle', 'delete', h, '--key', 'k2.jwk', ...s]))).toContain('accepted');
    expect((await queryAuthoritative(url, h)).status).toBe('denial');
    const text = expectOk(await idns(['handle', 'log', h, ...s]));
    expect(text.trim().split('\n')).toHaveLength(7);
    expect(text.trim().split('\n').at(-1)).toContain('delete');
    const finalLog = JSON.parse(expectOk(await idns(['handle', 'log', h, ...s, '--json']))) as { operations: { action: string }[] };
    expect(finalLog.operations.map((o) => o.action).at(-1)).toBe('delete');
    // Changing a deleted handle: it is not found.
    expectFailure(await idns(['handle', 'update', h, '--key', 'k2.jwk', '--endpoint', 'https://x.example/', ...s]), 1, 'handle_not_found');
  });
});

describe('handle links: --profile, --also-known-as, --moved-to', () => {
  it("sets them on register and update, keeps them through other changes, clears them with --no- flags and --moved-to ''", async () => {
    const { cwd, url, idns } = await setup();
    writeUserKey(cwd, 'k.jwk', newUserKey());
    writeUserKey(cwd, 'k2.jwk', newUserKey());
    const h = 'lena@localhost';
    const s = ['--server', url];
    const record = async () => {
      const a = await queryAuthoritative(url, h, new Map(), undefined, { allowLoopbackEndpoints: true });
      if (a.status !== 'answer') throw new Error(`${h} does not resolve`);
      return a.record;
    };
    expectOk(
      await idns([
        'handle',
        'register',
        h,
        '--key',
        'k.jwk',
        '--endpoint',
        'https://social.example/users/lena',
        '--profile',
        'https://social.example/@lena',
        '--also-known-as',
        '@Lena@Example.ORG',
        'https://old.example/users/lena',
        '--moved-to',
        'acct:Lena@Example.org',
        ...s,
      ]),
    );
    expect(await record()).toMatchObject({
      profile: 'https://social.example/@lena',
      alsoKnownAs: ['lena@example.org', 'https://old.example/users/lena'],
      movedTo: 'lena@example.org',
    });
    const shown = expectOk(await idns(['handle', 'show', h, ...s]));
    expect(shown).toContain('moved to lena@example.org');
    expect(shown).toContain('also known as: lena@example.org https://old.example/users/lena');
    expect(JSON.parse(expectOk(await idns(['handle', 'show', h, ...s, '--json'])))).toMatchObject({
      movedTo: 'lena@example.org',
      profile: 'https://social.example/@lena',
    });

    // An update of something else, and a rotation, keep every link.
    expectOk(await idns(['handle', 'update', h, '--key', 'k.jwk', '--endpoint', 'https://social.example/users/lena2', ...s]));
    expectOk(await idns(['handle', 'rotate', h, '--key', 'k.jwk', '--new-key', 'k2.jwk', ...s]));
    expect(await record()).toMatchObject({
      endpoint: 'https://social.example/users/lena2',
      alsoKnownAs: ['lena@example.org', 'https://old.example/users/lena'],
      movedTo: 'lena@example.org',
      profile: 'https://social.example/@lena',
    });

    // --also-known-as replaces the whole list; --moved-to '' clears the move.
    expectOk(await idns(['handle', 'update', h, '--key', 'k2.jwk', '--also-known-as', 'lena@example.net', '--moved-to', '', ...s]));
    let now = await record();
    expect(now.alsoKnownAs).toEqual(['lena@example.net']);
    expect(now).not.toHaveProperty('movedTo');
    expect(now.profile).toBe('https://social.example/@lena');
    expectOk(await idns(['handle', 'update', h, '--key', 'k2.jwk', '--no-also-known-as', '--no-profile', '--moved-to', 'lena@example.net', ...s]));
    now = await record();
    expect(now).not.toHaveProperty('alsoKnownAs');
    expect(now).not.toHaveProperty('profile');
    expect(now.movedTo).toBe('lena@example.net');
    expectOk(await idns(['handle', 'update', h, '--key', 'k2.jwk', '--no-moved-to', ...s]));
    expect(await record()).not.toHaveProperty('movedTo');
    const serial = (await queryAuthoritative(url, h, new Map(), undefined, { allowLoopbackEndpoints: true })).serial;

    // Mistakes: usage errors before anything is sent, the server's refusals with their code; nothing changes.
    for (const args of [
      ['--moved-to', 'x@y', '--no-moved-to'],
      ['--also-known-as', 'a@b.example', '--no-also-known-as'],
      ['--moved-to', 'not a handle'],
      ['--also-known-as', 'bad handle'],
    ]) {
      const res = await idns(['handle', 'update', h, '--key', 'k2.jwk', ...args, ...s]);
      expect([args, res.code]).toEqual([args, 2]);
    }
    const rotate = await idns(['handle', 'rotate', h, '--key', 'k2.jwk', '--new-key', 'k.jwk', '--moved-to', 'x@y.example', ...s]);
    expect(rotate.code).toBe(2);
    expect(rotate.stderr).toContain('handle update');
    expectFailure(await idns(['handle', 'update', h, '--key', 'k2.jwk', '--moved-to', h, ...s]), 1, 'invalid_request');
    expectFailure(await idns(['handle', 'update', h, '--key', 'k2.jwk', '--also-known-as', 'http://social.example/users/lena', ...s]), 1, 'invalid_request');
    expect((await queryAuthoritative(url, h, new Map(), undefined, { allowLoopbackEndpoints: true })).serial).toBe(serial);
  });
});

describe('handle keys: every added key signs (proof of possession)', () => {
  /** A server and four key files: main, phone, laptop, next. */
  async function withKeys() {
    const env = await setup();
    const keys = Object.fromEntries(
      ['main', 'phone', 'laptop', 'next'].map((name) => {
        const key = newUserKey();
        writeUserKey(env.cwd, `${name}.jwk`, key);
        return [name, key];
      }),
    ) as Record<'main' | 'phone' | 'laptop' | 'next', ReturnType<typeof newUserKey>>;
    const keysNow = async (h: string) => {
      const a = await queryAuthoritative(env.url, h);
      if (a.status !== 'answer') throw new Error(`${h} does not resolve`);
      return a.record.keys.map(thumbprint);
    };
    return { ...env, keys, keysNow, s: ['--server', env.url] };
  }

  it('registers extra keys with --add-key, adds one signed by an added key, and rotates with --new-key, each added key signing', async () => {
    const { idns, keys, keysNow, s } = await withKeys();
    const h = 'multi@localhost';
    expectOk(await idns(['handle', 'register', h, '--key', 'main.jwk', '--endpoint', 'https://social.example/m', '--add-key', 'phone.jwk', ...s]));
    expect(await keysNow(h)).toEqual([keys.main.kid, keys.phone.kid]);
    // Signed by the phone key, adding the laptop key.
    expectOk(await idns(['handle', 'update', h, '--key', 'phone.jwk', '--add-key', 'laptop.jwk', ...s]));
    expect(await keysNow(h)).toEqual([keys.main.kid, keys.phone.kid, keys.laptop.kid]);
    expectOk(await idns(['handle', 'rotate', h, '--key', 'main.jwk', '--new-key', 'next.jwk', ...s]));
    expect(await keysNow(h)).toEqual([keys.next.kid]);
  });

  it('refuses a thumbprint or a public key file as an added key, saying the private key file is needed, and sends nothing', async () => {
    const { cwd, url, idns, keys, s } = await withKeys();
    const h = 'thumb@localhost';
    const byThumbprint = await idns([
      'handle',
      'register',
      h,
      '--key',
      'main.jwk',
      '--endpoint',
      'https://social.example/m',
      '--add-key',
      keys.phone.kid,
      ...s,
    ]);
    expect(byThumbprint.code).toBe(2);
    expect(byThumbprint.stderr).toContain('looks like a thumbprint');
    expect(byThumbprint.stderr).toContain('private key file');
    writeFileSync(join(cwd, 'phone.pub.jwk'), JSON.stringify(keys.phone.public), { mode: 0o600 });
    const byPublic = await idns(['handle', 'register', h, '--key', 'main.jwk', '--endpoint', 'https://social.example/m', '--add-key', 'phone.pub.jwk', ...s]);
    expectFailure(byPublic, 1, 'invalid_key');
    expect(byPublic.stderr).toContain('holds only a public key');
    expect((await queryAuthoritative(url, h)).status).toBe('denial');
  });
});

describe('handle recovery keys: --recovery-key, recover', () => {
  it("registers with a recovery key, keeps it through updates, and undoes a stolen key's change with handle recover", async () => {
    const { cwd, data, url, idns } = await setup();
    // The zone's window, set on the data directory of the running server, is published in its zone record.
    expect(expectOk(await idns(['zone', 'recovery-window', 'localhost', '7200', '--data', data]))).toContain('zone localhost: recovery window 7200 s');
    expect(expectOk(await idns(['zone', 'show', 'localhost', '--data', data]))).toContain('recovery window: 7200 s');
    const [, , , k4] = ['k1.jwk', 'r1.jwk', 'thief.jwk', 'k4.jwk'].map((name) => {
      const key = newUserKey();
      writeUserKey(cwd, name, key);
      return key.kid;
    }) as [string, string, string, string];
    const h = 'dana@localhost';
    const s = ['--server', url];
    const reg = JSON.parse(
      expectOk(
        await idns(['handle', 'register', h, '--key', 'k1.jwk', '--recovery-key', 'r1.jwk', '--endpoint', 'https://social.example/dana', ...s, '--json']),
      ),
    ) as { op: string };
    expect(expectOk(await idns(['handle', 'show', h, ...s]))).toContain('recovery keys:');
    // An ordinary update keeps the recovery key; the thief, holding k1, replaces the keys.
    expectOk(await idns(['handle', 'update', h, '--key', 'k1.jwk', '--endpoint', 'https://social.example/dana2', ...s]));
    const kept = JSON.parse(expectOk(await idns(['handle', 'show', h, ...s, '--json']))) as { recovery?: unknown[]; op: string };
    expect(kept.recovery).toHaveLength(1);
    expectOk(await idns(['handle', 'rotate', h, '--key', 'k1.jwk', '--new-key', 'thief.jwk', '--endpoint', 'https://evil.example/', ...s]));
    // Dana goes back to the state after her own update, with a new key, signed by her recovery key.
    const back = await idns([
      'handle',
      'recover',
      h,
      '--key',
      'r1.jwk',
      '--to',
      kept.op,
      '--new-key',
      'k4.jwk',
      '--endpoint',
      'https://social.example/dana',
      ...s,
    ]);
    expect(back.stderr).toBe('');
    expect(back.code).toBe(0);
    const now = await queryAuthoritative(url, h);
    if (now.status !== 'answer') throw new Error('no answer');
    expect(now.record.keys.map(thumbprint)).toEqual([k4]);
    expect(now.record).toMatchObject({ endpoint: 'https://social.example/dana', genesis: reg.op });
    expect(expectOk(await idns(['handle', 'log', h, ...s]))).toMatch(/^4\tupdate\t[A-Za-z0-9_-]{43}\trecovery: back to entry 2$/m);
    // The recovery key cannot go back beyond its own recovery: refused, with the reason.
    const again = await idns(['handle', 'recover', h, '--key', 'r1.jwk', '--to', kept.op, '--new-key', 'k1.jwk', '--endpoint', 'https://x.example/', ...s]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/recovery_refused/);
    expect(again.stderr).toMatch(/a later recovery already went back beyond/);
  });
});

describe('resolve --anchor', () => {
  it('fails verification with a wrong thumbprint and succeeds, anchored, with the zone key', async () => {
    const { cwd, data, url, idns } = await setup();
    writeUserKey(cwd, 'alice.jwk', newUserKey());
    expectOk(await idns(['handle', 'register', 'alice@localhost', '--key', 'alice.jwk', '--endpoint', 'https://social.example/users/alice', '--server', url]));
    const wrong = newUserKey().kid;
    const zone = JSON.parse(expectOk(await idns(['zone', 'show', 'localhost', '--data', data, '--json']))) as { keyThumbprints: string[] };
    const right = zone.keyThumbprints[0]!;

    const bad = await idns(['resolve', 'alice@localhost', '--server', url, '--anchor', `localhost=${wrong}`]);
    expectFailure(bad, 1, 'verification_failed');
    expect(bad.stdout).toBe('');
    // A wrong anchor fails a denial too: it never turns into "does not exist".
    expectFailure(await idns(['resolve', 'nobody@localhost', '--server', url, '--anchor', `localhost=${wrong}`]), 1, 'verification_failed');

    const good = expectOk(await idns(['resolve', 'alice@localhost', '--server', url, '--anchor', `localhost=${right}`]));
    expect(good).toContain('https://social.example/users/alice');
    expect(good).toContain(`anchored key ${right}`);
    // Several anchors for a zone: any one of them will do.
    const json = JSON.parse(
      expectOk(await idns(['resolve', 'alice@localhost', '--server', url, '--anchor', `localhost=${wrong}`, '--anchor', `localhost=${right}`, '--json'])),
    ) as { anchored: boolean; zoneKey: string };
    expect(json).toMatchObject({ anchored: true, zoneKey: right });

    const malformed = await idns(['resolve', 'alice@localhost', '--server', url, '--anchor', 'localhost']);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain('--anchor');
  });
});

describe('zone commands and registration policies', () => {
  it('creates, shows and lists zones; invite codes are single-use; a closed zone takes only the operator', async () => {
    const cwd = newDir();
    const data = join(cwd, 'data');
    const idns = (args: string[]) => runIdns(args, { cwd });

    const created = JSON.parse(
      expectOk(await idns(['zone', 'create', 'example.com', '--server-url', 'http://127.0.0.1:1', '--policy', 'invite', '--data', data, '--json'])),
    ) as {
      zone: string;
      policy: string;
      serial: number;
      keyThumbprints: string[];
      servers: string[];
    };
    expect(created).toMatchObject({ zone: 'example.com', policy: 'invite', servers: ['http://127.0.0.1:1'] });
    expect(created.keyThumbprints).toHaveLength(1);
    const keyFile = join(data, 'keys', 'example.com', `${created.keyThumbprints[0]}.jwk`);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);

    expectFailure(await idns(['zone', 'create', 'example.com', '--server-url', 'http://127.0.0.1:1', '--data', data]), 1, 'zone_exists');
    expect(readFileSync(keyFile, 'utf8')).toContain('"d"');
    const noUrl = await idns(['zone', 'create', 'other.example', '--data', data]);
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr).toContain('--server-url');
    const badPolicy = await idns(['zone', 'create', 'other.example', '--server-url', 'http://127.0.0.1:1', '--policy', 'maybe', '--data', data]);
    expect(badPolicy.code).toBe(2);
    expect(badPolicy.stderr).toContain('--policy');

    const human = expectOk(await idns(['zone', 'create', 'Closed.Example', '--server-url', 'http://127.0.0.1:1', '--policy', 'closed', '--data', data]));
    expect(human).toContain('created zone closed.example');

    const list = JSON.parse(expectOk(await idns(['zone', 'list', '--data', data, '--json']))) as { zone: string; policy: string }[];
    expect(list.map((z) => [z.zone, z.policy])).toEqual([
      ['closed.example', 'closed'],
      ['example.com', 'invite'],
    ]);
    expect(expectOk(await idns(['zone', 'list', '--data', data]))).toMatch(/example\.com\tprimary\tserial \d+\tinvite\t0 handles/);
    const shown = expectOk(await idns(['zone', 'show', 'example.com', '--data', data]));
    expect(shown).toContain('policy: invite');
    expect(shown).toContain(`key thumbprints: ${created.keyThumbprints[0]}`);
    expectFailure(await idns(['zone', 'show', 'missing.example', '--data', data]), 1, 'zone_not_found');

    const server = await serve(data, ['--no-bootstrap']);
    const s = ['--server', server.url];
    for (const name of ['carol', 'dave', 'erin', 'frank']) writeUserKey(cwd, `${name}.jwk`, newUserKey());
    const status = async (handle: string) => (await queryAuthoritative(server.url, handle)).status;
    const register = (handle: string, key: string, more: string[] = []) =>
      idns(['handle', 'register', handle, '--key', key, '--endpoint', `https://social.example/users/${handle.split('@')[0]}`, ...more]);

    // Invite policy: no code, then a fresh code, then the same code again.
    expectFailure(await register('carol@example.com', 'carol.jwk', s), 1, 'invite_required');
    const code = expectOk(await idns(['zone', 'invite', 'example.com', '--data', data])).trim();
    expect(code.length).toBeGreaterThanOrEqual(16);
    const invited = JSON.parse(expectOk(await idns(['zone', 'invite', 'example.com', '--data', data, '--json', '--valid-for', '3600']))) as {
      code: string;
      expiresAt: string;
    };
    expect(invited.code).not.toBe(code);
    expect(Date.parse(invited.expiresAt)).toBeGreaterThan(Date.now());
    expectFailure(await register('carol@example.com', 'carol.jwk', [...s, '--invite', 'not-a-real-code']), 1, 'invite_invalid');
    expectOk(await register('carol@example.com', 'carol.jwk', [...s, '--invite', code]));
    expectFailure(await register('dave@example.com', 'dave.jwk', [...s, '--invite', code]), 1, 'invite_invalid');
    expect(await status('dave@example.com')).toBe('denial');
    expectOk(await register('dave@example.com', 'dave.jwk', [...s, '--invite', invited.code]));

    // Closed: the remote registration is refused; the operator registers through the data directory,
    // while the server runs, and the server answers for the new handle at once.
    expectOk(await idns(['zone', 'policy', 'example.com', 'closed', '--data', data]));
    const another = expectOk(await idns(['zone', 'invite', 'example.com', '--data', data])).trim();
    expectFailure(await register('erin@example.com', 'erin.jwk', s), 1, 'registration_closed');
    expectFailure(await register('erin@example.com', 'erin.jwk', [...s, '--invite', another]), 1, 'registration_closed');
    expect(await status('erin@example.com')).toBe('denial');
    expectOk(await register('erin@example.com', 'erin.jwk', ['--data', data]));
    expect(await status('erin@example.com')).toBe('answer');
    expect(expectOk(await idns(['handle', 'show', 'erin@example.com', '--data', data]))).toContain('https://social.example/users/erin');
    expectFailure(await register('frank@closed.example', 'frank.jwk', s), 1, 'registration_closed');

    // Open again: anyone registers.
    expectOk(await idns(['zone', 'policy', 'example.com', 'open', '--data', data]));
    expectOk(await register('frank@example.com', 'frank.jwk', s));
    const badP = await idns(['zone', 'policy', 'example.com', 'sometimes', '--data', data]);
    expect(badP.code).toBe(2);

    const info = JSON.parse(expectOk(await idns(['zone', 'show', 'example.com', '--data', data, '--json']))) as { handles: number; policy: string };
    expect(info).toMatchObject({ handles: 4, policy: 'open' });
  });
});

describe('zone publish', () => {
  /** The character-strings of a zone-file TXT line, unquoted and unescaped (RFC 1035 5.1). */
  const txtStringsOf = (line: string): string[] => [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1'));

  it("prints the _idns TXT line and the /.well-known/idns document of the zone's keys and servers, which read back to zone show", async () => {
    const data = join(newDir(), 'data');
    // Enough servers that the TXT value passes 255 bytes, one with a quote that the zone file escapes.
    const servers = [...Array.from({ length: 7 }, (_, i) => `https://ns${i}.idns-servers.pub.example/v1-base`), 'https://q.pub.example/a"b'];
    expectOk(await runIdns(['zone', 'create', 'pub.example', '--server-url', ...servers, '--ttl', '1800', '--data', data, '--json']));
    const shown = JSON.parse(expectOk(await runIdns(['zone', 'show', 'pub.example', '--data', data, '--json']))) as {
      keyThumbprints: string[];
      servers: string[];
    };
    expect(shown.servers).toEqual(servers);

    const out = JSON.parse(expectOk(await runIdns(['zone', 'publish', 'Pub.Example', '--data', data, '--json']))) as Record<string, unknown>;
    expect(Object.keys(out)).toEqual(['name', 'txt', 'wellKnown']);
    expect(out.name).toBe('_idns.pub.example.');
    expect(parseTxt(out.txt as string, 'pub.example')).toEqual({ zone: 'pub.example', ds: shown.keyThumbprints, servers });
    expect(parseDocument(out.wellKnown, 'pub.example')).toEqual({ zone: 'pub.example', ds: shown.keyThumbprints, servers });
    expect(out.wellKnown).toEqual({ v: 1, zone: 'pub.example', ds: shown.keyThumbprints, servers });

    const text = expectOk(await runIdns(['zone', 'publish', 'pub.example', '--data', data]));
    const lines = text.trimEnd().split('\n');
    const rr = lines.filter((l) => l.startsWith('_idns.'));
    expect(rr).toHaveLength(1);
    expect(rr[0]).toMatch(/^_idns\.pub\.example\. 1800 IN TXT "/);
    const strings = txtStringsOf(rr[0]!);
    expect(strings.length).toBeGreaterThan(1);
    for (const s of strings) expect(Buffer.byteLength(s)).toBeLessThanOrEqual(255);
    expect(strings.join('')).toBe(out.txt);
    expect(rr[0]).toContain('a\\"b');
    // The document line is the --json wellKnown, ready to serve as is.
    expect(lines.map((l) => (l.startsWith('{') ? JSON.parse(l) : null)).filter(Boolean)).toEqual([out.wellKnown]);
    expect(text).toContain('https://pub.example/.well-known/idns');
  });

  it('refuses the root zone and a zone not held here, with a one-line reason and a non-zero exit', async () => {
    const data = join(newDir(), 'data');
    expectOk(await runIdns(['zone', 'create', '.', '--server-url', 'https://root.example', '--data', data]));
    expectFailure(await runIdns(['zone', 'publish', '.', '--data', data]), 1, 'invalid_zone_name');
    expectFailure(await runIdns(['zone', 'publish', 'missing.example', '--data', data]), 1, 'zone_not_found');
    expectJsonFailure(await runIdns(['zone', 'publish', 'missing.example', '--data', data, '--json']), 1, 'zone_not_found');
  });
});

describe('key files', () => {
  it('keygen refuses to overwrite a file; a key readable by others is refused with how to fix it', async () => {
    const cwd = newDir();
    const idns = (args: string[]) => runIdns(args, { cwd });
    const kid = expectOk(await idns(['keygen', '--out', 'me.jwk'])).trim();
    const before = readFileSync(join(cwd, 'me.jwk'), 'utf8');
    const again = await idns(['keygen', '--out', 'me.jwk']);
    expect(again.code).not.toBe(0);
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
    expect(again.stderr).toContain('me.jwk');
    expect(readFileSync(join(cwd, 'me.jwk'), 'utf8')).toBe(before);
    const noOut = await idns(['keygen']);
    expect(noOut.code).toBe(2);
    expect(noOut.stderr).toContain('--out');

    chmodSync(join(cwd, 'me.jwk'), 0o644);
    const refused = await idns([
      'handle',
      'register',
      'me@localhost',
      '--key',
      'me.jwk',
      '--endpoint',
      'https://social.example/me',
      '--server',
      'http://127.0.0.1:1',
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('chmod 600');
    expect(refused.stderr).toContain('me.jwk');
    expect(refused.stderr).not.toContain(JSON.parse(before).d);

    // Not JSON, or not an Ed25519 key: refused by name, one line, with the secret never echoed.
    writeFileSync(join(cwd, 'junk.jwk'), 'not json', { mode: 0o600 });
    const junk = await idns([
      'handle',
      'register',
      'me@localhost',
      '--key',
      'junk.jwk',
      '--endpoint',
      'https://social.example/me',
      '--server',
      'http://127.0.0.1:1',
    ]);
    expect(junk.code).toBe(1);
    expect(junk.stderr.trim().split('\n')).toHaveLength(1);
    expect(junk.stderr).toContain('junk.jwk');
    expect(kid).toMatch(THUMBPRINT);
  });
});

const HELP: string[][] = [
  ['serve'],
  ['keygen'],
  ['zone'],
  ['zone', 'create'],
  ['zone', 'show'],
  ['zone', 'publish'],
  ['zone', 'invite'],
  ['zone', 'policy'],
  ['zone', 'list'],
  ['handle'],
  ['handle', 'register'],
  ['handle', 'update'],
  ['handle', 'rotate'],
  ['handle', 'delete'],
  ['handle', 'show'],
  ['handle', 'log'],
  ['resolve'],
];

describe('usage', () => {
  it('--help works on every command and subcommand', async () => {
    const cwd = newDir();
    const commands = [...[[], ...HELP].map((cmd) => [...cmd, '--help']), ['-h'], ['zone', '-h'], ['handle', 'log', '-h'], ['resolve', '-h']];
    const results = await Promise.all(commands.map((cmd) => runIdns(cmd, { cwd }).then((r) => ({ cmd, ...r }))));
    for (const r of results) {
      expect(r.code, `idns ${r.cmd.join(' ')}: ${r.stderr}`).toBe(0);
      expect(r.stdout, `idns ${r.cmd.join(' ')}`).toMatch(/usage: idns/);
      expect(r.stderr, `idns ${r.cmd.join(' ')}`).toBe('');
    }
    // Each command's help describes that command.
    const out = (cmd: string) => results.find((r) => r.cmd.join(' ') === `${cmd} --help`)!.stdout;
    expect(out('serve')).toContain('--listen');
    expect(out('keygen')).toContain('--out');
    expect(out('zone create')).toContain('--server-url');
    expect(out('handle register')).toContain('--endpoint');
    expect(out('resolve')).toContain('--anchor');
    // help runs without touching a data directory.
    expect((await runIdns(['zone', 'list', '--help'], { cwd })).code).toBe(0);
    expect(() => statSync(join(cwd, 'data'))).toThrow();
  });

  it('an unknown command, subcommand or option exits 2 with a message on stderr', async () => {
    const cwd = newDir();
    const cases: [string[], string][] = [
      [['frobnicate'], 'frobnicate'],
      [['zone', 'frobnicate'], 'frobnicate'],
      [['handle', 'frobnicate', 'a@localhost'], 'frobnicate'],
      [['keygen', '--out', 'x.jwk', '--bogus'], '--bogus'],
      [['serve', '--bogus'], '--bogus'],
      [['zone', 'create', 'example.com', '--server-url', 'http://127.0.0.1:1', '--bogus'], '--bogus'],
      [['handle', 'register', 'a@localhost', '--key', 'k.jwk', '--bogus'], '--bogus'],
      [['resolve', 'a@localhost', '--bogus'], '--bogus'],
      [['resolve'], 'HANDLE'],
      [['zone', 'show'], 'ZONE'],
    ];
    const results = await Promise.all(cases.map(([args]) => runIdns(args, { cwd })));
    results.forEach((r, i) => {
      const [args, mention] = cases[i]!;
      expect(r.code, `idns ${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stdout, `idns ${args.join(' ')}`).toBe('');
      expect(r.stderr.split('\n')[0], `idns ${args.join(' ')}`).toMatch(/^idns: /);
      expect(r.stderr.split('\n')[0], `idns ${args.join(' ')}`).toContain(mention);
    });
    // Nothing was created by a refused command.
    expect(() => statSync(join(cwd, 'x.jwk'))).toThrow();
    expect(() => statSync(join(cwd, 'data'))).toThrow();
  });

  it("--version; a misspelt option named with the one meant; a subcommand's help shows that subcommand; --json errors are JSON", async () => {
    const cwd = newDir();
    const [version, misspelt, far, createHelp, jsonUsage] = await Promise.all([
      runIdns(['--version'], { cwd }),
      runIdns(['handle', 'register', 'a@localhost', '--key', 'k.jwk', '--endpont', 'https://x.example/'], { cwd }),
      runIdns(['keygen', '--out', 'k.jwk', '--frobnicate'], { cwd }),
      runIdns(['zone', 'create', '--help'], { cwd }),
      runIdns(['keygen', '--outt', 'k.jwk', '--json'], { cwd }),
    ]);
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as { version: string };
    expect(version.stdout).toBe(`idns ${pkg.version}\n`);
    expect(misspelt.code).toBe(2);
    expect(misspelt.stderr.split('\n')[0]).toBe('idns: unknown option --endpont; did you mean --endpoint?');
    expect(far.stderr.split('\n')[0]).toBe('idns: unknown option --frobnicate');
    expect(createHelp.stdout).toContain('--server-url');
    expect(createHelp.stdout).not.toContain('allow-transfer');
    expectJsonFailure(jsonUsage, 2, 'usage');
    expect(JSON.parse(jsonUsage.stderr).error.message).toBe('unknown option --outt; did you mean --out?');
  });

  it('commands that only read never make a data directory: a mistyped --data says so', async () => {
    const cwd = newDir();
    const typo = join(cwd, 'dta');
    const runs = await Promise.all(
      [
        ['zone', 'list'],
        ['zone', 'show', 'example'],
        ['zone', 'digest', 'example'],
        ['zone', 'publish', 'example'],
        ['handle', 'log', 'a@example'],
      ].map((cmd) => runIdns([...cmd, '--data', typo], { cwd }).then((r) => ({ cmd, ...r }))),
    );
    for (const r of runs) {
      expectFailure(r, 1, 'invalid_config');
      expect(r.stderr, r.cmd.join(' ')).toContain('is not an idns data directory');
    }
    expect(() => statSync(typo)).toThrow();
  });

  it('a missing command or subcommand is an error: exit 2, usage on stderr, nothing on stdout', async () => {
    const results = await Promise.all([[], ['zone'], ['handle']].map((args) => runIdns(args).then((r) => ({ args, ...r }))));
    for (const r of results) {
      expect(r.code, `idns ${r.args.join(' ')}`).toBe(2);
      expect(r.stderr, `idns ${r.args.join(' ')}`).toMatch(/usage: idns/);
      expect(r.stdout, `idns ${r.args.join(' ')}`).toBe('');
    }
  });

  it('a bad handle is refused with a one-line reason', async () => {
    const res = await runIdns(['resolve', 'not a handle', '--server', 'http://127.0.0.1:1']);
    expectFailure(res, 1, 'invalid_handle');
  });
});

describe('serve start-up failures', () => {
  it('a port in use gives a one-line reason and a non-zero exit, not a stack trace', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => blocker.close(resolve)));
    const port = (blocker.address() as { port: number }).port;
    const res = await runIdns(['serve', '--listen', `127.0.0.1:${port}`, '--data', join(newDir(), 'data'), '--log-level', 'warn']);
    expect(res.code).not.toBe(0);
    expect(res.code).not.toBeNull();
    const lines = res.stderr.trim().split('\n');
    expect(lines, res.stderr).toHaveLength(1);
    expect(lines[0]).toContain(String(port));
    expect(lines[0]).not.toContain('unexpected error');
  });

  it('a data directory that is a file gives a one-line reason', async () => {
    const file = join(newDir(), 'not-a-dir');
    writeFileSync(file, 'x');
    for (const args of [
      ['serve', '--listen', '127.0.0.1:0', '--data', file, '--log-level', 'warn'],
      ['zone', 'list', '--data', file],
    ]) {
      const res = await runIdns(args);
      expect(res.code, args.join(' ')).toBe(1);
      const lines = res.stderr.trim().split('\n');
      expect(lines, res.stderr).toHaveLength(1);
      expect(lines[0]).toContain(file);
      expect(lines[0]).not.toContain('unexpected error');
    }
  });
});

describe('idns witness show', () => {
  it('makes the witness key on first use (0600) and prints its name, thumbprint and public key, the same each time; refuses a data directory that does not exist', async () => {
    const cwd = newDir();
    const data = join(cwd, 'data');
    const missing = await runIdns(['witness', 'show', '--data', data, '--json'], { cwd });
    expectJsonFailure(missing, 1, 'invalid_config');
    expect(missing.stderr).toMatch(/does not exist/);
    mkdirSync(data);
    const first = await runIdns(['witness', 'show', '--data', data, '--json'], { cwd });
    expect(first.code, first.stderr).toBe(0);
    const shown = JSON.parse(first.stdout) as { name: string; thumbprint: string; publicKey: { kty: string; crv: string; x: string } };
    expect(shown.thumbprint).toBe(thumbprint(shown.publicKey as Parameters<typeof thumbprint>[0]));
    expect(shown.name).toBe(`idns-witness/${shown.thumbprint}`);
    expect(statSync(join(data, 'keys', 'witness.jwk')).mode & 0o777).toBe(0o600);
    const again = await runIdns(['witness', 'show', '--data', data], { cwd });
    expect(again.stdout).toContain(`thumbprint: ${shown.thumbprint}`);
    expect(again.stdout).not.toContain('made now');
  });
});

describe('zone bump-serial and unfence', () => {
  it('bump-serial moves a primary serial forward (not back); unfence refuses a zone that is not fenced', async () => {
    const cwd = newDir();
    const data = join(cwd, 'data');
    const idns = (args: string[]) => runIdns(args, { cwd });
    const created = JSON.parse(expectOk(await idns(['zone', 'create', 'example.com', '--server-url', 'https://ns.example.com', '--data', data, '--json']))) as {
      serial: number;
    };
    const bumped = JSON.parse(expectOk(await idns(['zone', 'bump-serial', 'example.com', String(created.serial + 500), '--data', data, '--json'])));
    expect(bumped).toEqual({ zone: 'example.com', serial: created.serial + 500 });
    expectFailure(await idns(['zone', 'bump-serial', 'example.com', String(created.serial + 10), '--data', data]), 1, 'invalid_request');
    const shown = JSON.parse(expectOk(await idns(['zone', 'show', 'example.com', '--data', data, '--json']))) as { serial: number; fencedBy: unknown };
    expect(shown).toMatchObject({ serial: created.serial + 500, fencedBy: null });
    expectFailure(await idns(['zone', 'unfence', 'example.com', '--data', data]), 1, 'invalid_request');
  });
});

describe('zone delete and re-pointing a secondary', () => {
  it('delete needs --yes and removes the zone; secondary on a held zone re-points it without --ds', async () => {
    const cwd = newDir();
    const data = join(cwd, 'data');
    const idns = (args: string[]) => runIdns(args, { cwd });
    const created = JSON.parse(expectOk(await idns(['zone', 'create', 'example.com', '--server-url', 'https://ns.example.com', '--data', data, '--json']))) as {
      keyThumbprints: string[];
    };
    const refused = await idns(['zone', 'delete', 'example.com', '--data', data]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('--yes');
    expectOk(await idns(['zone', 'show', 'example.com', '--data', data]));
    expectOk(await idns(['zone', 'delete', 'example.com', '--yes', '--data', data]));
    expectFailure(await idns(['zone', 'show', 'example.com', '--data', data]), 1, 'zone_not_found');
    // A secondary, then re-pointed in place: the keys it trusts stay.
    const kid = created.keyThumbprints[0]!;
    expectOk(await idns(['zone', 'secondary', 'copy.example', '--primary', 'https://a.example', '--ds', kid, '--data', data]));
    const moved = JSON.parse(expectOk(await idns(['zone', 'secondary', 'copy.example', '--primary', 'https://b.example', '--data', data, '--json']))) as {
      primaries: string[];
    };
    expect(moved.primaries).toEqual(['https://b.example']);
    expect(expectOk(await idns(['zone', 'show', 'copy.example', '--data', data]))).toContain(`copied from: https://b.example (trusting keys ${kid})`);
  });
});

describe('idns ctl: the running server through its control socket', () => {
  it('status, refresh, retransfer, notify and reload; the socket is 0600 and goes with the server', async () => {
    const cwd = newDir();
    const dirP = join(cwd, 'p');
    const dirS = join(cwd, 's');
    const primary = await serve(dirP, ['--no-bootstrap']);
    const secondary = await serve(dirS, ['--no-bootstrap']);
    const idns = (args: string[]) => runIdns(args, { cwd });
    const created = JSON.parse(expectOk(await idns(['zone', 'create', 'example', '--server-url', primary.url, secondary.url, '--data', dirP, '--json']))) as {
      keyThumbprints: string[];
    };
    expectOk(await idns(['zone', 'secondary', 'example', '--primary', primary.url, '--ds', created.keyThumbprints[0]!, '--data', dirS]));
    expect(statSync(join(dirS, 'control.sock')).mode & 0o777).toBe(0o600);

    // refresh: the secondary checks now (its first copy, if the scan has not taken it yet).
    const refreshed = JSON.parse(expectOk(await idns(['ctl', 'refresh', 'example', '--data', dirS, '--json']))) as { serial: number; lastError: null };
    expect(refreshed).toMatchObject({ serial: 1, lastError: null });
    const before = JSON.parse(expectOk(await idns(['ctl', 'status', '--data', dirS, '--json']))) as { zones: { zone: string; transfers: { full: number } }[] };
    const fullBefore = before.zones.find((z) => z.zone === 'example')!.transfers.full;
    const again = JSON.parse(expectOk(await idns(['ctl', 'retransfer', 'example', '--data', dirS, '--json']))) as { transfers: { full: number } };
    expect(again, JSON.stringify(again)).toMatchObject({ lastError: null });
    expect(again.transfers.full).toBe(fullBefore + 1);
    expect(expectOk(await idns(['ctl', 'status', '--data', dirS]))).toMatch(/example: secondary, serial 1, source at 1/);

    const notified = JSON.parse(expectOk(await idns(['ctl', 'notify', 'example', '--data', dirP, '--json']))) as { targets: string[] };
    expect(notified.targets).toEqual([secondary.url]);
    expect(JSON.parse(expectOk(await idns(['ctl', 'reload', '--data', dirP, '--json'])))).toEqual({ tls: 'not serving HTTPS' });
    expectFailure(await idns(['ctl', 'refresh', 'example', '--data', dirP]), 1, 'invalid_request');

    // A key rollover under way shows in the primary's status, with what it waits for.
    expectOk(await idns(['zone', 'rekey', 'example', '--data', dirP]));
    expect(expectOk(await idns(['ctl', 'status', '--data', dirP]))).toMatch(
      /example: primary, serial \d+, key rollover publishing since .*waiting for the operator to confirm/,
    );
    const status = JSON.parse(expectOk(await idns(['ctl', 'status', '--data', dirP, '--json']))) as { zones: { rollover: { phase: string } | null }[] };
    expect(status.zones[0]!.rollover).toMatchObject({ phase: 'publishing' });
    // Abandoned before the new key signs anything.
    expectOk(await idns(['zone', 'rekey', 'example', '--cancel', '--data', dirP]));
    expect(expectOk(await idns(['ctl', 'status', '--data', dirP]))).toMatch(/example: primary, serial \d+, key rollover abandoned since/);
    const both = await idns(['zone', 'rekey', 'example', '--cancel', '--submitted', '--data', dirP]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('give --submitted or --cancel, not both');

    await primary.stop('SIGTERM');
    expect(() => statSync(join(dirP, 'control.sock'))).toThrow();
    expectFailure(await idns(['ctl', 'status', '--data', dirP]), 1, 'invalid_config');
  });
});

describe('fencing with real processes', () => {
  it('an old primary restarted after its secondary was promoted takes no writes and points to the new primary', async () => {
    const cwd = newDir();
    const dirA = join(cwd, 'a');
    const dirB = join(cwd, 'b');
    const idns = (args: string[]) => runIdns(args, { cwd });
    let a = await serve(dirA, ['--no-bootstrap']);
    const b = await serve(dirB, ['--no-bootstrap']);
    const created = JSON.parse(
      expectOk(await idns(['zone', 'create', 'example', '--server-url', a.url, b.url, '--policy', 'open', '--data', dirA, '--json'])),
    ) as {
      keyThumbprints: string[];
    };
    expectOk(await idns(['zone', 'secondary', 'example', '--primary', a.url, '--ds', created.keyThumbprints[0]!, '--data', dirB]));
    expectOk(await idns(['ctl', 'refresh', 'example', '--data', dirB]));

    // A stops; B is promoted with A's key (its key directory standing in for a backup).
    await a.stop('SIGTERM');
    expectOk(await idns(['zone', 'promote', 'example', '--key-dir', join(dirA, 'keys', 'example'), '--primary-url', b.url, '--data', dirB]));
    const promoted = JSON.parse(expectOk(await idns(['ctl', 'status', '--data', dirB, '--json']))) as { zones: { zone: string; serial: number }[] };
    const newSerial = promoted.zones.find((z) => z.zone === 'example')!.serial;

    // A comes back: it learns of B at start-up and fences the zone.
    a = await serve(dirA, ['--no-bootstrap']);
    const deadline = Date.now() + 20_000;
    type Fence = { primary: string; serial: number } | null;
    let fenced: Fence = null;
    while (fenced === null) {
      const shown = JSON.parse(expectOk(await idns(['zone', 'show', 'example', '--data', dirA, '--json']))) as { fencedBy: Fence };
      fenced = shown.fencedBy;
      if (fenced === null && Date.now() > deadline) throw new Error('the restarted primary never fenced itself');
      if (fenced === null) await new Promise((r) => setTimeout(r, 100));
    }
    expect(fenced).toEqual({ primary: b.url, serial: newSerial });
    const late = newUserKey();
    const write = await fetch(`${a.url}/v1/handles`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        request: signChangeRequest({ action: 'register', handle: 'late@example', endpoint: 'https://home.example/late', keys: [late.public] }, late.private),
      }),
      redirect: 'manual',
    });
    expect(write.status).toBe(307);
    expect(write.headers.get('location')).toBe(`${b.url}/v1/handles`);
    expect(expectOk(await idns(['zone', 'show', 'example', '--data', dirA]))).toContain('FENCED');
  });
});
