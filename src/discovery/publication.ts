import { IdnsError } from '../errors.js';
import { isNormalZoneName, ROOT } from '../names/zone.js';
import { RECORD_LIMITS, SHA256_B64U } from '../records/types.js';
import { serverUrlProblem } from '../records/urls.js';

/**
 * A zone published where resolvers without an idns root look (DESIGN.md, "Finding zones without a root"):
 * a TXT record at `_idns.<zone>` and a JSON document at `https://<zone>/.well-known/idns`. Both say the
 * same three things, written by `idns zone publish` and read by discovery, with one parser each and the
 * same bounds as the zone's own records (a publication naming what no honest zone signs is refused).
 */
export interface Publication {
  /** The zone's name (normal form, no trailing dot). */
  zone: string;
  /** RFC 7638 thumbprints of the zone's keys: a zone record is trusted when signed by one of them. */
  ds: string[];
  /** URLs of the zone's idns servers. */
  servers: string[];
}

/** Bounds of what a publication may hold and how much of one is read. */
export const PUBLICATION_LIMITS = {
  /** Thumbprints in `ds`: as many as a zone record's keys. */
  maxDs: RECORD_LIMITS.maxZoneKeys,
  maxServers: RECORD_LIMITS.maxServers,
  /** Longest TXT value (the record's strings concatenated), bytes. */
  maxTxtBytes: 4096,
  /** Largest `/.well-known/idns` document read, bytes. */
  maxDocumentBytes: 16 * 1024,
} as const;

/** The owner name of a zone's TXT record, fully qualified: `_idns.example.com.`. */
export function txtName(zone: string): string {
  if (zone === ROOT) throw new IdnsError('invalid_zone_name', 'the root zone is not published in DNS: resolvers are configured with it');
  return `_idns.${zone}.`;
}

/** Where a zone's HTTPS document lives. */
export function wellKnownUrl(zone: string): string {
  if (zone === ROOT) throw new IdnsError('invalid_zone_name', 'the root zone has no /.well-known/idns document');
  return `https://${zone}/.well-known/idns`;
}

/** The TXT value: `v=idns1; ds=<thumbprint>[,…]; servers=<url>[,…]`. */
export function formatTxt(p: Publication): string {
  check(p);
  return `v=idns1; ds=${p.ds.join(',')}; servers=${p.servers.join(',')}`;
}

/** The TXT value split into strings of at most 255 bytes, as a zone-file line quotes them. */
export function txtStrings(value: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < value.length; i += 255) out.push(value.slice(i, i + 255));
  return out;
}

/** The `/.well-known/idns` document. */
export function formatDocument(p: Publication): { v: 1; zone: string; ds: string[]; servers: string[] } {
  check(p);
  return { v: 1, zone: p.zone, ds: [...p.ds], servers: [...p.servers] };
}

/**
 * Reads a TXT value found at `_idns.<zone>`. Fields are `key=value` separated by `;` (spaces around them
 * ignored); `v=idns1` comes first; `ds` and `servers` once each; other keys are ignored, so that later
 * versions can add some. Throws invalid_publication with the reason.
 */
export function parseTxt(value: string, zone: string): Publication {
  if (value.length > PUBLICATION_LIMITS.maxTxtBytes) throw bad(zone, `the TXT value is longer than ${PUBLICATION_LIMITS.maxTxtBytes} bytes`);
  const fields = value.split(';').map((f) => f.trim());
  if (fields[fields.length - 1] === '') fields.pop();
  if (fields[0] !== 'v=idns1') throw bad(zone, 'the TXT value does not start with v=idns1');
  const seen = new Map<string, string>();
  for (const field of fields.slice(1)) {
    const eq = field.indexOf('=');
    if (eq <= 0) throw bad(zone, `malformed field ${JSON.stringify(field.slice(0, 40))}`);
    const key = field.slice(0, eq).trim().toLowerCase();
    if (seen.has(key)) throw bad(zone, `field ${key} appears twice`);
    seen.set(key, field.slice(eq + 1).trim());
  }
  const list = (key: string): string[] => {
    const v = seen.get(key);
    if (v === undefined || v === '') throw bad(zone, `the TXT value has no ${key}`);
    return v.split(',').map((s) => s.trim());
  };
  const p = { zone, ds: list('ds'), servers: list('servers') };
  check(p);
  return p;
}

/** Reads a `/.well-known/idns` document (already parsed JSON) for `zone`. Throws invalid_publication. */
export function parseDocument(body: unknown, zone: string): Publication {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw bad(zone, 'the document is not a JSON object');
  const b = body as Record<string, unknown>;
  if (b.v !== 1) throw bad(zone, 'the document is not version 1');
  if (b.zone !== zone) throw bad(zone, `the document is for ${JSON.stringify(b.zone)}, not ${zone}`);
  const strings = (key: string): string[] => {
    const v = b[key];
    if (!Array.isArray(v) || !v.every((x): x is string => typeof x === 'string')) throw bad(zone, `the document's ${key} is not an array of strings`);
    return v;
  };
  const p = { zone, ds: strings('ds'), servers: strings('servers') };
  check(p);
  return p;
}

/** The same bounds on both sides: what publish writes, discovery accepts, and nothing else. */
function check(p: Publication): void {
  if (!isNormalZoneName(p.zone) || p.zone === ROOT) throw bad(p.zone, 'not a normal zone name');
  if (p.ds.length === 0 || p.ds.length > PUBLICATION_LIMITS.maxDs) throw bad(p.zone, `ds must name 1–${PUBLICATION_LIMITS.maxDs} thumbprints`);
  if (p.servers.length === 0 || p.servers.length > PUBLICATION_LIMITS.maxServers)
    throw bad(p.zone, `servers must name 1–${PUBLICATION_LIMITS.maxServers} URLs`);
  for (const t of p.ds) if (!SHA256_B64U.test(t)) throw bad(p.zone, `${JSON.stringify(t.slice(0, 60))} is not a key thumbprint`);
  if (new Set(p.ds).size !== p.ds.length) throw bad(p.zone, 'ds names a thumbprint twice');
  for (const s of p.servers) {
    const problem = serverUrlProblem(s);
    // A comma or semicolon inside a URL would read back as two fields: refused on both sides.
    if (problem !== null) throw bad(p.zone, `server ${JSON.stringify(s.slice(0, 80))} ${problem}`);
    if (/[,;]/.test(s)) throw bad(p.zone, `server ${JSON.stringify(s.slice(0, 80))} contains , or ;`);
  }
}

function bad(zone: string, why: string): IdnsError {
  return new IdnsError('invalid_publication', `the publication of zone ${zone} is not valid: ${why}`);
}
