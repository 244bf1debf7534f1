import type { IncomingMessage, ServerResponse } from 'node:http';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { signChangeRequest } from '../src/client/requests.js';
import { newUserKey } from './support/keys.js';
import { startFakeServer, type FakeServer } from './support/fake-server.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';
import { MapEntries } from '../src/transparency/zone-map.js';

// What a secondary copies: only the source's exact, verified history, and nothing that can keep it from
// following its source afterwards (issue 14, items 1, 4 and 9).
const owner = newUserKey();
const started: TestServer[] = [];
const fakes: FakeServer[] = [];
const cleanups: (() => void)[] = [];
afterEach(async () => {
  for (const f of fakes.splice(0)) await f.close();
  for (const s of started.splice(0).reverse()) await s.close();
  for (const c of cleanups.splice(0)) c();
});

async function server(options: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const s = await startTestServer({ background: true, ...options });
  started.push(s);
  return s;
}

async function stop(s: TestServer): Promise<void> {
  started.splice(started.indexOf(s), 1);
  await s.close();
}

const register = (s: TestServer, handle: string) =>
  s.ctx.changes.submit(signChangeRequest({ action: 'register', handle, endpoint: `https://home.example/${handle}`, keys: [owner.public] }, owner.private));

const zoneState = async (url: string, zone = 'example') => {
  const { serial, digest, record } = (await (await fetch(`${url}/v1/zones/${zone}`)).json()) as { serial: number; digest: string; record: string };
  return { serial, digest, record };
};

/** A primary of zone `example` holding a@example, and a secondary that copied it. */
async function primaryAndCopy() {
  const primary = await server({ zones: { example: {} } });
  const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
  await register(primary, 'a@example');
  const secondary = await server();
  secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
  await secondary.ctx.replicator.checkNow('example');
  return { primary, kid, secondary };
}

/** The lines of a genuine transfer (as the source sent them). */
async function genuineLines(url: string): Promise<{ status: number; contentType: string; lines: Record<string, unknown>[]; raw: string }> {
  const res = await request(url, { headersTimeout: 5000, bodyTimeout: 5000 });
  const raw = await res.body.text();
  const lines =
    res.statusCode === 200 && !raw.startsWith('{"error"')
      ? raw
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
      : [];
  return { status: res.statusCode, contentType: String(res.headers['content-type'] ?? ''), lines, raw };
}

/**
 * A source in front of a real primary that passes everything through, except that, while `relabel` is
 * set, it shifts the serial of every version line of an incremental transfer by `relabel` (the serial
 * lines are not signed; the end state, and so the digest, stays the same).
 */
async function relabellingProxy(primary: TestServer): Promise<{ url: string; relabel: number; incrementals: number }> {
  const state = { relabel: 0, incrementals: 0 };
  const fake = await startFakeServer(async (req: IncomingMessage, res: ServerResponse) => {
    const url = `${primary.url}${req.url}`;
    const got = await genuineLines(url);
    if (state.relabel !== 0 && /\/transfer\?since=/.test(req.url ?? '') && got.status === 200) {
      state.incrementals += 1;
      const body = got.lines.map((l) => JSON.stringify(l.kind === 'version' ? { ...l, serial: (l.serial as number) + state.relabel } : l)).join('\n') + '\n';
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.end(body);
      return;
    }
    res.writeHead(got.status, { 'content-type': got.contentType });
    res.end(got.raw);
  });
  fakes.push(fake);
  return Object.assign(state, { url: fake.url });
}

describe('incremental transfers journal only the source history', () => {
  it('refuses a stream whose versions were relabelled, falls back to a full transfer, and follows the genuine source after, also after a restart', async () => {
    const primary = await server({ zones: { example: {} } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    await register(primary, 'a@example');
    const hostile = await relabellingProxy(primary);
    const dir = tempDir();
    cleanups.push(dir.remove);
    let secondary = await server({ dataDir: dir.dir });
    secondary.ctx.zones.createSecondary('example', { primaries: [hostile.url, primary.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    const first = await zoneState(secondary.url);

    // Two changes; the hostile source sends them as versions two serials later than they are.
    await register(primary, 'b@example');
    await register(primary, 'c@example');
    hostile.relabel = 2;
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(hostile.incrementals).toBe(1);
    // Refused, then copied whole from the same source (as BIND and Knot fall back from IXFR to AXFR).
    expect(status.transfers.full).toBe(2);
    expect(status.lastError).toBeNull();
    expect(await zoneState(secondary.url)).toEqual(await zoneState(primary.url));
    expect((await zoneState(secondary.url)).serial).toBe(first.serial + 2);

    // The genuine source's next changes come incrementally, and apply.
    hostile.relabel = 0;
    await register(primary, 'd@example');
    await register(primary, 'e@example');
    const after = await secondary.ctx.replicator.checkNow('example');
    expect(after.lastError).toBeNull();
    expect(after.transfers.incremental).toBe(1);
    expect(await zoneState(secondary.url)).toEqual(await zoneState(primary.url));

    // After a restart, it still follows.
    await stop(secondary);
    secondary = await server({ dataDir: dir.dir });
    await register(primary, 'f@example');
    const restarted = await secondary.ctx.replicator.checkNow('example');
    expect(restarted.lastError).toBeNull();
    expect(restarted.transfers.incremental).toBe(1);
    expect(await zoneState(secondary.url)).toEqual(await zoneState(primary.url));
    expect((await fetch(`${secondary.url}/v1/resolve/f@example`)).status).toBe(200);

    // A secondary copying from this one incrementally gets exactly the primary's history.
    const downstream = await server();
    downstream.ctx.zones.createSecondary('example', { primaries: [secondary.url], ds: [kid] });
    await downstream.ctx.replicator.checkNow('example');
    await register(primary, 'g@example');
    await register(primary, 'h@example');
    await secondary.ctx.replicator.checkNow('example');
    const down = await downstream.ctx.replicator.checkNow('example');
    expect(down.transfers).toMatchObject({ full: 1, incremental: 1, failed: 0 });
    expect(await zoneState(downstream.url)).toEqual(await zoneState(primary.url));
  });

  it('refuses versions outside (ours, new] or not rising, and changes sent under another serial than signed', async () => {
    const primary = await server({ zones: { example: {} } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    await register(primary, 'a@example');
    const hostile = await relabellingProxy(primary);
    const secondary = await server();
    secondary.ctx.zones.createSecondary('example', { primaries: [hostile.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    const { TransferClient } = await import('../src/replication/transfer-client.js');
    const { Agent } = await import('undici');
    const agent = new Agent();
    const client = new TransferClient(secondary.ctx.store, secondary.ctx.zones, secondary.ctx.clock, agent);
    try {
      await register(primary, 'b@example');
      await register(primary, 'c@example');
      for (const shift of [2, -1, -2, 1, 2 ** 31]) {
        hostile.relabel = shift;
        await expect(client.incremental({ server: hostile.url, zone: 'example', trusted: [kid], credential: null })).rejects.toMatchObject({
          code: 'transfer_failed',
        });
      }
      // Nothing of them was kept: the genuine stream applies.
      hostile.relabel = 0;
      await expect(client.incremental({ server: hostile.url, zone: 'example', trusted: [kid], credential: null })).resolves.toBe(
        (await zoneState(primary.url)).serial,
      );
    } finally {
      await agent.close();
    }
  });

  it('heals a journal that holds entries past its own version (left by an older idns): the next genuine transfer applies', async () => {
    const { primary, kid, secondary } = await primaryAndCopy();
    const version = secondary.ctx.zones.require('example').version;
    // What the relabelling attack left behind in an older idns: changes journaled under future versions.
    secondary.ctx.store.write(() => {
      for (const v of [version + 1, version + 2])
        secondary.ctx.store.journal.append('example', { version: v, idx: 0, action: 'del', type: 'handle', key: 'a@example', jws: null }, Date.now());
    });
    await register(primary, 'b@example');
    await register(primary, 'c@example');
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.lastError).toBeNull();
    expect(await zoneState(secondary.url)).toEqual(await zoneState(primary.url));
  });
});

/** The genuine full transfer of a zone from a real server, as NDJSON lines. */
async function fullTransferLines(url: string, zone = 'example') {
  const got = await genuineLines(`${url}/v1/zones/${zone}/transfer`);
  const start = got.lines[0]!;
  const records = got.lines.filter((l) => l.kind === 'record') as { kind: 'record'; type: string; key: string; record: string }[];
  return { start, records };
}

/**
 * A source holding the zone's real key (a stolen key, or a broken primary): it serves `records` as the
 * zone's content under a new zone record it signs itself, whose digest, count and size match them, so
 * only the checks of each record can tell.
 */
async function keyHoldingSource(
  primary: TestServer,
  kid: string,
  records: { type: string; key: string; record: string }[],
  /** `mapOf`: the records whose map the checkpoint names (the records sent, by default). */
  opts: { legacy?: boolean; mapOf?: { type: string; key: string; record: string }[] } = {},
) {
  const { ZoneSigner, zoneKey, payloadOf, fakeLog } = await import('./support/fake-server.js');
  const { ZoneDigest } = await import('../src/records/digest.js');
  const signer = new ZoneSigner('example', zoneKey(primary.dataDir, 'example', kid));
  const genuine = payloadOf((await zoneState(primary.url)).record);
  const digest = ZoneDigest.empty();
  let size = 0;
  for (const r of records) {
    digest.add(r.type, r.key, r.record);
    size += r.type.length + r.key.length + r.record.length + 2;
  }
  const { v: _v, type: _t, zone: _z, serial, iat: _i, exp: _e, count: _c, size: _s, ...fields } = genuine;
  const zoneRecord = signer.sign(
    'zone',
    { ...fields, digest: digest.value(), ...(opts.legacy ? {} : { count: records.length, size }) },
    { serial: serial + 10 },
  );
  const fake = await startFakeServer((req, res) => {
    if (/\/transfer/.test(req.url ?? '')) {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      const log = fakeLog(
        'example',
        signer.key,
        zoneRecord,
        records.filter((r) => r.type === 'op'),
        (opts.mapOf ?? records).map((r) => ({ type: r.type, key: r.key, jws: r.record })),
      );
      const lines = [
        { kind: 'start', mode: 'full', zone: 'example', serial: serial + 10, record: zoneRecord, checkpoint: log.checkpoint },
        ...log.lines,
        ...records.map((r) => ({ kind: 'record', ...r })),
        { kind: 'end', zone: 'example', serial: serial + 10, record: zoneRecord, checkpoint: log.checkpoint, count: records.length },
      ];
      res.end(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ zone: 'example', serial: serial + 10, role: 'primary', record: zoneRecord }));
  });
  fakes.push(fake);
  return { url: fake.url, signer, serial: serial + 10 };
}

describe('a copy keeps the map of its records', () => {
  it('refuses an incremental transfer whose checkpoint names another map than its changes make, and a copy that lost its map builds it from its records', async () => {
    const { primary, kid, secondary } = await primaryAndCopy();
    const copy = await zoneState(secondary.url);
    await register(primary, 'b@example');

    // A source holding the zone key re-signs each checkpoint of the stream with the same tree and another map.
    const { zoneKey } = await import('./support/fake-server.js');
    const { signCheckpoint } = await import('../src/transparency/zone-log.js');
    const { parseCheckpoint } = await import('../src/transparency/checkpoint.js');
    const { parseNote } = await import('../src/transparency/note.js');
    const key = zoneKey(primary.dataDir, 'example', kid);
    const otherMap = (note: string) => {
      const c = parseCheckpoint(parseNote(note).text);
      return signCheckpoint('example', c.size, c.root, Buffer.alloc(32, 7), key);
    };
    const fake = await startFakeServer(async (req, res) => {
      const got = await genuineLines(`${primary.url}${req.url}`);
      const lines = got.lines.map((l) => (typeof l.checkpoint === 'string' ? { ...l, checkpoint: otherMap(l.checkpoint) } : l));
      res.writeHead(got.status, { 'content-type': got.contentType });
      res.end(/transfer\?since=/.test(req.url ?? '') ? lines.map((l) => JSON.stringify(l)).join('\n') + '\n' : got.raw);
    });
    fakes.push(fake);
    const { TransferClient } = await import('../src/replication/transfer-client.js');
    const { Agent } = await import('undici');
    const agent = new Agent();
    const client = new TransferClient(secondary.ctx.store, secondary.ctx.zones, secondary.ctx.clock, agent);
    try {
      await expect(client.incremental({ server: fake.url, zone: 'example', trusted: [kid], credential: null })).rejects.toThrow(
        /the changes do not make the map the checkpoint names/,
      );
      expect(await zoneState(secondary.url)).toEqual(copy);
    } finally {
      await agent.close();
    }

    // A copy whose map is gone (an upgraded database, a lost table) builds it again from its records at
    // its next incremental transfer, and serves answers that prove their records current.
    const content = secondary.ctx.zones.require('example').content;
    secondary.ctx.store.write(() => secondary.ctx.store.maps.build(content, new MapEntries()));
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.transfers).toMatchObject({ incremental: 1 });
    expect(await zoneState(secondary.url)).toEqual(await zoneState(primary.url));
    const bound = (await (await fetch(`${secondary.url}/v1/resolve/b@example?log=1`)).json()) as { log: { map: string[][] } };
    const fromPrimary = (await (await fetch(`${primary.url}/v1/resolve/b@example?log=1`)).json()) as { log: { map: string[][] } };
    expect(bound.log.map).toEqual(fromPrimary.log.map);
  });
});

describe('a secondary checks each record it copies as a resolver would', () => {
  it('refuses a full transfer, digest and all matching, that holds a record a resolver would refuse, and keeps its copy', async () => {
    const primary = await server({ zones: { example: {} } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    for (const h of ['a@example', 'b@example', 'c@example']) await register(primary, h);
    const { tamperSignature, payloadOf, withPayload, zoneKey, ZoneSigner } = await import('./support/fake-server.js');
    const signer = new ZoneSigner('example', zoneKey(primary.dataDir, 'example', kid));
    const { records } = await fullTransferLines(primary.url);
    const handleAt = (key: string) => records.findIndex((r) => r.type === 'handle' && r.key === key);
    const denialAt = records.findIndex((r) => r.type === 'denial');
    const replaced = (at: number, r: Partial<(typeof records)[number]>) => records.map((x, i) => (i === at ? { ...x, ...r } : x));
    const resigned = (at: number, change: (p: Record<string, unknown>) => Record<string, unknown>) => {
      const { v: _v, type, zone: _z, serial, iat, exp, ...fields } = payloadOf(records[at]!.record);
      const next = change({ ...fields, serial, iat, exp });
      const { serial: s, iat: i, exp: e, ...rest } = next;
      return replaced(at, { record: signer.sign(type as string, rest, { serial: s as number, iat: i as number, exp: e as number }) });
    };
    const a = handleAt('a@example');
    const b = handleAt('b@example');
    const opA = records.findIndex((r) => r.type === 'op' && r.key === 'a@example#000001');
    const { signOperatorEntry } = await import('../src/records/operator-entry.js');
    const { freshKey } = await import('./support/fake-server.js');
    const cases: [string, { type: string; key: string; record: string }[]][] = [
      // b's record stored under a's handle and the other way round: each row's key is another handle's.
      ['swapped handles', records.map((r, i) => (i === a ? { ...r, record: records[b]!.record } : i === b ? { ...r, record: records[a]!.record } : r))],
      ['a signature that does not verify', replaced(a, { record: tamperSignature(records[a]!.record) })],
      [
        'a payload altered under its signature',
        replaced(a, { record: withPayload(records[a]!.record, { ...payloadOf(records[a]!.record), endpoint: 'https://evil.example/' }) }),
      ],
      ['a member the schema does not know', resigned(a, (p) => ({ ...p, extra: 1 }))],
      ['keys that are not keys', resigned(a, (p) => ({ ...p, keys: [] }))],
      ['an expired signature', resigned(a, (p) => ({ ...p, iat: 1_000_000, exp: 1_000_100 }))],
      ['a record of another zone', replaced(a, { record: new ZoneSigner('other', signer.key).handle('a@example', 'https://h.example/', [owner.public]) })],
      ['a handle outside the zone', replaced(a, { key: 'a@elsewhere', record: signer.handle('a@elsewhere', 'https://h.example/', [owner.public]) })],
      ['a handle not in normal form', replaced(a, { key: 'A@example', record: signer.handle('A@example', 'https://h.example/', [owner.public]) })],
      ['a delegation stored as a handle', replaced(a, { record: signer.delegation('a@example', ['https://c.example/'], [kid]) })],
      ['a denial stored under another hash', replaced(denialAt, { key: 'f'.repeat(64) })],
      ['a denial with other hash parameters', resigned(denialAt, (p) => ({ ...p, hash: { alg: 'sha256', salt: 'other' } }))],
      ['a type a zone does not hold', replaced(a, { type: 'zone' })],
      // History entries: the owner's request as the authority's own parser reads it, where it belongs.
      ['a handle record stored as a history entry', replaced(opA, { record: records[a]!.record })],
      ['a history entry stored under another handle', replaced(opA, { key: 'z@example#000001' })],
      ['a history entry under a key without its place', replaced(opA, { key: 'a@example#1' })],
      ['a registration whose signature does not verify', replaced(opA, { record: tamperSignature(records[opA]!.record) })],
      [
        'an operator entry signed by a key not of the zone',
        replaced(opA, {
          record: signOperatorEntry(
            { action: 'import', zone: 'example', handle: 'a@example', endpoint: 'https://h.example/', keys: [owner.public], iat: 1 },
            freshKey(),
          ),
        }),
      ],
      [
        'an operator entry of another zone',
        replaced(opA, {
          record: signOperatorEntry(
            { action: 'import', zone: 'other', handle: 'a@example', endpoint: 'https://h.example/', keys: [owner.public], iat: 1 },
            signer.key,
          ),
        }),
      ],
    ];
    const secondary = await server();
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    const copy = await zoneState(secondary.url);
    const { TransferClient } = await import('../src/replication/transfer-client.js');
    const { Agent } = await import('undici');
    const agent = new Agent();
    const client = new TransferClient(secondary.ctx.store, secondary.ctx.zones, secondary.ctx.clock, agent);
    try {
      for (const [what, content] of cases) {
        const source = await keyHoldingSource(primary, kid, content);
        const outcome = await client.full({ server: source.url, zone: 'example', trusted: [kid], credential: null }).then(
          (serial) => `accepted serial ${serial}`,
          (err: { code?: string; message: string }) => `${err.code}: ${err.message}`,
        );
        expect(outcome, what).toMatch(/^transfer_failed: .*(would be refused by a resolver|a transfer line has a bad type)/);
        expect(await zoneState(secondary.url), what).toEqual(copy);
      }
      // A checkpoint whose map is not the records' (an older handle record named current, a record left
      // out) is refused: the map the witnesses cosign is the one every secondary computes.
      for (const [what, mapOf] of [
        ['a map naming another record current', replaced(a, { record: records[b]!.record })],
        ['a map without a record', records.filter((_, i) => i !== denialAt)],
      ] as const) {
        const source = await keyHoldingSource(primary, kid, records, { mapOf: [...mapOf] });
        const outcome = await client.full({ server: source.url, zone: 'example', trusted: [kid], credential: null }).then(
          (serial) => `accepted serial ${serial}`,
          (err: { code?: string; message: string }) => `${err.code}: ${err.message}`,
        );
        expect(outcome, what).toMatch(/^transfer_failed: the records do not make the map the checkpoint names/);
        expect(await zoneState(secondary.url), what).toEqual(copy);
      }
      // The same source with the genuine records is taken: the checks refuse only what a resolver would.
      const honest = await keyHoldingSource(primary, kid, records);
      await expect(client.full({ server: honest.url, zone: 'example', trusted: [kid], credential: null })).resolves.toBe(honest.serial);
    } finally {
      await agent.close();
    }
    expect((await fetch(`${secondary.url}/v1/resolve/a@example`)).status).toBe(200);
  });

  it('refuses an incremental change with a signature that does not verify, and the full transfer that follows heals', async () => {
    const primary = await server({ zones: { example: {} } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    await register(primary, 'a@example');
    const { tamperSignature } = await import('./support/fake-server.js');
    let tampered = 0;
    const fake = await startFakeServer(async (req, res) => {
      const got = await genuineLines(`${primary.url}${req.url}`);
      if (/since=/.test(req.url ?? '') && got.status === 200) {
        tampered += 1;
        const lines = got.lines.map((l) => (l.kind === 'put' && l.type === 'handle' ? { ...l, record: tamperSignature(l.record as string) } : l));
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.end(lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
        return;
      }
      res.writeHead(got.status, { 'content-type': got.contentType });
      res.end(got.raw);
    });
    fakes.push(fake);
    const secondary = await server();
    secondary.ctx.zones.createSecondary('example', { primaries: [fake.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    await register(primary, 'b@example');
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(tampered).toBe(1);
    expect(status.transfers).toMatchObject({ full: 2, incremental: 0, failed: 1 });
    expect(await zoneState(secondary.url)).toEqual(await zoneState(primary.url));
    const served = (await (await fetch(`${secondary.url}/v1/resolve/b@example`)).json()) as { record: string };
    expect(served.record).toBe(((await (await fetch(`${primary.url}/v1/resolve/b@example`)).json()) as { record: string }).record);
  });
});

/** Bytes of a secondary's database on disk (the file and its WAL). */
function diskBytes(s: TestServer): number {
  let total = 0;
  for (const f of ['idns.sqlite', 'idns.sqlite-wal']) if (existsSync(join(s.dataDir, f))) total += statSync(join(s.dataDir, f)).size;
  return total;
}

/**
 * A source in front of `primary`: it passes everything through until `attack` is called; then it answers
 * the zone check with the given zone record, refuses incremental transfers (journal too old) and answers
 * a full transfer with that record's start line, after which `body` writes the rest. Bounded: `body` must
 * end by itself; `written` counts what the client took.
 */
async function hostileSource(primary: TestServer) {
  type Body = (write: (text: string) => Promise<boolean>) => Promise<void>;
  const state = { url: '', written: 0, closed: false, attack: null as null | { zoneRecord: string; serial: number; body: Body } };
  const fake = await startFakeServer(async (req, res) => {
    const attack = state.attack;
    if (attack === null) {
      const got = await genuineLines(`${primary.url}${req.url}`);
      res.writeHead(got.status, { 'content-type': got.contentType });
      res.end(got.raw);
      return;
    }
    if (/since=/.test(req.url ?? '')) {
      res.writeHead(410, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'journal_too_old', message: 'take a full transfer' } }));
      return;
    }
    if (!/\/transfer/.test(req.url ?? '')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ zone: 'example', serial: attack.serial, role: 'primary', record: attack.zoneRecord }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    // One listener for the hang-up, shared by every wait for drain (one per wait piled up: 11 and a warning).
    const hungUp = new Promise<void>((r) =>
      res.on('close', () => {
        state.closed = true;
        r();
      }),
    );
    /** Writes, waiting for the client to take it; false once the client is gone. */
    const write = async (text: string): Promise<boolean> => {
      if (state.closed || res.destroyed) return false;
      state.written += text.length;
      if (!res.write(text)) await Promise.race([new Promise<void>((r) => res.once('drain', r)), hungUp]);
      return !state.closed && !res.destroyed;
    };
    // The start line with a checkpoint the zone key signs and its log section (one leaf: the zone record).
    const { fakeLog, zoneKey } = await import('./support/fake-server.js');
    const log = fakeLog('example', zoneKey(primary.dataDir, 'example', primary.ctx.zones.info('example').keyThumbprints[0]!), attack.zoneRecord);
    const start = { kind: 'start', mode: 'full', zone: 'example', serial: attack.serial, record: attack.zoneRecord, checkpoint: log.checkpoint };
    await write([start, ...log.lines].map((l) => `${JSON.stringify(l)}\n`).join(''));
    await attack.body(write);
    res.end();
  });
  fakes.push(fake);
  state.url = fake.url;
  return state;
}

describe('a transfer is bounded by its signed zone record, by bytes and by time', () => {
  async function setup(transfers: { maxBytes?: number; maxSeconds?: number } = {}) {
    const primary = await server({ zones: { example: {} } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    await register(primary, 'a@example');
    const source = await hostileSource(primary);
    const secondary = await server({ config: { transfers: { maxBytes: 4 * 2 ** 30, maxSeconds: 600, signatureChecks: 20_000, ...transfers } } });
    secondary.ctx.zones.createSecondary('example', { primaries: [source.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    await register(primary, 'b@example');
    const { ZoneSigner, zoneKey } = await import('./support/fake-server.js');
    const signer = new ZoneSigner('example', zoneKey(primary.dataDir, 'example', kid));
    return { primary, secondary, kid, signer, source, copy: await zoneState(secondary.url) };
  }

  /**
   * Records a source offers without end: ~42 MB, more than loopback's socket buffers hold (a few MB each
   * way), so a source that wrote them all was read to the end rather than cut off.
   */
  const ENDLESS = 200_000;
  /** Bytes a cut-off source can still have written: what the two sockets' buffers take before the cut is seen. */
  const BUFFERED = 16 * 2 ** 20;

  /** Signs valid handle records of the zone, one line each, for as long as the client takes them (at most `max`). */
  const endlessRecords =
    (signer: { handle: (h: string, e: string, k: never[]) => string }, max: number) => async (write: (text: string) => Promise<boolean>) => {
      for (let i = 0; i < max; i++) {
        const handle = `x${i}@example`;
        const line = `${JSON.stringify({ kind: 'record', type: 'handle', key: handle, record: signer.handle(handle, 'https://h.example/', [owner.public as never]) })}\n`;
        if (!(await write(line))) return;
      }
    };

  async function expectOldCopyServes(secondary: TestServer, copy: Awaited<ReturnType<typeof zoneState>>) {
    expect(await zoneState(secondary.url)).toEqual(copy);
    expect((await fetch(`${secondary.url}/v1/resolve/a@example`)).status).toBe(200);
  }

  it('stops a source that streams records past the count its genuine zone record states', async () => {
    const { primary, secondary, signer, source, copy } = await setup();
    const genuine = await zoneState(primary.url);
    // After the genuine start line, valid records signed with the zone key (a key-holding source), without end.
    source.attack = { zoneRecord: genuine.record, serial: genuine.serial, body: endlessRecords(signer, ENDLESS) };
    const disk = diskBytes(secondary);
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.lastError).toMatch(/carries more than the \d+ records/);
    // The genuine zone holds a handful of records: the source got to write little more than the sockets hold.
    expect(source.written).toBeLessThan(BUFFERED);
    expect(diskBytes(secondary) - disk).toBeLessThan(2 * 2 ** 20);
    await expectOldCopyServes(secondary, copy);
  });

  it('stops a source with a zone record that states no count at transfers.maxBytes', async () => {
    const maxBytes = 256 * 1024;
    const { primary, secondary, signer, source, copy } = await setup({ maxBytes });
    const { payloadOf } = await import('./support/fake-server.js');
    const { v: _v, type: _t, zone: _z, serial, iat: _i, exp: _e, count: _c, size: _s, ...fields } = payloadOf((await zoneState(primary.url)).record);
    // As an older idns signs it: no count, no size.
    const legacy = signer.sign('zone', fields, { serial: serial + 5 });
    source.attack = { zoneRecord: legacy, serial: serial + 5, body: endlessRecords(signer, ENDLESS) };
    const disk = diskBytes(secondary);
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status.lastError).toMatch(new RegExp(`brought more than ${maxBytes} bytes`));
    expect(source.written).toBeLessThan(maxBytes + BUFFERED);
    expect(diskBytes(secondary) - disk).toBeLessThan(maxBytes + 2 * 2 ** 20);
    await expectOldCopyServes(secondary, copy);
  });

  it('stops a source that streams slowly without end at transfers.maxSeconds', async () => {
    const { primary, secondary, source, copy } = await setup({ maxSeconds: 1.5 });
    const genuine = await zoneState(primary.url);
    // One byte every 20 ms, inside one line (every pause far below the 10 s between chunks); the test
    // itself stops after 30 s.
    source.attack = {
      zoneRecord: genuine.record,
      serial: genuine.serial,
      body: async (write) => {
        const until = Date.now() + 30_000;
        if (!(await write('{"kind":"record","type":"handle","key":"'))) return;
        while (Date.now() < until) {
          if (!(await write('x'))) return;
          await new Promise((r) => setTimeout(r, 20));
        }
      },
    };
    const t0 = Date.now();
    const status = await secondary.ctx.replicator.checkNow('example');
    const took = Date.now() - t0;
    expect(status.lastError).toMatch(/took longer than 1.5 s/);
    expect(took).toBeGreaterThanOrEqual(1500);
    // Far below the source's 30 s: the bound, not the source, ended it.
    expect(took).toBeLessThan(15_000);
    await expectOldCopyServes(secondary, copy);
  });
});

describe('the zone record states the count and size of the zone content', () => {
  it('keeps them exact through registrations, updates and deletions (splitting and merging denials), and secondaries check them', async () => {
    const primary = await server({ zones: { example: {} } });
    const kid = primary.ctx.zones.info('example').keyThumbprints[0]!;
    const { payloadOf } = await import('./support/fake-server.js');
    const stated = () => {
      const row = primary.ctx.zones.require('example');
      const { count, size } = payloadOf(row.record) as { count: number; size: number };
      return { stated: { count, size }, held: primary.ctx.store.records.totals(row.content) };
    };
    const ops: string[] = [];
    for (let i = 0; i < 40; i++) ops.push((await register(primary, `u${i}@example`)).op);
    let s = stated();
    expect(s.stated).toEqual(s.held);
    expect(s.held.count).toBeGreaterThan(41);
    const secondary = await server();
    secondary.ctx.zones.createSecondary('example', { primaries: [primary.url], ds: [kid] });
    await secondary.ctx.replicator.checkNow('example');
    for (let i = 0; i < 40; i += 3) {
      const result = await primary.ctx.changes.submit(signChangeRequest({ action: 'delete', handle: `u${i}@example`, prev: ops[i]! }, owner.private));
      expect(result).toMatchObject({ action: 'delete' });
    }
    await primary.ctx.changes.submit(
      signChangeRequest(
        { action: 'update', handle: 'u1@example', prev: ops[1]!, endpoint: 'https://a-much-longer-endpoint.example/path/of/u1', keys: [owner.public] },
        owner.private,
      ),
    );
    s = stated();
    expect(s.stated).toEqual(s.held);
    // The secondary follows incrementally, checking the count and size of what it then holds.
    const status = await secondary.ctx.replicator.checkNow('example');
    expect(status).toMatchObject({ lastError: null, transfers: { full: 1, incremental: 1, failed: 0 } });
    expect(await zoneState(secondary.url)).toEqual(await zoneState(primary.url));
  });
});
