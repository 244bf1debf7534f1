import { Hono } from 'hono';
import type { AppContext } from '../../context.js';
import { parseZoneName } from '../../names/zone.js';
import { serialOf } from '../../authority/serial.js';

/** Spelling of the root zone in a URL path, because URL parsers drop a `.` path segment. */
export const ROOT_IN_PATH = '_root';

/** Parses a zone name from a URL (path segment or query), where the root may be written `_root`. */
export function zoneFromPath(raw: string): string {
  return parseZoneName(raw === ROOT_IN_PATH ? '.' : raw);
}

/** `GET /v1/zones/{zone}`: the signed zone record. */
export function zoneRoutes(ctx: AppContext): Hono {
  const app = new Hono();
  app.get('/v1/zones/:zone', (c) => {
    const name = zoneFromPath(c.req.param('zone'));
    const row = ctx.zones.require(name);
    const settings = ctx.zones.settings(row);
    c.header('Cache-Control', `public, max-age=${Math.min(settings.ttl, settings.refresh)}`);
    return c.json({ zone: row.name, serial: serialOf(row.version), record: row.record });
  });
  return app;
}
