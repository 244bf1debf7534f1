import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { signChangeRequest } from '../src/client/requests.js';
import { requestId } from '../src/records/change-request.js';
import { verifyConsistency, verifyInclusion } from '../src/transparency/merkle.js';
import { NOTE_ED25519, rawKey, verifierKey } from '../src/transparency/note.js';
import { logOrigin, openCheckpoint } from '../src/transparency/zone-log.js';
import type { PublicJwk } from '../src/records/keys.js';
import { newUserKey } from './support/keys.js';
import { startTestServer, type TestServer } from './support/server.js';
import { startFakeServer, type FakeServer } from './support/fake-server.js';

/**
 * The zone's log (docs/protocol.md §13) as every server keeps and serves it: one leaf per change, a
 * checkpoint per version signed by the zone key, proofs against any size, the same tree on secondaries
 * (full and incremental transfers, promotion), and transfers whose log does not add up refused.
 */

const owner = newUserKey();
const started: TestServer[] = [];
const fakes: FakeServer[] = [];

afterEach(async () => {
  for (const f of fakes.splice(0)) await f.close();
  for (const s of started.splice(0).reverse()) await s.close();
});

async function server(options: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const s = await startTestServer(options);
  started.push(s);
  return s;
}

async function register(s: TestServer, handle: string): Promise<string> {
  const request = signChangeRequest({ action: 'register', handle, endpoint: `https://home.example/${handle}`, keys: [owner.public] }, owner.private);
  await s.ctx.changes.submit(request);
  return request;
}

async function update(s: TestServer, handle: string, prev: string): Promise<string> {
  const request = signChangeRequest(
    { action: 'update', handle, endpoint: `https://moved.example/${handle}`, keys: [owner.public], prev: requestId(prev) },
    owner.private,
  );
  await s.ctx.changes.submit(request);
  return request;
}

async function json(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}

/** The zone's keys as its zone record lists them. */
async function zoneKeys(s: TestServer, zone = 'example'): Promise<PublicJwk[]> {
  const { body } = await json(`${s.url}/v1/zones/${zone}`);
  return JSON.parse(Buffer.from((body.record as string).split('.')[1]!, 'base64url').toString()).keys;
}

/** The checkpoint a server serves, opened with the zone's keys. */
async function checkpointOf(s: TestServer, zone = 'example') {
  const res = await fetch(`${s.url}/v1/zones/${zone}/checkpoint`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
  return openCheckpoint(zone, await res.text(), await zoneKeys(s, zone));
}

// From the specification, not from src/: a leaf is kind || SHA-256(key) || SHA-256(record), hashed as RFC 9162 does.
const sha = (...parts: (string | Buffer)[]) => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest();
const KINDS: Record<string, number> = { 'put op': 1, 'put delegation': 2, 'del delegation': 3, 'put zone': 4 };
function specLeaf(action: string, type: string, key: string, jws: string | null): Buffer | null {
  const kind = KINDS[`${action} ${type}`];
  return kind === undefined ? null : sha(Buffer.from([0]), Buffer.from([kind]), sha(key), sha(action === 'put' ? jws! : ''));
}
/** MTH (RFC 9162 §2.1.1), recursively, over leaf hashes. */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha();
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha(Buffer.from([1]), mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

/** The leaves of a primary's log as its journal lists the changes (every change of these tests is journaled). */
function journalLeaves(s: TestServer, zone = 'example'): Buffer[] {
  const db = new Database(join(s.dataDir, 'idns.sqlite'), { readonly: true });
  try {
    const rows = db.prepare('SELECT action, type, key, jws FROM journal WHERE zone = ? ORDER BY version, idx').all(zone) as {
      action: string;
      type: string;
      key: string;
      jws: string | null;
    }[];
    return rows.map((r) => specLeaf(r.action, r.type, r.key, r.jws)).filter((l): l is Buffer => l !== null);
  } finally {
    db.close();
  }
}

async function inclusion(s: TestServer, leaf: number, size: number) {
  return json(`${s.url}/v1/zones/example/log/inclusion?leaf=${leaf}&size=${size}`);
}

async function consistency(s: TestServer, from: number, to: number) {
  return json(`${s.url}/v1/zones/example/log/consistency?from=${from}&to=${to}`);
}

const b64s = (list: string[]) => list.map((h) => Buffer.from(h, 'base64'));

describe('a primary logs every change', () => {
  it('appends a leaf per history entry and delegation change and one per version for its zone record, and signs a checkpoint of the tree', async () => {
    const primary = await server({ zones: { example: {} } });
    const created = await checkpointOf(primary);
    // Creating the zone signed its first zone record: the log's first leaf.
    expect(created.size).toBe(1);
    const ann = await register(primary, 'ann@example');
    await register(primary, 'bob@example');
    await update(primary, 'ann@example', ann);
    primary.ctx.zones.delegate('example', 'child.example', { servers: ['https://child.example/'], ds: ['A'.repeat(43)] });
    primary.ctx.zones.undelegate('example', 'child.example');
    const cp = await checkpointOf(primary);
    expect(cp.origin).toBe('example/idns-log');
    const leaves = journalLeaves(primary);
    // Three entries, a delegation put and removed, and the zone record of each of the six versions.
    expect(leaves.length).toBe(11);
    expect(cp.size).toBe(leaves.length);
    expect(cp.root.equals(mth(leaves))).toBe(true);
    // The zone record the server serves is the tree's last leaf.
    const { body } = await json(`${primary.url}/v1/zones/example`);
    expect(body.checkpoint).toBe(cp.note);
    expect(specLeaf('put', 'zone', '', body.record)!.equals(leaves.at(-1)!)).toBe(true);
  });

  it('serves inclusion proofs of each history entry (its leaf in the handle log) and consistency proofs between any two sizes', async () => {
    const primary = await server({ zones: { example: {} } });
    const ann = await register(primary, 'ann@example');
    const early = await checkpointOf(primary);
    await update(primary, 'ann@example', ann);
    for (let i = 0; i < 20; i++) await register(primary, `u${i}@example`);
    const cp = await checkpointOf(primary);
    const { body: log } = await json(`${primary.url}/v1/handles/ann@example/log`);
    expect(log.operations.map((e: { leaf: number }) => typeof e.leaf)).toEqual(['number', 'number']);
    for (const entry of log.operations as { leaf: number; request: string; seq: number }[]) {
      const { status, body } = await inclusion(primary, entry.leaf, cp.size);
      expect(status).toBe(200);
      const leaf = specLeaf('put', 'op', `ann@example#${String(entry.seq).padStart(6, '0')}`, entry.request)!;
      expect(Buffer.from(body.hash, 'base64').equals(leaf)).toBe(true);
      verifyInclusion(leaf, entry.leaf, cp.size, b64s(body.proof), cp.root);
    }
    // The first entry was in the earlier, smaller tree too; that tree is a prefix of today's.
    const first = (log.operations as { leaf: number }[])[0]!.leaf;
    verifyInclusion(
      Buffer.from((await inclusion(primary, first, early.size)).body.hash, 'base64'),
      first,
      early.size,
      b64s((await inclusion(primary, first, early.size)).body.proof),
      early.root,
    );
    for (let from = 1; from <= cp.size; from += 5) {
      const { status, body } = await consistency(primary, from, cp.size);
      expect(status).toBe(200);
      verifyConsistency(from, cp.size, b64s(body.proof), mth(journalLeaves(primary).slice(0, from)), cp.root);
    }
    verifyConsistency(early.size, cp.size, b64s((await consistency(primary, early.size, cp.size)).body.proof), early.root, cp.root);
  });

  it('serves proofs of a zone deleted and created again from its new tree, not from what it remembered of the old one', async () => {
    const primary = await server({ zones: { example: {} } });
    for (let i = 0; i < 40; i++) await register(primary, `old${i}@example`);
    const old = await checkpointOf(primary);
    // Proofs read (and remember) the old tree's upper subtrees.
    expect((await inclusion(primary, 0, old.size)).status).toBe(200);
    primary.ctx.zones.deleteZone('example');
    primary.ctx.zones.create('example', { servers: [primary.url] });
    for (let i = 0; i < 40; i++) await register(primary, `new${i}@example`);
    const fresh = await checkpointOf(primary);
    const leaves = journalLeaves(primary);
    expect(fresh.root.equals(mth(leaves))).toBe(true);
    for (const leaf of [0, 17, 33, fresh.size - 1]) {
      const { body } = await inclusion(primary, leaf, fresh.size);
      verifyInclusion(leaves[leaf]!, leaf, fresh.size, b64s(body.proof), fresh.root);
    }
  });

  it('refuses questions about trees it does not hold, with a JSON error', async () => {
    const primary = await server({ zones: { example: {} } });
    await register(primary, 'ann@example');
    const size = (await checkpointOf(primary)).size;
    for (const [path, status, code] of [
      [`log/inclusion?leaf=0&size=${size + 1}`, 400, 'invalid_request'],
      [`log/inclusion?leaf=${size}&size=${size}`, 400, 'invalid_request'],
      ['log/inclusion?leaf=0&size=0', 400, 'invalid_request'],
      ['log/inclusion?leaf=-1&size=1', 400, 'invalid_request'],
      ['log/inclusion?leaf=1e3&size=1', 400, 'invalid_request'],
      ['log/inclusion?size=1', 400, 'invalid_request'],
      [`log/consistency?from=0&to=${size}`, 400, 'invalid_request'],
      [`log/consistency?from=2&to=1`, 400, 'invalid_request'],
      [`log/consistency?from=1&to=99999999999999999`, 400, 'invalid_request'],
    ] as const) {
      const res = await json(`${primary.url}/v1/zones/example/${path}`);
      expect(res, path).toMatchObject({ status, body: { error: { code } } });
    }
    expect((await json(`${primary.url}/v1/zones/nowhere/log/inclusion?leaf=0&size=1`)).body.error.code).toBe('zone_not_found');
    expect((await fetch(`${primary.url}/v1/zones/nowhere/checkpoint`)).status).toBe(404);
  });

  it('signs checkpoints that an independent implementation of C2SP signed notes verifies with the zone key', async () => {
    const primary = await server({ zones: { example: {} } });
    await register(primary, 'ann@example');
    const note = await (await fetch(`${primary.url}/v1/zones/example/checkpoint`)).text();
    const key = (await zoneKeys(primary))[0]!;
    const dir = mkdtempSync(join(tmpdir(), 'idns-note-'));
    try {
      writeFileSync(join(dir, 'note'), note);
      const run = spawnSync(
        process.execPath,
        [join(import.meta.dirname, 'support', 'c2sp-verify.mjs'), join(dir, 'note'), verifierKey(logOrigin('example'), NOTE_ED25519, rawKey(key))],
        {
          encoding: 'utf8',
        },
      );
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      expect(run.stdout).toContain('example/idns-log');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('secondaries keep the same log', () => {
  async function pair() {
    const primary = await server({ zones: { example: {} } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    const secondary = await server();
    return { primary, secondary, kid };
  }

  it('rebuilds it from a full transfer and extends it from incremental ones, serving the same checkpoint and proofs; promotion goes on from it', async () => {
    const { primary, secondary, kid } = await pair();
    const ann = await register(primary, 'ann@example');
    for (let i = 0; i < 5; i++) await register(primary, `u${i}@example`);
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    expect((await secondary.ctx.replicator.checkNow('example')).transfers.full).toBe(1);
    const sameProofs = async () => {
      const cp = await checkpointOf(primary);
      expect((await checkpointOf(secondary)).note).toBe(cp.note);
      expect((await json(`${secondary.url}/v1/handles/ann@example/log`)).body).toEqual((await json(`${primary.url}/v1/handles/ann@example/log`)).body);
      for (let leaf = 0; leaf < cp.size; leaf += 3)
        expect((await inclusion(secondary, leaf, cp.size)).body).toEqual((await inclusion(primary, leaf, cp.size)).body);
      expect((await consistency(secondary, 1, cp.size)).body).toEqual((await consistency(primary, 1, cp.size)).body);
      return cp;
    };
    const copied = await sameProofs();
    // Changes of every kind the log records, taken incrementally.
    await update(primary, 'ann@example', ann);
    primary.ctx.zones.delegate('example', 'child.example', { servers: ['https://child.example/'], ds: ['A'.repeat(43)] });
    await register(primary, 'cai@example');
    primary.ctx.zones.undelegate('example', 'child.example');
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.transfers).toMatchObject({ full: 1, incremental: 1, failed: 0 });
    const before = await sameProofs();
    verifyConsistency(copied.size, before.size, b64s((await consistency(secondary, copied.size, before.size)).body.proof), copied.root, before.root);

    // Promoted (with the key from the primary's directory), the secondary signs the next checkpoints over
    // the same tree, consistent with the last.
    secondary.ctx.zones.promote('example', `${primary.dataDir}/keys/example`, { primary: secondary.url, policy: 'open' });
    await register(secondary, 'dee@example');
    const after = await checkpointOf(secondary);
    expect(after.size).toBeGreaterThan(before.size);
    verifyConsistency(before.size, after.size, b64s((await consistency(secondary, before.size, after.size)).body.proof), before.root, after.root);
  });

  /** A source in front of `primary` that rewrites the transfer streams with `rewrite` (a man in the middle). */
  async function rewriting(primary: TestServer, rewrite: (lines: Record<string, any>[], path: string) => Record<string, any>[]) {
    const fake = await startFakeServer(async (req, res) => {
      const upstream = await fetch(`${primary.url}${req.url}`);
      const text = await upstream.text();
      let body = text;
      if (req.url!.includes('/transfer') && upstream.status === 200) {
        // Only JSON lines are rewritten; a compact stream's record lines pass as they are.
        const lines = text.trimEnd().split('\n');
        const parsed = lines.map((l) => (l.startsWith('{') ? JSON.parse(l) : l));
        body =
          rewrite(parsed, req.url!)
            .map((l) => (typeof l === 'string' ? l : JSON.stringify(l).replace(/\u2014/g, '\\u2014')))
            .join('\n') + '\n';
      }
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
      res.end(body);
    });
    fakes.push(fake);
    return fake.url;
  }

  it.each([
    [
      'a leaf hash altered',
      (lines: any[]) => lines.map((l) => (l.kind === 'log' ? { ...l, hashes: Buffer.from(l.hashes, 'base64').fill(7, 0, 1).toString('base64') } : l)),
      /do not make the checkpoint's tree/,
    ],
    ['the log section dropped', (lines: any[]) => lines.filter((l) => l.kind !== 'log'), /do not make the checkpoint's tree/],
    [
      "two entries' leaves swapped",
      (lines: any[]) => lines.map((l) => (l.kind === 'leaves' ? { ...l, leaves: [l.leaves[1], l.leaves[0], ...l.leaves.slice(2)] } : l)),
      /is not the leaf/,
    ],
    [
      'a leaf past the tree',
      (lines: any[]) => lines.map((l) => (l.kind === 'leaves' ? { ...l, leaves: [...l.leaves.slice(0, -1), 10 ** 9] } : l)),
      /is not in the log/,
    ],
    [
      'an entry without a leaf',
      (lines: any[]) => lines.map((l) => (l.kind === 'leaves' ? { ...l, leaves: l.leaves.slice(0, -1) } : l)),
      /more history entries than/,
    ],
    [
      'the log section after the records',
      (lines: any[]) => {
        const section = lines.filter((l) => l.kind === 'log' || l.kind === 'leaves');
        const rest = lines.filter((l) => !section.includes(l));
        return [...rest.slice(0, -1), ...section, rest.at(-1)];
      },
      /do not make the checkpoint's tree/,
    ],
    ['no checkpoint', (lines: any[]) => lines.map((l) => (l.kind === 'start' || l.kind === 'end' ? { ...l, checkpoint: undefined } : l)), /no checkpoint/],
    [
      'a checkpoint of another tree',
      (lines: any[]) => lines.map((l) => (l.kind === 'start' || l.kind === 'end' ? { ...l, checkpoint: l.checkpoint.replace(/\n\d+\n/, '\n1\n') } : l)),
      /does not verify/,
    ],
  ])('refuses a full transfer with %s, keeping no copy', async (_what, tamper, error) => {
    const { primary, secondary, kid } = await pair();
    for (const h of ['ann', 'bob', 'cai']) await register(primary, `${h}@example`);
    const source = await rewriting(primary, (lines) => tamper(lines));
    secondary.ctx.zones.createSecondary('example', { primaries: [source], ds: [kid] });
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.lastError).toMatch(error);
    expect(status.serial).toBeNull();
  });

  it('refuses an incremental transfer whose changes do not make the tree the checkpoint signs, then heals with a full one', async () => {
    const { primary, secondary, kid } = await pair();
    await register(primary, 'ann@example');
    const source = await rewriting(primary, (lines, path) =>
      // The zone record of an earlier version dropped: the digest still adds up, the log does not.
      path.includes('since=') ? lines.filter((l, i) => !(l.kind === 'put' && l.type === 'zone' && i < lines.length - 2)) : lines,
    );
    secondary.ctx.zones.createSecondary('example', { primaries: [source], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    await register(primary, 'bob@example');
    await register(primary, 'cai@example');
    const status = await secondary.ctx.replicator.checkNow('example');
    // The incremental transfer was refused, the full one after it (untampered) taken.
    expect(status.transfers).toMatchObject({ full: 2, incremental: 0 });
    expect(status.lastError).toBeNull();
    expect((await checkpointOf(secondary)).note).toBe((await checkpointOf(primary)).note);
  });
});
