import { IdnsError } from '../errors.js';
import { parseHandle } from '../names/handle.js';
import { parseIJson } from '../records/ijson.js';
import { parsePublicJwk, thumbprint, type PublicJwk } from '../records/keys.js';
import { MAX_HANDLE_KEYS } from '../records/types.js';
import { parseEndpoint } from '../records/urls.js';

/** One handle of a bulk import: `{"handle": "...", "endpoint": "https://...", "keys": [JWK, ...]}`. */
export interface ImportLine {
  handle: string;
  /** The handle's host (the zone, or a name below it that must not be delegated away). */
  host: string;
  endpoint: string;
  keys: PublicJwk[];
}

/** Parses and validates one line of an import on its own (whether its host belongs to the zone is checked by the caller). */
export function parseImportLine(raw: string, lineNo: number, allowLoopbackEndpoints: boolean): ImportLine {
  const fail = (message: string): never => {
    throw new IdnsError('invalid_request', `line ${lineNo}: ${message}`);
  };
  let v: unknown;
  try {
    // I-JSON: a member twice ("handle" twice) would be read as whichever one JSON.parse keeps.
    v = parseIJson(raw, 'the line', 'invalid_request');
  } catch (err) {
    fail(err instanceof IdnsError ? err.message.replace(/^the line (is )?/, '') : 'not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('expected {"handle", "endpoint", "keys"}');
  const o = v as { handle?: unknown; endpoint?: unknown; keys?: unknown };
  for (const k in o) if (k !== 'handle' && k !== 'endpoint' && k !== 'keys') fail(`unexpected member "${k}"`);
  if (typeof o.handle !== 'string' || typeof o.endpoint !== 'string' || !Array.isArray(o.keys)) fail('expected {"handle", "endpoint", "keys"}');
  try {
    const { handle, host } = parseHandle(o.handle as string);
    parseEndpoint(o.endpoint as string, allowLoopbackEndpoints);
    const keys = (o.keys as unknown[]).map((k, i) => parsePublicJwk(k, `keys[${i}]`));
    if (keys.length === 0 || keys.length > MAX_HANDLE_KEYS) fail(`1 to ${MAX_HANDLE_KEYS} keys`);
    // Thumbprints are hashes: only worth computing when there are two keys to compare.
    if (keys.length > 1 && new Set(keys.map(thumbprint)).size !== keys.length) fail('the same key is listed twice');
    return { handle, endpoint: o.endpoint as string, keys, host };
  } catch (err) {
    if (err instanceof IdnsError && !err.message.startsWith(`line ${lineNo}:`)) fail(err.message);
    throw err;
  }
}
