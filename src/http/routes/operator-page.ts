import { Hono, type Context } from 'hono';
import type { AppContext } from '../../context.js';
import { CONTENT_SECURITY_POLICY } from '../operator-page/assets.js';
import { gatherLookup, gatherOperatorPage } from '../operator-page/data.js';
import { renderLookup, renderOperatorPage } from '../operator-page/render.js';

/**
 * The operator page at `GET /`: the zones held here and a lookup box showing the chain of trust.
 * `?lookup=HANDLE` renders a lookup server-side; `&fragment=lookup` returns only the lookup's result,
 * for the page's script. Data gathering is in operator-page/data.ts, HTML in operator-page/render.ts.
 */
export function operatorPageRoutes(ctx: AppContext): Hono {
  const app = new Hono();
  app.get('/', async (c) => {
    const lookup = c.req.query('lookup');
    // A lookup costs what a /v1/lookup request costs; a refusal is shown on the page like any error.
    const beforeLookup = () => {
      if (ctx.rateLimits.config.enabled) ctx.rateLimits.lookups.take(ctx.rateLimits.keyOfContext(c), 1);
    };
    secureHeaders(c);
    if (c.req.query('fragment') === 'lookup') {
      const view = await gatherLookup(ctx, lookup, { beforeLookup });
      return c.html(view ? renderLookup(view, ctx.clock.now()) : '');
    }
    return c.html(renderOperatorPage(await gatherOperatorPage(ctx, lookup, { beforeLookup })));
  });
  return app;
}

function secureHeaders(c: Context): void {
  c.header('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  c.header('X-Content-Type-Options', 'nosniff');
  c.header('Referrer-Policy', 'no-referrer');
  c.header('X-Frame-Options', 'DENY');
  c.header('Cache-Control', 'no-store');
}
