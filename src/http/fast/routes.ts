import type { Hono } from 'hono';
import type { ClientTable } from '../rate-limits.js';
import type { RequestFacts } from '../observe.js';

/**
 * An endpoint the fast paths answer beside the application (docs/architecture.md):
 * how it is matched, what the application runs for it and what the fast path therefore mirrors.
 */
export interface FastRoute {
  /** The one method served fast; others (HEAD included) go to the application. */
  method: 'GET' | 'POST';
  /** The application's route pattern, which the request log and the metrics name. */
  pattern: string;
  /** The one query string served fast (`log=1`), or none: a request with another query goes to the application. */
  query?: string;
  /** A path the pattern matches, for the startup check. */
  sample: string;
  /** The parameter the path carries (the raw, undecoded segment; '' when there is none), or null when the path is not this endpoint's. */
  match(url: string): string | null;
  /** Whether the request carries a body (POST); a GET with one goes to the application. */
  body: boolean;
  /** The per-client bucket the request is charged to. */
  limit: ClientTable;
  /** What the application's handler notes before its work, so an error it throws is accounted alike. */
  facts: Readonly<RequestFacts>;
  /**
   * The application's chain for this endpoint, by name and in order (middleware by function name, the
   * route as `METHOD pattern`): the fast path mirrors each step (dispatch.ts). The server refuses to
   * start when the application's chain differs, so a middleware added to the app cannot silently miss
   * the fast endpoints: mirror it in dispatch.ts (or take the endpoint off this list), then add it here.
   */
  mirrors: readonly string[];
}

/**
 * The segment after `prefix` when the path is exactly one non-empty segment, as hono's `:param` matches
 * it, followed by exactly `?query` when one is given, else by no query.
 */
function oneSegment(prefix: string, query?: string): (url: string) => string | null {
  const suffix = query === undefined ? '' : `?${query}`;
  return (url) => {
    const end = url.length - suffix.length;
    if (!url.startsWith(prefix) || end <= prefix.length || (suffix !== '' && !url.endsWith(suffix))) return null;
    for (let i = prefix.length; i < end; i++) {
      const ch = url.charCodeAt(i);
      if (ch === 0x2f || ch === 0x3f) return null; // '/', '?': another endpoint, or a query the fast path leaves to the application
    }
    return url.slice(prefix.length, end);
  };
}

/** The fast endpoints, in the order they are tried. */
export const FAST_ROUTES: readonly FastRoute[] = [
  {
    method: 'GET',
    pattern: '/v1/resolve/:handle',
    sample: '/v1/resolve/a@example',
    match: oneSegment('/v1/resolve/'),
    body: false,
    limit: 'lookups',
    facts: { role: 'authoritative' },
    mirrors: ['observeRequest', 'bodyLimit', 'rateLimit:lookups', 'GET /v1/resolve/:handle'],
  },
  {
    // The answer bound to the zone's log (docs/protocol.md §13.5), which witnessed resolvers ask for.
    method: 'GET',
    pattern: '/v1/resolve/:handle',
    query: 'log=1',
    sample: '/v1/resolve/a@example',
    match: oneSegment('/v1/resolve/', 'log=1'),
    body: false,
    limit: 'lookups',
    facts: { role: 'authoritative' },
    mirrors: ['observeRequest', 'bodyLimit', 'rateLimit:lookups', 'GET /v1/resolve/:handle'],
  },
  {
    method: 'GET',
    pattern: '/v1/lookup/:handle',
    sample: '/v1/lookup/a@example',
    match: oneSegment('/v1/lookup/'),
    body: false,
    limit: 'lookups',
    facts: { role: 'resolver' },
    mirrors: ['observeRequest', 'bodyLimit', 'rateLimit:lookups', 'GET /v1/lookup/:handle'],
  },
  {
    method: 'POST',
    pattern: '/v1/lookup',
    sample: '/v1/lookup',
    match: (url) => (url === '/v1/lookup' ? '' : null),
    body: true,
    limit: 'lookups',
    facts: { role: 'resolver_batch' },
    mirrors: ['observeRequest', 'bodyLimit', 'rateLimit:lookups', 'POST /v1/lookup'],
  },
  {
    method: 'POST',
    pattern: '/v1/handles',
    sample: '/v1/handles',
    match: (url) => (url === '/v1/handles' ? '' : null),
    body: true,
    limit: 'writes',
    facts: { role: 'change', action: 'register' },
    mirrors: ['observeRequest', 'bodyLimit', 'rateLimit:writes', 'POST /v1/handles'],
  },
];

/** A handler as hono's router keeps it: the function and the route it was registered with. */
type RouterEntry = [[(...args: never[]) => unknown, { method: string; path: string }], unknown];

/** The application's chain for a request, by name (see FastRoute.mirrors), as hono's own router matches it. */
export function appChain(app: Hono, method: string, path: string): string[] {
  const matched = app.router.match(method, path)[0] as unknown as RouterEntry[];
  return matched.map(([[handler, route]]) => (route.method === 'ALL' ? handler.name || '(anonymous middleware)' : `${route.method} ${route.path}`));
}

/** Throws when the application's chain for a fast endpoint is not the one its fast path mirrors. */
export function assertMirrored(app: Hono, routes: readonly FastRoute[] = FAST_ROUTES): void {
  for (const route of routes) {
    const chain = appChain(app, route.method, route.sample);
    if (chain.join(' → ') !== route.mirrors.join(' → ')) {
      throw new Error(
        `the application runs [${chain.join(' → ')}] for ${route.method} ${route.pattern} but its fast path mirrors [${route.mirrors.join(' → ')}]: ` +
          'mirror the change in src/http/fast/dispatch.ts and list it in src/http/fast/routes.ts (docs/architecture.md)',
      );
    }
  }
}
