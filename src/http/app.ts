import { witnessRoutes } from './routes/witness.js';
import type { IncomingMessage } from 'node:http';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { AppContext } from '../context.js';
import { IdnsError } from '../errors.js';
import { body, errorResponse, tooLargeMessage } from './errors.js';
import type { Metrics } from './metrics.js';
import { LookupWire } from './lookup-wire.js';
import { observe } from './observe.js';
import { handleRoutes } from './routes/handles.js';
import { healthRoutes } from './routes/health.js';
import { lookupRoutes } from './routes/lookup.js';
import { operatorPageRoutes } from './routes/operator-page.js';
import { resolveRoutes } from './routes/resolve.js';
import { webfingerRoutes } from './routes/webfinger.js';
import { transferRoutes } from './routes/transfer.js';
import { zoneRoutes } from './routes/zones.js';

/** Whether the request came with a body that nothing has read. */
function unreadBody(c: Context): boolean {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (incoming === undefined) return false;
  const length = incoming.headers['content-length'];
  const hasBody = incoming.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  return hasBody && !c.req.raw.bodyUsed;
}

/** Builds the HTTP application over a server context; `wire` is shared with the lookup fast path. */
export function createApp(ctx: AppContext, wire: LookupWire = new LookupWire()): { app: Hono; metrics: Metrics } {
  const metrics = ctx.metrics;
  const app = new Hono();

  // Middleware here runs for the fast endpoints too only if src/http/fast/ mirrors it: the server
  // refuses to start until it does (fast/routes.ts `mirrors`, docs/architecture.md).
  app.use(
    '*',
    observe(ctx.log, metrics, (c) => ctx.rateLimits.addressOfContext(c)),
  );
  app.use(
    '*',
    bodyLimit({
      maxSize: ctx.config.limits.bodyBytes,
      // Thrown, to be answered and accounted by the one error mapping (errors.ts), as on the fast paths.
      onError: () => {
        throw new IdnsError('payload_too_large', tooLargeMessage(ctx.config.limits.bodyBytes));
      },
    }),
  );

  const lookups = ctx.rateLimits.perClient('lookups');
  const writes = ctx.rateLimits.perClient('writes');
  app.use('/v1/resolve/*', lookups);
  // `/v1/lookup/*` matches the batch endpoint `/v1/lookup` too: one registration, or batches are charged twice.
  app.use('/v1/lookup/*', lookups);
  app.use('/.well-known/webfinger', lookups);
  app.use('/v1/handles', writes);
  // Below /v1/handles/ only: `/v1/handles/*` also matches `/v1/handles`, whose writes would be charged twice.
  app.use('/v1/handles/:rest{.+}', async function handleLimits(c, next) {
    return c.req.method === 'GET' ? lookups(c, next) : writes(c, next);
  });

  app.route('/', resolveRoutes(ctx));
  app.route('/', lookupRoutes(ctx, wire));
  app.route('/', zoneRoutes(ctx));
  app.route('/', transferRoutes(ctx));
  app.route('/', witnessRoutes(ctx));
  app.route('/', handleRoutes(ctx));
  app.route('/', webfingerRoutes(ctx));
  app.route('/', healthRoutes(ctx, metrics));
  app.route('/', operatorPageRoutes(ctx));

  app.notFound((c) => c.json(body('invalid_request', `no such endpoint: ${c.req.method} ${c.req.path}`), 404));
  app.onError((err, c) => {
    const res = errorResponse(c, err, ctx.log);
    // A body refused unread (by the body or the client's limit) is not read on: the connection closes, as on the fast paths.
    if (unreadBody(c)) res.headers.set('connection', 'close');
    return res;
  });
  return { app, metrics };
}
