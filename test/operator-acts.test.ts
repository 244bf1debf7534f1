import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { requestId } from '../src/records/change-request.js';
import { assureRecordFollows, emptyHistory, verifyHistory } from '../src/records/history-chain.js';
import { publicKeyObject, type PublicJwk } from '../src/records/keys.js';
import { newUserKey, writeUserKey } from './support/keys.js';
import { get, postChange, putChange } from './support/http.js';
import { runIdns } from './support/process.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

// The zone operator's takedown and court-ordered transfer (issue 17, item 4): operator entries in the
// handle's history, signed by the zone key, made with the CLI on a running server's data directory.

let s: TestServer;
let zoneKeys: Map<string, ReturnType<typeof publicKeyObject>>;
const owner = newUserKey();

beforeAll(async () => {
  s = await startTestServer({ zones: { 'example.com': {} } });
  const record = JSON.parse(Buffer.from(s.ctx.zones.info('example.com').record.split('.')[1]!, 'base64url').toString()) as { keys: PublicJwk[] };
  zoneKeys = new Map(s.ctx.zones.info('example.com').keyThumbprints.map((kid, i) => [kid, publicKeyObject(record.keys[i]!)]));
});
afterAll(async () => s.close());

async function registered(handle: string): Promise<string> {
  const reg = signChangeRequest({ action: 'register', handle, endpoint: 'https://social.example/u', keys: [owner.public] }, owner.private);
  expect((await postChange(s.url, reg)).status).toBe(201);
  return requestId(reg);
}

async function history(handle: string) {
  const log = await get(s.url, `/v1/handles/${handle}/log`);
  expect(log.status).toBe(200);
  return log.json.operations as { seq: number; op: string; action: string; request: string }[];
}

const payloadOf = (jws: string) => JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;

describe('operator acts', () => {
  it('takedown: the handle is gone, its history says the operator took it down and why, and nobody may register it during the cool-down', async () => {
    const h = 'abuser@example.com';
    const op = await registered(h);
    const r = await runIdns(['handle', 'takedown', h, '--reason', 'spam, ticket 42', '--data', s.dataDir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ handle: h, action: 'takedown', zone: 'example.com' });

    expect((await get(s.url, `/v1/resolve/${h}`)).status).toBe(404);
    const entries = await history(h);
    expect(entries.map((e) => e.action)).toEqual(['register', 'takedown']);
    expect(payloadOf(entries[1]!.request)).toMatchObject({ action: 'takedown', handle: h, prev: op, reason: 'spam, ticket 42' });
    const verified = verifyHistory(
      emptyHistory(h),
      entries.map((e) => [e.seq, e.request] as const),
      { name: 'example.com', keys: zoneKeys },
    );
    expect(verified).toMatchObject({ seq: 2, state: null, genesis: null });
    // idns handle log says who did it, and why.
    const log = await runIdns(['handle', 'log', h, '--server', s.url]);
    expect(log.stdout.trim().split('\n')[1]).toMatch(/^2\ttakedown\t[A-Za-z0-9_-]{43}\tby the zone's operator: spam, ticket 42$/);

    // Not even the former owner's key may take it back during the cool-down.
    const back = signChangeRequest({ action: 'register', handle: h, endpoint: 'https://social.example/back', keys: [owner.public] }, owner.private);
    const res = await postChange(s.url, back);
    expect(res.status).toBe(409);
    expect(res.json.error).toMatchObject({ code: 'handle_reserved' });
    expect(res.json.error.message).toContain("taken down by the zone's operator");
  });

  it("transfer: the handle gets the new owner's keys and endpoint, operator-asserted until the new owner changes it; the old owner's key no longer works", async () => {
    const h = 'disputed@example.com';
    const first = await registered(h);
    const heir = newUserKey();
    const keyFile = join(s.dataDir, 'heir.pub.jwk');
    writeFileSync(keyFile, JSON.stringify(heir.public));
    const r = await runIdns([
      'handle',
      'transfer',
      h,
      '--endpoint',
      'https://court.example/heir',
      '--public-key',
      keyFile,
      '--reason',
      'court order 2026/117',
      '--data',
      s.dataDir,
      '--json',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const transfer = JSON.parse(r.stdout) as { op: string };

    const answer = await get(s.url, `/v1/resolve/${h}`);
    const record = payloadOf(answer.json.record as string) as { handle: string; op: string; endpoint: string; keys: PublicJwk[] };
    expect(record).toMatchObject({ endpoint: 'https://court.example/heir', keys: [heir.public], op: transfer.op });
    const entries = await history(h);
    expect(entries.map((e) => e.action)).toEqual(['register', 'transfer']);
    expect(payloadOf(entries[1]!.request)).toMatchObject({ prev: first, reason: 'court order 2026/117' });
    const zone = { name: 'example.com', keys: zoneKeys };
    const verified = verifyHistory(
      emptyHistory(h),
      entries.map((e) => [e.seq, e.request] as const),
      zone,
    );
    expect(verified).toMatchObject({ operatorAsserted: true, genesis: transfer.op });
    assureRecordFollows(verified, record);

    const stale = signChangeRequest(
      { action: 'update', handle: h, endpoint: 'https://social.example/mine', keys: [owner.public], prev: transfer.op },
      owner.private,
    );
    expect((await putChange(s.url, h, stale)).json.error.code).toBe('unauthorized_key');
    const own = signChangeRequest(
      { action: 'update', handle: h, endpoint: 'https://social.example/heir', keys: [heir.public], prev: transfer.op },
      heir.private,
    );
    expect((await putChange(s.url, h, own)).status).toBe(200);
    const after = await history(h);
    expect(
      verifyHistory(
        verified,
        after.slice(2).map((e) => [e.seq, e.request] as const),
        zone,
      ).operatorAsserted,
    ).toBe(false);
  });

  it('a secondary copies operator entries and serves the same history', async () => {
    const secondary = await startTestServer();
    try {
      secondary.ctx.zones.createSecondary('example.com', { primaries: [s.url], ds: s.ctx.zones.info('example.com').keyThumbprints });
      await secondary.ctx.replicator.checkNow('example.com');
      for (const h of ['abuser@example.com', 'disputed@example.com']) {
        expect((await get(secondary.url, `/v1/handles/${h}/log`)).json).toEqual((await get(s.url, `/v1/handles/${h}/log`)).json);
      }
    } finally {
      await secondary.close();
    }
  });

  it('the CLI refuses an operator act without --data, without a reason, or of a handle that does not exist', async () => {
    expect((await runIdns(['handle', 'takedown', 'x@example.com', '--reason', 'r'])).stderr).toContain('needs --data DIR');
    const noReason = await runIdns(['handle', 'takedown', 'x@example.com', '--data', s.dataDir]);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toContain('--reason TEXT is required');
    const missing = await runIdns(['handle', 'takedown', 'nobody@example.com', '--reason', 'r', '--data', s.dataDir]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('handle_not_found');
  });
});

describe('idns handle watch (issue 18, item 4): the owner checks that every change since the last run was theirs', () => {
  it("exits 0 while every new entry is the owner's, 3 for an operator entry, another key or a rewritten history, 1 when it cannot check", async () => {
    const dir = tempDir('idns-watch-');
    const ownerFile = writeUserKey(dir.dir, 'owner.jwk', owner);
    const state = join(dir.dir, 'watch.json');
    const h = 'watched@example.com';
    const watch = async (extra: string[] = []) => {
      const r = await runIdns(['handle', 'watch', h, '--key', ownerFile, '--server', s.url, '--state', state, '--json', ...extra]);
      return {
        code: r.code,
        stderr: r.stderr,
        out: r.code === 0 || r.code === 3 ? (JSON.parse(r.stdout) as { checked: number; allMine: boolean; foreign: { seq: number; by: string }[] }) : null,
      };
    };
    try {
      const op = await registered(h);
      expect(await watch()).toMatchObject({ code: 0, out: { checked: 1, allMine: true, foreign: [] } });
      // The owner's own update: still all theirs; only the new entry is checked.
      const update = signChangeRequest({ action: 'update', handle: h, endpoint: 'https://social.example/u2', keys: [owner.public], prev: op }, owner.private);
      expect((await putChange(s.url, h, update)).status).toBe(200);
      expect(await watch()).toMatchObject({ code: 0, out: { checked: 1, allMine: true } });

      // The operator gives the handle to someone else (a court order): caught, with who did it.
      const other = newUserKey();
      const otherPublic = join(dir.dir, 'other.pub.jwk');
      writeFileSync(otherPublic, JSON.stringify(other.public));
      const moved = await runIdns([
        'handle',
        'transfer',
        h,
        '--endpoint',
        'https://else.example/u',
        '--public-key',
        otherPublic,
        '--reason',
        'court order 7',
        '--data',
        s.dataDir,
      ]);
      expect(moved.code, moved.stderr).toBe(0);
      const caught = await watch();
      expect(caught).toMatchObject({ code: 3, out: { allMine: false, foreign: [{ seq: 3, by: expect.stringContaining("zone's operator") }] } });
      // Reported once: the next run looks at what came after.
      expect(await watch()).toMatchObject({ code: 0, out: { checked: 0 } });

      // A change signed by a key that is not the owner's.
      const third = (await history(h)).at(-1)!.op;
      const byOther = signChangeRequest({ action: 'update', handle: h, endpoint: 'https://else.example/u2', keys: [other.public], prev: third }, other.private);
      expect((await putChange(s.url, h, byOther)).status).toBe(200);
      const notMine = await watch();
      expect(notMine).toMatchObject({ code: 3, out: { foreign: [{ seq: 4, by: expect.stringContaining('not one of yours') }] } });

      // The history seen last time is not the one served now (a state naming another entry 4).
      const saved = JSON.parse(readFileSync(state, 'utf8')) as { op: string };
      writeFileSync(state, JSON.stringify({ ...saved, op: `${'A'.repeat(42)}E` }));
      expect(await watch()).toMatchObject({ code: 3, out: { foreign: [{ seq: 4, by: expect.stringContaining('rewritten') }] } });

      // No server to ask: it could not check.
      const down = await watch(['--server', 'http://127.0.0.1:9']);
      expect(down.code).toBe(1);
      expect((JSON.parse(down.stderr) as { error: { code: string } }).error.code).toBe('network_error');
    } finally {
      dir.remove();
    }
  });
});

describe("idns handle watch follows the zone's log", () => {
  it('checks each new entry is in the largest checkpoint, that the one seen last time is a prefix of it, and, with --witness, that witnesses cosigned it', async () => {
    const dir = tempDir('idns-watch-log-');
    const ownerFile = writeUserKey(dir.dir, 'owner.jwk', owner);
    const state = join(dir.dir, 'watch.json');
    const h = 'logged@example.com';
    const watch = (extra: string[] = []) => runIdns(['handle', 'watch', h, '--key', ownerFile, '--server', s.url, '--state', state, '--json', ...extra]);
    try {
      await registered(h);
      const first = await watch();
      expect(first.code, first.stderr).toBe(0);
      const out = JSON.parse(first.stdout) as { checkpoint: { size: number; server: string; witnessed: boolean } };
      expect(out.checkpoint).toMatchObject({ server: s.url, witnessed: false });
      const saved = JSON.parse(readFileSync(state, 'utf8')) as { checkpoint: { size: number; root: string } };
      expect(saved.checkpoint.size).toBe(out.checkpoint.size);
      // A checkpoint remembered that the zone's log does not extend: the log forked since the last run.
      writeFileSync(state, JSON.stringify({ ...saved, checkpoint: { size: saved.checkpoint.size, root: Buffer.alloc(32, 7).toString('base64') } }));
      const forked = await watch();
      expect(forked.code).toBe(3);
      expect(forked.stdout).toContain("the zone's log forked: the checkpoint seen last time");
      // Requiring a witness that never cosigned the zone: it could not check.
      const unwitnessed = await watch(['--witness', `${'A'.repeat(42)}E`]);
      expect(unwitnessed.code).toBe(1);
      expect(unwitnessed.stderr).toMatch(/cosigned by 0 of the witnesses required/);
      const usage = await watch(['--witness-quorum', '1']);
      expect(usage.code).toBe(2);
    } finally {
      dir.remove();
    }
  });
});

describe('idns handle watch checks the record the zone gives resolvers', () => {
  it("exits 3 when the zone's map keeps an older record of the handle current (a key holder re-signs the checkpoint), 0 while it is the newest entry's", async () => {
    const dir = tempDir('idns-watch-map-');
    const t = await startTestServer({ zones: { 'example.com': {} } });
    const h = 'mapped@example.com';
    const args = ['handle', 'watch', h, '--key', writeUserKey(dir.dir, 'owner.jwk', owner), '--server', t.url, '--state', join(dir.dir, 'w.json'), '--json'];
    try {
      const reg = signChangeRequest({ action: 'register', handle: h, endpoint: 'https://social.example/u', keys: [owner.public] }, owner.private);
      expect((await postChange(t.url, reg)).status).toBe(201);
      const content = t.ctx.zones.require('example.com').content;
      const older = t.ctx.store.records.jws(content, 'handle', h)!;
      const upd = signChangeRequest(
        { action: 'update', handle: h, endpoint: 'https://social.example/moved', keys: [owner.public], prev: requestId(reg) },
        owner.private,
      );
      expect((await putChange(t.url, h, upd)).status).toBe(200);
      const fine = await runIdns(args);
      expect(fine.code, fine.stdout + fine.stderr).toBe(0);

      // The key holder puts the older record back, and signs a checkpoint of the same tree naming the
      // map that holds it: every resolver would be shown the older state, proven current.
      const { zoneKey } = await import('./support/fake-server.js');
      const { signCheckpoint } = await import('../src/transparency/zone-log.js');
      const { parseCheckpoint } = await import('../src/transparency/checkpoint.js');
      const { parseNote } = await import('../src/transparency/note.js');
      const row = t.ctx.zones.require('example.com');
      const key = zoneKey(t.dataDir, 'example.com', t.ctx.zones.info('example.com').keyThumbprints[0]!);
      const tree = parseCheckpoint(parseNote(row.checkpoint).text);
      t.ctx.store.write(() => {
        t.ctx.store.records.put(content, 'handle', h, row.version, row.recordExp, older);
        const root = t.ctx.store.maps.rebuild(content);
        t.ctx.store.zones.setCheckpoint('example.com', signCheckpoint('example.com', tree.size, tree.root, root, key));
        t.ctx.store.markChanged('example.com');
      });
      const caught = await runIdns(args);
      expect(caught.code, caught.stdout + caught.stderr).toBe(3);
      expect((JSON.parse(caught.stdout) as { foreign: { by: string }[] }).foreign).toContainEqual(
        expect.objectContaining({ by: expect.stringMatching(/its record of entry 1, current in the zone's map, where the newest entry is 2/) }),
      );
    } finally {
      await t.close();
      dir.remove();
    }
  });
});

describe('idns handle watch against a fork', () => {
  it("exits 3 when two servers of the zone show different histories of the handle (a copy of the primary's data with its own later changes)", async () => {
    const dir = tempDir('idns-watch-fork-');
    const original = await startTestServer({ zones: { 'fork.example': { policy: 'open' } } });
    try {
      const h = 'victim@fork.example';
      const reg = signChangeRequest({ action: 'register', handle: h, endpoint: 'https://social.example/v', keys: [owner.public] }, owner.private);
      expect((await postChange(original.url, reg)).status).toBe(201);
      // The copy: the same database and zone key, started elsewhere (its zone record still lists the original).
      original.ctx.store.checkpoint();
      cpSync(original.dataDir, join(dir.dir, 'copy'), { recursive: true });
      const copy = await startTestServer({ dataDir: join(dir.dir, 'copy') });
      try {
        const honest = signChangeRequest(
          { action: 'update', handle: h, endpoint: 'https://social.example/v2', keys: [owner.public], prev: requestId(reg) },
          owner.private,
        );
        expect((await putChange(original.url, h, honest)).status).toBe(200);
        // On the copy, the owner's key is not needed for what the holder of the zone key does as operator.
        const other = newUserKey();
        const otherPublic = join(dir.dir, 'other.pub.jwk');
        writeFileSync(otherPublic, JSON.stringify(other.public));
        const forked = await runIdns([
          'handle',
          'transfer',
          h,
          '--endpoint',
          'https://evil.example/v',
          '--public-key',
          otherPublic,
          '--reason',
          'x',
          '--data',
          copy.dataDir,
        ]);
        expect(forked.code, forked.stderr).toBe(0);
        const ownerFile = writeUserKey(dir.dir, 'owner.jwk', owner);
        const r = await runIdns(['handle', 'watch', h, '--key', ownerFile, '--server', copy.url, '--state', join(dir.dir, 'w.json'), '--json']);
        expect(r.code, r.stderr).toBe(3);
        const out = JSON.parse(r.stdout) as { servers: string[]; foreign: { seq: number; by: string }[] };
        expect(out.servers).toEqual([copy.url, original.url]);
        expect(out.foreign).toContainEqual(expect.objectContaining({ seq: 2, by: expect.stringContaining('shows another entry 2') }));
        // Their logs do not extend one another either: the same size, two roots.
        expect(out.foreign).toContainEqual(expect.objectContaining({ by: expect.stringContaining("the zone's log forked") }));
      } finally {
        await copy.close();
      }
    } finally {
      await original.close();
      dir.remove();
    }
  });
});

describe('idns handle watch reads within bounds', () => {
  it("an answer for the handle, or the zone's record, past 256 KiB is no answer (exit 1, could not check); a proof past 64 hashes proves nothing (exit 3); within them, checked", async () => {
    const dir = tempDir('idns-watch-bound-');
    // Stands for the zone's server, passing its answers on, changed by `tamper`.
    let tamper: (url: string, body: Record<string, unknown>) => Record<string, unknown> = (_, body) => body;
    const proxy = createServer((req, res) => {
      void fetch(`${s.url}${req.url}`)
        .then((r) => r.json())
        .then((body) => res.end(JSON.stringify(tamper(req.url!, body as Record<string, unknown>))));
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      const h = 'bounded@example.com';
      await registered(h);
      const args = ['handle', 'watch', h, '--key', writeUserKey(dir.dir, 'owner.jwk', owner), '--server', url, '--state', join(dir.dir, 'w.json'), '--json'];
      const padded = (path: (url: string) => boolean) => (u: string, body: Record<string, unknown>) =>
        path(u) ? { ...body, pad: 'x'.repeat(300 * 1024) } : body;
      for (const [what, path] of [
        ['the answer', (u: string) => u.startsWith('/v1/resolve/')],
        ["the zone's record", (u: string) => u === '/v1/zones/example.com'],
      ] as const) {
        tamper = padded(path);
        const tooBig = await runIdns(args);
        expect(tooBig.code, what).toBe(1);
        expect(tooBig.stderr, what).toMatch(/bytes|too large|limit/i);
      }
      // An inclusion proof of 65 hashes (each a real one): more than any tree needs, refused unread.
      tamper = (u, body) =>
        u.includes('/log/inclusion') ? { ...body, proof: Array.from({ length: 65 }, () => (body.proof as string[])[0] ?? body.hash) } : body;
      const long = await runIdns(args);
      expect(long.code, long.stderr).toBe(3);
      expect((JSON.parse(long.stdout) as { foreign: { by: string }[] }).foreign).toContainEqual(
        expect.objectContaining({ by: expect.stringContaining('at most 64 hashes') }),
      );
      tamper = (_, body) => body;
      const fine = await runIdns(args);
      expect(fine.code, fine.stderr).toBe(0);
    } finally {
      proxy.closeAllConnections();
      await new Promise((r) => proxy.close(r));
      dir.remove();
    }
  });
});
