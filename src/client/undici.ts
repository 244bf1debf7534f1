/// <reference path="./undici-internals.d.ts" />
import type * as Undici from 'undici';
import AgentClass from 'undici/lib/dispatcher/agent.js';
import dispatcherRequest from 'undici/lib/api/api-request.js';
import undiciGlobal from 'undici/lib/global.js';
import undiciUtil from 'undici/lib/core/util.js';

/**
 * The two parts of undici idns uses, `Agent` and `request`, imported from the modules that define them.
 * undici's entry point loads all of it (fetch, WebSocket, EventSource, cookies, caches, mocks): about
 * 150 modules and 90 ms of every process's start-up, a sixth of `idns serve`'s. Its files are plain
 * CommonJS without an `exports` map, so these paths are open to importers; the version is pinned by the
 * lockfile, and every HTTP test goes through this module, so a move inside undici fails the suite.
 * Everything else imports undici's types only (`import type`), which load nothing.
 */

/** undici's Agent (keep-alive pools per origin). */
export const Agent = AgentClass;
/** An instance of Agent. */
export type Agent = Undici.Agent;

/**
 * undici's `request(url, options)`, as its entry point builds it (index.js, makeDispatcher): the URL is
 * parsed and checked by undici, the request goes to `options.dispatcher` or the global one.
 */
export const request = ((url: string | URL, options: Partial<Undici.Dispatcher.RequestOptions> & { dispatcher?: Undici.Dispatcher } = {}) => {
  const parsed = undiciUtil.parseURL(url);
  const { dispatcher = undiciGlobal.getGlobalDispatcher(), ...rest } = options;
  return dispatcherRequest.call(dispatcher, {
    ...rest,
    origin: parsed.origin,
    path: parsed.search ? `${parsed.pathname}${parsed.search}` : parsed.pathname,
    method: rest.method ?? (rest.body ? 'PUT' : 'GET'),
  } as Undici.Dispatcher.RequestOptions);
}) as unknown as typeof Undici.request;
