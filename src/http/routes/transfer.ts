import { Hono, type Context } from 'hono';
import type { AppContext } from '../../context.js';
import { epochSeconds } from '../../clock.js';
import { IdnsError } from '../../errors.js';
import { verifyAuthorization } from '../../replication/credentials.js';
import { openTransfer } from '../../replication/transfer-source.js';
import { outgoingOf, streamedBody } from '../streamed-body.js';
import { zoneFromPath } from './zones.js';
import { serialOf } from '../../records/serial.js';

/** Zone transfer (full or incremental) and notify, between a zone's servers. */
export function transferRoutes(ctx: AppContext): Hono {
  const app = new Hono();

  app.get('/v1/zones/:zone/transfer', async (c) => {
    const zone = zoneFromPath(c.req.param('zone'));
    const row = ctx.zones.require(zone);
    // A zone with named secondaries transfers only to them; without any, the zone is public data anyway.
    const acl = ctx.credentials.allowed(zone);
    const named = Object.keys(acl).length > 0 ? authenticate(c, ctx, new Uint8Array(0), (name) => acl[name]?.secret) : null;
    const sinceRaw = c.req.query('since');
    if (sinceRaw !== undefined && !/^\d{1,10}$/.test(sinceRaw)) throw new IdnsError('invalid_request', 'since must be a serial (0 to 4294967295)');
    const since = sinceRaw === undefined ? null : Number(sinceRaw);
    if (since !== null && since > 0xffffffff) throw new IdnsError('invalid_request', 'since must be a serial (0 to 4294967295)');
    const unavailable = ctx.zones.unavailable(row);
    if (unavailable) throw new IdnsError('zone_unavailable', unavailable);
    const transfer = openTransfer(ctx.store.path, { zone, since, format: c.req.query('format') });
    ctx.peers.transferred(zone, named ?? ctx.rateLimits.addressOfContext(c), serialOf(row.version), since === null ? 'full' : 'incremental');
    const body = await streamedBody(transfer.body, outgoingOf(c.env), ctx.log, `transfer of ${zone}`);
    return new Response(body, { status: 200, headers: { 'content-type': transfer.contentType, 'cache-control': 'no-store' } });
  });

  app.post('/v1/zones/:zone/notify', async (c) => {
    const zone = zoneFromPath(c.req.param('zone'));
    // The mac covers the body's bytes as sent, so they are read undecoded.
    const body = new Uint8Array(await c.req.arrayBuffer());
    const row = ctx.zones.require(zone);
    if (row.role !== 'secondary') throw new IdnsError('invalid_request', `zone ${zone} is not a secondary here; notifies are for secondaries`);
    const own = ctx.credentials.own(zone);
    if (own) authenticate(c, ctx, body, (name) => (name === own.name ? own.secret : undefined));
    ctx.replicator.notify(zone);
    return c.json({ zone, status: 'check_scheduled' }, 202);
  });

  return app;
}

/** Checks the request's transfer credentials (docs/protocol.md §11.4); every route that takes them goes through here. */
function authenticate(c: Context, ctx: AppContext, body: Uint8Array, secretOf: (name: string) => string | undefined): string {
  // The target as the URL parser normalises it: what a client that sends normal targets signed.
  const url = new URL(c.req.url);
  const req = { method: c.req.method, target: `${url.pathname}${url.search}`, body };
  return verifyAuthorization(c.req.header('authorization'), req, epochSeconds(ctx.clock), secretOf, ctx.authNonces);
}
