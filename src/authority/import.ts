import { IdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import { parsePublicJwk, thumbprint, type PublicJwk } from '../records/keys.js';
import type { Store } from '../store/store.js';
import { epochSeconds, type Clock } from '../clock.js';
import { DENIAL_FILL, GAP_START, nameHash } from '../records/denial.js';
import { RECORD_TYP, signCompactAsync } from '../records/jws.js';
import { parseEndpoint, requestId, MAX_HANDLE_KEYS } from './requests.js';
import { serialOf } from './serial.js';
import type { ZoneService } from './zones.js';

/** One handle of a bulk import: `{"handle": "...", "endpoint": "https://...", "keys": [JWK, ...]}`. */
export interface ImportLine {
  handle: string;
  endpoint: string;
  keys: PublicJwk[];
  /** The line's canonical JSON, kept as the handle's first history entry. */
  canonical: string;
}

/** What an import did. */
export interface ImportResult {
  zone: string;
  imported: number;
  serial: number;
}

/** Most lines one import takes; larger sets are split by the operator. */
export const MAX_IMPORT_LINES = 5_000_000;

/**
 * Bulk import by the operator (migrating a directory, seeding a zone): NDJSON, one handle per line.
 * Everything is validated first, so a bad line changes nothing and the error names its line. Then every
 * handle record and the whole new set of denials (rebuilt once from the sorted hashes, cheaper than
 * adding one name at a time) are signed on every core, and stored in one transaction and one serial. The import is not
 * journaled: secondaries take a full transfer, which for a bulk change is smaller anyway.
 */
export async function importHandles(store: Store, zones: ZoneService, clock: Clock, zone: string, text: string): Promise<ImportResult> {
  const row = zones.require(zone);
  const settings = zones.settings(row);
  const lines = parseImport(text, (host) => {
    const holder = zones.closestHosted(host);
    if (holder?.name !== zone) return `it belongs to zone ${holder?.name ?? '(none held here)'}, not ${zone}`;
    if (zones.cutFor(row, host)) return `${host} is delegated away from ${zone}`;
    return null;
  }, settings.allowLoopbackEndpoints);
  const existing = store.records.keys(row.content, 'handle');
  const known = new Set(existing);
  for (const l of lines) if (known.has(l.handle)) throw new IdnsError('handle_exists', `${l.handle} is already registered in ${zone}`);

  // Sign everything first, on every core (the thread pool), for the serial this import will have; the
  // transaction below only stores, and refuses if the zone changed meanwhile.
  const version = row.version + 1;
  const key = zones.signingKey(row);
  const iat = epochSeconds(clock);
  const exp = iat + settings.signatureValidity;
  const base = { v: 1, zone, serial: serialOf(version), iat, exp };
  const ops = lines.map((l) => requestId(l.canonical));
  const handleJws = await Promise.all(
    lines.map((l, i) => signCompactAsync({ ...base, type: 'handle', handle: l.handle, endpoint: l.endpoint, keys: l.keys, ttl: settings.handleTtl, op: ops[i] }, key, RECORD_TYP)),
  );
  const names = [...existing, ...lines.map((l) => l.handle), ...store.records.keys(row.content, 'delegation')];
  const hashes = [...new Set(names.map((n) => nameHash(row.salt, n)))].sort();
  const gaps = await Promise.all(
    denialRuns(hashes).map((run) => {
      const fields = { ...run, hash: { alg: 'sha256', salt: row.salt }, ttl: settings.minimum };
      return signCompactAsync({ ...base, type: 'denial', ...fields }, key, RECORD_TYP).then((jws) => ({ key: run.after ?? GAP_START, jws }));
    }),
  );

  return store.write(() => {
    const editor = zones.editor(zone);
    if (editor.zone.version !== row.version) throw new IdnsError('stale_prev', `zone ${zone} changed during the import; run it again`);
    editor.journaling = false;
    editor.beginChange();
    const receivedAt = clock.now();
    lines.forEach((l, i) => {
      editor.putSigned('handle', l.handle, handleJws[i]!, exp);
      store.operations.insert({ cid: ops[i]!, zone, handle: l.handle, action: 'import', version, jws: l.canonical, receivedAt });
    });
    for (const old of store.records.keys(editor.zone.content, 'denial')) editor.remove('denial', old);
    for (const g of gaps) editor.putSigned('denial', g.key, g.jws, exp);
    editor.commit();
    // Changes up to this version are not in the journal: secondaries must copy the zone whole.
    store.journal.clear(zone);
    store.zones.setJournalFloor(zone, version);
    return { zone, imported: lines.length, serial: serialOf(version) };
  });
}

/** Cuts the ascending hashes of all of a zone's names into denials of DENIAL_FILL hashes, bounded by the hashes between them. */
export function denialRuns(hashes: readonly string[]): { after: string | null; next: string | null; hashes: string[] }[] {
  const runs = [];
  let after: string | null = null;
  for (let i = 0; ; i += DENIAL_FILL + 1) {
    const next = hashes[i + DENIAL_FILL] ?? null;
    runs.push({ after, next, hashes: hashes.slice(i, i + DENIAL_FILL) });
    if (next === null) return runs;
    after = next;
  }
}

/** Parses and validates every line; `belongs` says why a host is not in the zone, or null. */
export function parseImport(text: string, belongs: (host: string) => string | null, allowLoopbackEndpoints: boolean): ImportLine[] {
  const out: ImportLine[] = [];
  const seen = new Set<string>();
  let lineNo = 0;
  for (const raw of text.split('\n')) {
    lineNo += 1;
    if (raw.trim() === '') continue;
    if (out.length >= MAX_IMPORT_LINES) throw new IdnsError('invalid_request', `more than ${MAX_IMPORT_LINES} lines; split the import`);
    const fail = (message: string): never => {
      throw new IdnsError('invalid_request', `line ${lineNo}: ${message}`);
    };
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      fail('not valid JSON');
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('expected {"handle", "endpoint", "keys"}');
    const o = v as { handle?: unknown; endpoint?: unknown; keys?: unknown };
    const extra = Object.keys(o).filter((k) => k !== 'handle' && k !== 'endpoint' && k !== 'keys');
    if (extra.length > 0) fail(`unexpected member "${extra[0]}"`);
    if (typeof o.handle !== 'string' || typeof o.endpoint !== 'string' || !Array.isArray(o.keys)) fail('expected {"handle", "endpoint", "keys"}');
    try {
      const { handle, host } = parseHandle(o.handle as string);
      const why = belongs(host);
      if (why) fail(`${handle}: ${why}`);
      if (seen.has(handle)) fail(`${handle} appears twice`);
      seen.add(handle);
      parseEndpoint(o.endpoint as string, allowLoopbackEndpoints);
      const keys = (o.keys as unknown[]).map((k, i) => parsePublicJwk(k, `keys[${i}]`));
      if (keys.length === 0 || keys.length > MAX_HANDLE_KEYS) fail(`1 to ${MAX_HANDLE_KEYS} keys`);
      if (new Set(keys.map(thumbprint)).size !== keys.length) fail('the same key is listed twice');
      const line = { handle, endpoint: o.endpoint as string, keys };
      out.push({ ...line, canonical: JSON.stringify(line) });
    } catch (err) {
      if (err instanceof IdnsError && !err.message.startsWith(`line ${lineNo}:`)) fail(err.message);
      throw err;
    }
  }
  return out;
}
