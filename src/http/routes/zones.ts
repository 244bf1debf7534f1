import { Hono } from 'hono';
import type { AppContext } from '../../context.js';
import { parseZoneName } from '../../names/zone.js';
import { serialOf } from '../../records/serial.js';
import { IdnsError } from '../../errors.js';
import { ZoneDigest } from '../../records/digest.js';

/** Spelling of the root zone in a URL path, because URL parsers drop a `.` path segment. */
export const ROOT_IN_PATH = '_root';

/** Parses a zone name from a URL (path segment or query), where the root may be written `_root`. */
export function zoneFromPath(raw: string): string {
  return parseZoneName(raw === ROOT_IN_PATH ? '.' : raw);
}

/** A leaf number or tree size from the query: a decimal integer below 2^53. */
function treeIndex(raw: string | undefined, name: string): number {
  if (raw === undefined || !/^(0|[1-9][0-9]{0,15})$/.test(raw) || !Number.isSafeInteger(Number(raw))) {
    throw new IdnsError('invalid_request', `${name} must be a whole number (0 to 2^53 - 1)`);
  }
  return Number(raw);
}

/** `GET /v1/zones/{zone}`: the signed zone record; its log's checkpoint and proofs (docs/protocol.md §13). */
export function zoneRoutes(ctx: AppContext): Hono {
  const app = new Hono();
  app.get('/v1/zones/:zone', (c) => {
    const name = zoneFromPath(c.req.param('zone'));
    const row = ctx.zones.require(name);
    const record = ctx.zones.zoneRecord(row);
    if (record === null) throw new IdnsError('zone_unavailable', `zone ${name} has not been loaded yet`);
    // An expired secondary must not vouch for its copy, or replicas chained from it would never expire.
    const unavailable = ctx.zones.unavailable(row);
    if (unavailable) throw new IdnsError('zone_unavailable', unavailable);
    c.header('Cache-Control', `public, max-age=${Math.min(record.ttl, record.refresh)}`);
    // The digest of the content this server holds (its own running state, not the one the record claims):
    // equal digests on two servers prove they hold the same records.
    return c.json({
      zone: row.name,
      serial: serialOf(row.version),
      role: row.role,
      digest: ZoneDigest.fromState(row.digestState).value(),
      record: row.record,
      ...(row.checkpoint === '' ? {} : { checkpoint: row.checkpoint, witnesses: ctx.zoneLogs.witnessKeys(row.checkpoint) }),
    });
  });
  // A new checkpoint comes with every version: cached no longer than a second, like the answers.
  app.get('/v1/zones/:zone/checkpoint', (c) => {
    const checkpoint = ctx.zoneLogs.checkpoint(zoneFromPath(c.req.param('zone')));
    c.header('Cache-Control', 'public, max-age=1');
    return c.text(checkpoint, 200, { 'content-type': 'text/plain; charset=utf-8' });
  });
  app.get('/v1/zones/:zone/log/inclusion', (c) => {
    const zone = zoneFromPath(c.req.param('zone'));
    return c.json(ctx.zoneLogs.inclusion(zone, treeIndex(c.req.query('leaf'), 'leaf'), treeIndex(c.req.query('size'), 'size')));
  });
  app.get('/v1/zones/:zone/log/consistency', (c) => {
    const zone = zoneFromPath(c.req.param('zone'));
    return c.json(ctx.zoneLogs.consistency(zone, treeIndex(c.req.query('from'), 'from'), treeIndex(c.req.query('to'), 'to')));
  });
  return app;
}
