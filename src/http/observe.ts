import { randomUUID } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { matchedRoutes, routePath } from 'hono/route';
import type { Logger } from '../log.js';
import type { Metrics, Tally } from './metrics.js';

/** What a handler reports about its request, for the request log and the query metrics. */
export interface RequestFacts {
  /** authoritative, resolver, change, webfinger… */
  role?: string;
  zone?: string;
  /** answer, denial, referral, found, not_found, accepted, or the error code. */
  outcome?: string;
  action?: string;
}

const facts = new WeakMap<Request, RequestFacts>();

/** Adds facts about the current request (merged with what was said before). */
export function note(c: Context, add: RequestFacts): void {
  facts.set(c.req.raw, { ...facts.get(c.req.raw), ...add });
}

/** A client's X-Request-Id that is echoed and logged as it is; anything else gets a new id. */
const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** The id of a request: the client's X-Request-Id when it is sane (a repeated header, joined with ", ", is not), else a new one. */
export function requestIdFor(given: string | undefined): string {
  return given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
}

/**
 * The one accounting of a finished request, for the application (`observe`) and the fast paths alike:
 * the request metrics (through `tally` when the caller keeps one bound to this route, status and
 * outcome, else by label), the query or change count the facts name, and the request log line.
 */
export function account(
  log: Logger,
  metrics: Metrics,
  tally: Tally | null,
  id: string,
  method: string,
  route: string,
  status: number,
  elapsedMs: number,
  f: RequestFacts | undefined,
  client: () => string,
): void {
  if (tally !== null) tally.add(elapsedMs / 1000);
  else {
    metrics.request(route, method, status, elapsedMs / 1000);
    if (f?.role && f.outcome) {
      if (f.role === 'change') metrics.changes.inc({ action: f.action ?? 'unknown', outcome: f.outcome });
      else metrics.queries.inc({ role: f.role, outcome: f.outcome });
    }
  }
  const level = status >= 500 ? 'warn' : 'info';
  // Built only when written: the busiest servers log at warn.
  if (!log.enabled(level)) return;
  const ms = Math.round(elapsedMs * 100) / 100;
  const line = { reqId: id, client: client(), method, route, status, ms, ...(f?.zone ? { zone: f.zone } : {}), ...(f?.outcome ? { outcome: f.outcome } : {}) };
  log[level]('request', line);
}

/**
 * The route pattern a request is accounted under: its endpoint's, also when a middleware before the
 * endpoint answered it (a rate limit, the body limit), so both paths label it alike; a request no
 * endpoint matches keeps the pattern of the last middleware that ran.
 */
function routeOf(c: Context): string {
  const matched = matchedRoutes(c);
  for (let i = matched.length - 1; i >= 0; i--) if (matched[i]!.method !== 'ALL') return matched[i]!.path;
  return routePath(c);
}

/**
 * One structured log line and the metrics of every request: a request id (the client's X-Request-Id when
 * it is sane, else a new one, echoed in the response), the client's address (behind a trusted proxy, the
 * one it forwards), the route pattern, status, duration, and what the
 * handler noted (zone, outcome). Never bodies, keys or invite codes; the path is logged as the route
 * pattern, so no raw input reaches a metric label.
 */
export function observe(log: Logger, metrics: Metrics, clientOf: (c: Context) => string): MiddlewareHandler {
  return async function observeRequest(c, next) {
    const started = performance.now();
    const id = requestIdFor(c.req.header('x-request-id'));
    await next();
    c.res.headers.set('X-Request-Id', id);
    account(log, metrics, null, id, c.req.method, routeOf(c), c.res.status, performance.now() - started, facts.get(c.req.raw), () => clientOf(c));
  };
}
