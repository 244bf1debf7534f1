import { randomUUID } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import type { Logger } from '../log.js';
import type { Metrics } from './metrics.js';

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
 * One structured log line and the metrics of every request: a request id (the client's X-Request-Id when
 * it is sane, else a new one, echoed in the response), the route pattern, status, duration, and what the
 * handler noted (zone, outcome). Never bodies, keys or invite codes; the path is logged as the route
 * pattern, so no raw input reaches a metric label.
 */
export function observe(log: Logger, metrics: Metrics): MiddlewareHandler {
  return async function observeRequest(c, next) {
    const started = performance.now();
    const given = c.req.header('x-request-id');
    const id = requestIdFor(given);
    await next();
    c.res.headers.set('X-Request-Id', id);
    const f = facts.get(c.req.raw) ?? {};
    const route = c.req.routePath;
    const status = c.res.status;
    const elapsed = performance.now() - started;
    metrics.request(route, c.req.method, status, elapsed / 1000);
    if (f.role && f.outcome) {
      if (f.role === 'change') metrics.changes.inc({ action: f.action ?? 'unknown', outcome: f.outcome });
      else metrics.queries.inc({ role: f.role, outcome: f.outcome });
    }
    const ms = Math.round(elapsed * 100) / 100;
    const line = { reqId: id, method: c.req.method, route, status, ms, ...(f.zone ? { zone: f.zone } : {}), ...(f.outcome ? { outcome: f.outcome } : {}) };
    if (status >= 500) log.warn('request', line);
    else log.info('request', line);
  };
}
