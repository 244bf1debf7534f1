import { createRequire } from 'node:module';
import type * as Undici from 'undici';

/**
 * The two parts of undici idns uses, `Agent` and `request`, loaded from the modules that define them.
 * undici's entry point loads all of it (fetch, WebSocket, EventSource, cookies, caches, mocks): about
 * 150 modules and 90 ms of every process's start-up, a sixth of `idns serve`'s. Its files are plain
 * CommonJS without an `exports` map, so these paths are public to Node; the version is pinned by the
 * lockfile, and every HTTP test goes through this module, so a move inside undici fails the suite.
 * Everything else imports undici's types only (`import type`), which load nothing.
 */

const require = createRequire(import.meta.url);

type AgentClass = typeof Undici.Agent;
type RequestFunction = typeof Undici.request;
type DispatcherRequest = (this: Undici.Dispatcher, options: Undici.Dispatcher.RequestOptions) => Promise<Undici.Dispatcher.ResponseData>;

/** undici's Agent (keep-alive pools per origin). */
export const Agent = require('undici/lib/dispatcher/agent.js') as AgentClass;
/** An instance of Agent. */
export type Agent = Undici.Agent;
const dispatcherRequest = require('undici/lib/api/api-request.js') as DispatcherRequest;
const { getGlobalDispatcher } = require('undici/lib/global.js') as { getGlobalDispatcher: () => Undici.Dispatcher };
const { parseURL } = require('undici/lib/core/util.js') as { parseURL: (url: string | URL) => URL };

/**
 * undici's `request(url, options)`, as its entry point builds it (index.js, makeDispatcher): the URL is
 * parsed and checked by undici, the request goes to `options.dispatcher` or the global one.
 */
export const request = ((url: string | URL, options: Partial<Undici.Dispatcher.RequestOptions> & { dispatcher?: Undici.Dispatcher } = {}) => {
  const parsed = parseURL(url);
  const { dispatcher = getGlobalDispatcher(), ...rest } = options;
  return dispatcherRequest.call(dispatcher, {
    ...rest,
    origin: parsed.origin,
    path: parsed.search ? `${parsed.pathname}${parsed.search}` : parsed.pathname,
    method: rest.method ?? (rest.body ? 'PUT' : 'GET'),
  } as Undici.Dispatcher.RequestOptions);
}) as unknown as RequestFunction;
