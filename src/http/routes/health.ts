import { Hono } from 'hono';
import type { AppContext } from '../../context.js';
import type { Metrics } from '../metrics.js';

/** Liveness, readiness and metrics. */
export function healthRoutes(ctx: AppContext, metrics: Metrics): Hono {
  const app = new Hono();
  // Alive: the process answers HTTP. Nothing else is checked, so a supervisor restarts only a hung process.
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  // Ready: every zone is loaded and answerable: a primary's signing key is readable, a secondary holds a
  // copy that has not expired.
  app.get('/readyz', (c) => {
    const problems: { zone: string; problem: string }[] = [];
    for (const row of ctx.zones.list()) {
      if (row.role === 'primary' && !ctx.zones.settings(row).keyIds.every((kid) => ctx.keys.has(row.name, kid))) {
        problems.push({ zone: row.name, problem: 'signing key file missing' });
      }
      const unavailable = ctx.zones.unavailable(row);
      if (unavailable) problems.push({ zone: row.name, problem: unavailable });
    }
    const zones = ctx.zones.list().map((z) => z.name);
    return c.json({ status: problems.length === 0 ? 'ready' : 'not_ready', zones, problems }, problems.length === 0 ? 200 : 503);
  });
  app.get('/metrics', async (c) => {
    c.header('Content-Type', metrics.registry.contentType);
    return c.body(await metrics.registry.metrics());
  });
  return app;
}
