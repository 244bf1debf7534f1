import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import type { AppContext } from '../context.js';
import { IdnsError } from '../errors.js';
import { serialLess, serialOf } from '../records/serial.js';
import { errorReply } from './errors.js';
import type { RunningServer } from './server.js';
import { zoneFromPath } from './routes/zones.js';

/** The control socket's file in a data directory (mode 0600, like knotc's). */
export function controlSocketPath(dataDir: string): string {
  return join(dataDir, 'control.sock');
}

/**
 * The control socket of a running server (`idns ctl`, docs/operations.md): HTTP over a Unix socket in
 * the data directory, mode 0600, so only the server's own user reaches it. status, refresh, retransfer,
 * notify, reload. A stale socket file (a server that died) is replaced; one a live server answers on
 * refuses the start.
 */
export async function startControl(ctx: AppContext, running: RunningServer): Promise<{ path: string; close: () => Promise<void> }> {
  const path = controlSocketPath(ctx.config.dataDir);
  if (existsSync(path)) {
    if (await answers(path)) throw new IdnsError('invalid_config', `another server runs on ${ctx.config.dataDir} (its control socket ${path} answers)`);
    unlinkSync(path);
  }
  const app = controlApp(ctx, running);
  const server: Server = createServer(getRequestListener(app.fetch, { hostname: 'localhost' }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // The data directory is 0700 already; the socket itself is the owner's only too.
  chmodSync(path, 0o600);
  return {
    path,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      if (existsSync(path)) unlinkSync(path);
    },
  };
}

function controlApp(ctx: AppContext, running: RunningServer): Hono {
  const app = new Hono();
  app.onError((err) => {
    const reply = errorReply(err, '', '', ctx.log);
    return Response.json(reply.body, { status: reply.status });
  });
  app.get('/status', (c) => {
    const statuses = new Map(ctx.replicator.statuses().map((s) => [s.zone, s]));
    const zones = ctx.zones.list().map((row) => {
      const serial = row.record === '' ? null : serialOf(row.version);
      const s = statuses.get(row.name);
      const primarySerial = s?.primarySerial ?? null;
      return {
        zone: row.name,
        role: row.role,
        serial,
        ...(row.role === 'primary'
          ? { fencedBy: ctx.zones.settings(row).fencedBy ?? null, rollover: ctx.zones.settings(row).rollover ?? null }
          : {
              primarySerial,
              behind: serial === null || primarySerial === null ? null : serialLess(serial, primarySerial),
              lastSuccess: s?.lastSuccess ?? row.refreshedAt,
              lastError: s?.lastError ?? null,
              transfers: s?.transfers ?? null,
            }),
      };
    });
    return c.json({ url: running.url, zones });
  });
  const secondary = (raw: string) => {
    const zone = zoneFromPath(raw);
    if (ctx.zones.require(zone).role !== 'secondary')
      throw new IdnsError('invalid_request', `zone ${zone} is the primary here: it is not copied from anywhere`);
    return zone;
  };
  app.post('/zones/:zone/refresh', async (c) => c.json(await ctx.replicator.checkNow(secondary(c.req.param('zone')))));
  app.post('/zones/:zone/retransfer', async (c) => c.json(await ctx.replicator.retransfer(secondary(c.req.param('zone')))));
  app.post('/zones/:zone/notify', (c) => {
    const zone = zoneFromPath(c.req.param('zone'));
    ctx.zones.require(zone);
    ctx.notifier.zoneChanged(zone);
    return c.json({ zone, targets: ctx.notifier.targets(zone).map((t) => t.url) });
  });
  app.post('/reload', (c) => {
    // What a running server reads once: the TLS certificate files. Zones, credentials and settings are
    // read as they change already (the data directory is watched by the server's scans).
    return c.json({ tls: running.reloadTls() ? 'reloaded' : 'not serving HTTPS' });
  });
  return app;
}

/** True when a server answers on the socket (a live one; a stale file refuses the connection). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath: path, path: '/status', method: 'GET', timeout: 2000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}
