import type { NumberedEntry } from '../../src/records/history-chain.js';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { readKeyFile } from '../../src/authority/keyring.js';
import { RECORD_TYP, signCompact } from '../../src/records/jws.js';
import { generatePrivateJwk, signingKeyFromJwk, type PublicJwk, type SigningKey } from '../../src/records/keys.js';
import { signOperatorEntry } from '../../src/records/operator-entry.js';
import { requestId } from '../../src/records/change-request.js';
import { MerkleFrontier } from '../../src/transparency/merkle.js';
import { changeLeafHash, signCheckpoint, zoneRecordLeafHash } from '../../src/transparency/zone-log.js';
import { isMapped, MapEntries, mapKey, mapValue } from '../../src/transparency/zone-map.js';

/**
 * Scripted hostile peers for resolver tests: tiny node:http servers on loopback whose behaviour a test
 * writes, plus helpers to sign records as a zone (with the zone's real key from a data directory, or
 * with a made-up one). Nothing of idns is mocked: the resolver under test talks real HTTP to these.
 */

/** One request a fake server received. */
export interface FakeRequest {
  method: string;
  path: string;
  /** The handle of `/v1/resolve/{handle}` or `/v1/lookup/{handle}`, decoded. */
  handle: string | undefined;
  /** The `zone` query parameter, decoded (`_root` stays as is). */
  zone: string | undefined;
}

export type FakeHandler = (req: IncomingMessage, res: ServerResponse, info: FakeRequest) => void | Promise<void>;

/** A running fake server. */
export interface FakeServer {
  url: string;
  port: number;
  /** Every request received, in order. */
  requests: FakeRequest[];
  /** TCP connections accepted (also counts connections that never sent a valid HTTP request). */
  connections: number;
  close(): Promise<void>;
}

/** Starts a fake server on a free loopback port; `handler` answers each request (or never does). */
export async function startFakeServer(handler: FakeHandler): Promise<FakeServer> {
  const sockets = new Set<Socket>();
  const fake: FakeServer = { url: '', port: 0, requests: [], connections: 0, close: async () => {} };
  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://fake');
    const m = /^\/v1\/(?:resolve|lookup)\/([^/]+)$/.exec(u.pathname);
    const info: FakeRequest = {
      method: req.method ?? 'GET',
      path: u.pathname,
      handle: m ? decodeURIComponent(m[1]!) : undefined,
      zone: u.searchParams.get('zone') ?? undefined,
    };
    fake.requests.push(info);
    Promise.resolve()
      .then(() => handler(req, res, info))
      .catch(() => res.destroy());
  });
  server.on('connection', (s: Socket) => {
    fake.connections += 1;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('fake server has no port');
  fake.port = addr.port;
  fake.url = `http://127.0.0.1:${addr.port}`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return fake;
}

/** Answers with a JSON body. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Fetches JSON from a real server (bounded), as a fake server does to replay genuine replies. */
export async function fetchJson(url: string): Promise<{ status: number; body: any }> {
  const res = await request(url, { signal: AbortSignal.timeout(5_000), headersTimeout: 5_000, bodyTimeout: 5_000 });
  const text = await res.body.text();
  return { status: res.statusCode, body: text === '' ? null : JSON.parse(text) };
}

/** The authoritative reply of a real server for a handle, asked of zone `zone` (root as `.`). */
export function resolveAt(serverUrl: string, handle: string, zone: string): Promise<{ status: number; body: any }> {
  return fetchJson(`${serverUrl}/v1/resolve/${encodeURIComponent(handle)}?zone=${encodeURIComponent(zone === '.' ? '_root' : zone)}`);
}

/** A zone's real private key, from a data directory (`<dataDir>/keys/<zone>/<kid>.jwk`, root: `_root`). */
export function zoneKey(dataDir: string, zone: string, kid: string): SigningKey {
  return readKeyFile(join(dataDir, 'keys', zone === '.' ? '_root' : zone, `${kid}.jwk`));
}

/** A new Ed25519 signing key. */
export function freshKey(): SigningKey {
  return signingKeyFromJwk(generatePrivateJwk());
}

/** Signing-time fields; default iat = now, exp = now + 1 day (seconds, from `nowSeconds`). */
export interface SignTimes {
  iat?: number;
  exp?: number;
  serial?: number;
}

/** Values of the right form (records/types.ts) for fields whose content a fake zone does not care about. */
export const FAKE_SALT = 'fa4e5a17fa4e5a17';
export const FAKE_OP = 'fake-op-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
export const FAKE_DIGEST = 'fake-digest-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

/** Signs records as one zone, in exactly the payload format of src/records/types.ts. */
export class ZoneSigner {
  constructor(
    readonly zone: string,
    readonly key: SigningKey,
    /** Seconds since the epoch used for iat/exp defaults (a test may tie it to a ManualClock). */
    private readonly nowSeconds: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  get kid(): string {
    return this.key.kid;
  }

  sign(type: string, fields: Record<string, unknown>, t: SignTimes = {}): string {
    const iat = t.iat ?? this.nowSeconds();
    const payload = { v: 1, type, zone: this.zone, serial: t.serial ?? 1, iat, exp: t.exp ?? iat + 86_400, ...fields };
    return signCompact(payload, this.key, RECORD_TYP);
  }

  zoneRecord(servers: string[], t: SignTimes & { keys?: PublicJwk[]; minimum?: number; ttl?: number; salt?: string } = {}): string {
    return this.sign(
      'zone',
      {
        primary: servers[0],
        servers,
        keys: t.keys ?? [this.key.publicJwk],
        refresh: 3600,
        retry: 300,
        expire: 604_800,
        minimum: t.minimum ?? 300,
        ttl: t.ttl ?? 3600,
        digest: FAKE_DIGEST,
        denial: { alg: 'sha256', salt: t.salt ?? FAKE_SALT },
      },
      t,
    );
  }

  delegation(name: string, servers: string[], ds: string[], t: SignTimes & { ttl?: number } = {}): string {
    return this.sign('delegation', { name, servers, ds, ttl: t.ttl ?? 3600 }, t);
  }

  /**
   * A handle record whose history is one operator entry of this zone (an `import` signed by the zone key:
   * a fake zone holds no owner's key), so that it follows from its history as a resolver checks; an answer
   * made by zoneReply carries that entry.
   */
  handle(handle: string, endpoint: string, keys: PublicJwk[], t: SignTimes & { ttl?: number } = {}): string {
    const entry = signOperatorEntry({ action: 'import', zone: this.zone, handle, endpoint, keys, iat: t.iat ?? this.nowSeconds() }, this.key);
    const op = requestId(entry);
    const record = this.sign('handle', { handle, endpoint, keys, ttl: t.ttl ?? 3600, op, genesis: op, seq: 1 }, t);
    HISTORIES.set(record, [[1, entry]]);
    return record;
  }

  denial(after: string | null, next: string | null, t: SignTimes & { ttl?: number; salt?: string; hashes?: string[] } = {}): string {
    return this.sign('denial', { after, next, hashes: t.hashes ?? [], hash: { alg: 'sha256', salt: t.salt ?? FAKE_SALT }, ttl: t.ttl ?? 300 }, t);
  }
}

/** The history of each handle record ZoneSigner.handle made, which an answer with it carries. */
const HISTORIES = new Map<string, NumberedEntry[]>();

/** The history ZoneSigner.handle made for a handle record (what its proof carries), numbered. */
export function historyOf(record: string): NumberedEntry[] {
  const history = HISTORIES.get(record);
  if (history === undefined) throw new Error('no history: the record was not made by ZoneSigner.handle');
  return history;
}

/** The body of an authoritative reply, as `GET /v1/resolve` sends it (an answer with its record's history, when ZoneSigner.handle made it). */
export function zoneReply(status: 'answer' | 'denial' | 'referral', zone: string, record: string, zoneRecord: string, ttl = 3600) {
  const history = status === 'answer' ? HISTORIES.get(record) : undefined;
  return history === undefined ? { status, zone, serial: 1, ttl, record, zoneRecord } : { status, zone, serial: 1, record, history, zoneRecord, ttl };
}

/** Decodes a compact JWS payload without verifying it. */
export function payloadOf(jws: string): any {
  return JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString('utf8'));
}

/** Replaces a JWS payload, keeping the header and the (now wrong) signature. */
export function withPayload(jws: string, payload: unknown): string {
  const [h, , s] = jws.split('.');
  return `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`;
}

/** Flips bits in a JWS signature. */
export function tamperSignature(jws: string): string {
  const [h, p, s] = jws.split('.') as [string, string, string];
  const sig = Buffer.from(s, 'base64url');
  sig[0] = sig[0]! ^ 0xff;
  sig[40] = sig[40]! ^ 0x01;
  return `${h}.${p}.${sig.toString('base64url')}`;
}

/** Resolves after `ms` (bounded waits in fake servers). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The log and map a zone holding `entries` and `records` (its history entries, in key order) would have were it built from its
 * content, ending with `zoneRecord` (docs/protocol.md §13): the checkpoint the zone key signs, and the log
 * section of a full transfer that carries it. For sources a test makes up.
 */
export function fakeLog(
  zone: string,
  key: SigningKey,
  zoneRecord: string,
  entries: readonly { key: string; record: string }[] = [],
  /** The zone's records (those the map holds are taken: handle, delegation and denial records). */
  records: readonly { type: string; key: string; jws: string }[] = [],
): { checkpoint: string; lines: object[] } {
  const frontier = new MerkleFrontier();
  const hashes: Buffer[] = [];
  const add = (hash: Buffer) => {
    hashes.push(hash);
    return frontier.append(hash)[0]!.index;
  };
  const leaves = entries.map((e) => add(changeLeafHash('put', 'op', e.key, e.record)!));
  add(zoneRecordLeafHash(zoneRecord));
  const lines: object[] = [{ kind: 'log', hashes: Buffer.concat(hashes).toString('base64') }];
  if (leaves.length > 0) lines.push({ kind: 'leaves', leaves });
  const mapped = new MapEntries();
  for (const r of records) if (isMapped(r.type)) mapped.add(mapKey(r.type, r.key), mapValue(r.jws));
  return { checkpoint: signCheckpoint(zone, frontier.size, frontier.root(), mapped.build(), key), lines };
}
