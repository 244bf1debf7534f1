import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppContext } from '../../context.js';
import { IdnsError } from '../../errors.js';
import { errorReply, tooLargeMessage } from '../errors.js';
import type { LookupWire } from '../lookup-wire.js';
import type { Tally } from '../metrics.js';
import { account, requestIdFor, type RequestFacts } from '../observe.js';
import { BatchEndpoint } from './batch.js';
import { HandlesEndpoint } from './handles.js';
import { LookupEndpoint } from './lookup.js';
import { ResolveEndpoint } from './resolve.js';
import { FAST_ROUTES, type FastRoute } from './routes.js';

/** What a fast path reads of a request's headers, in one pass over the raw list. */
export interface RequestHead {
  /** X-Request-Id when given once (repeated, the application sees the values joined, which is no sane id either). */
  id: string | undefined;
  /** If-None-Match, repeated values joined with ", " as the application sees them. */
  ifNoneMatch: string | undefined;
  contentLength: string | undefined;
  chunked: boolean;
}

/** A fast path's answer: status, headers (name, value…; Content-Length and X-Request-Id are added), body and accounting. */
export interface FastReply {
  status: number;
  headers: readonly string[];
  /** The body or its chunks (written as one), or null for none. */
  body: string | Buffer | readonly (string | Buffer)[] | null;
  /** A tally bound to this route, status and outcome (metrics.ts), or null to count by label. */
  tally: Tally | null;
  facts: RequestFacts | undefined;
}

/** One fast endpoint: its answer, a promise of it, or null to hand the request to the application. */
export interface FastEndpoint {
  answer(req: IncomingMessage, param: string, head: RequestHead): FastReply | Promise<FastReply> | null;
}

/**
 * The fast paths: the endpoints of FAST_ROUTES answered without the general HTTP stack, each step of the
 * application's chain for them (routes.ts, `mirrors`) done here by the application's own functions —
 * the request id (observe.ts), the body limit, the client's limit (rate-limits.ts), the endpoint's reply
 * rule (routes/*), the error mapping (errors.ts) and the accounting (observe.ts `account`).
 */
export class FastPaths {
  private readonly endpoints: FastEndpoint[];

  constructor(
    private readonly ctx: AppContext,
    wire: LookupWire,
  ) {
    const of: Record<string, FastEndpoint> = {
      '/v1/resolve/:handle': new ResolveEndpoint(ctx, false),
      '/v1/resolve/:handle?log=1': new ResolveEndpoint(ctx, true),
      '/v1/lookup/:handle': new LookupEndpoint(ctx, wire),
      '/v1/lookup': new BatchEndpoint(ctx, wire),
      '/v1/handles': new HandlesEndpoint(ctx),
    };
    this.endpoints = FAST_ROUTES.map((r) => {
      const name = r.query === undefined ? r.pattern : `${r.pattern}?${r.query}`;
      const endpoint = of[name];
      if (endpoint === undefined) throw new Error(`no fast endpoint answers ${r.method} ${name}`);
      return endpoint;
    });
  }

  /** Answers the request and returns true, or returns false to leave it to the application. */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url;
    const method = req.method;
    if (url === undefined) return false;
    for (let i = 0; i < FAST_ROUTES.length; i++) {
      const route = FAST_ROUTES[i]!;
      if (route.method !== method) continue;
      const param = route.match(url);
      if (param !== null) return this.serve(req, res, route, this.endpoints[i]!, param);
    }
    return false;
  }

  private serve(req: IncomingMessage, res: ServerResponse, route: FastRoute, endpoint: FastEndpoint, param: string): boolean {
    const head = readHead(req);
    if (route.body) {
      // A chunked body is read and bounded by the application's body limit as it arrives.
      if (head.chunked || head.contentLength === undefined || !/^\d{1,12}$/.test(head.contentLength)) return false;
    } else if (head.chunked || (head.contentLength !== undefined && head.contentLength !== '0')) return false;
    const started = performance.now();
    const id = requestIdFor(head.id);
    const ctx = this.ctx;
    // The application's middleware, in its order (app.ts): the body limit, then the client's limit.
    try {
      const max = ctx.config.limits.bodyBytes;
      if (route.body && Number(head.contentLength) > max) throw new IdnsError('payload_too_large', tooLargeMessage(max));
      if (ctx.rateLimits.config.enabled) ctx.rateLimits.charge(route.limit, ctx.rateLimits.keyOf(req));
    } catch (err) {
      // Refused before the endpoint read a body: the connection is not read on (as the application does).
      this.fail(req, res, route, started, id, err, undefined, route.body);
      return true;
    }
    let reply;
    try {
      reply = endpoint.answer(req, param, head);
    } catch (err) {
      this.fail(req, res, route, started, id, err, route.facts);
      return true;
    }
    if (reply === null) {
      ctx.rateLimits.handedOver(req);
      return false;
    }
    if (reply instanceof Promise) {
      reply
        .then(
          (r) => this.send(req, res, route, started, id, r),
          (err: unknown) => this.fail(req, res, route, started, id, err, route.facts),
        )
        // Writing the answer itself failed (the response had begun): nothing is left to answer with.
        .catch((err: unknown) => ctx.log.error('fast path could not answer', { err, route: route.pattern }));
    } else this.send(req, res, route, started, id, reply);
    return true;
  }

  /** Answers an error through the application's one mapping (errors.ts). */
  private fail(
    req: IncomingMessage,
    res: ServerResponse,
    route: FastRoute,
    started: number,
    id: string,
    err: unknown,
    facts: Readonly<RequestFacts> | undefined,
    close = false,
  ): void {
    const reply = errorReply(err, req.url ?? '', req.method ?? '', this.ctx.log);
    const headers = ['content-type', 'application/json'];
    for (const [name, value] of Object.entries(reply.headers)) headers.push(name.toLowerCase(), value);
    if (close) headers.push('connection', 'close');
    this.send(req, res, route, started, id, {
      status: reply.status,
      headers,
      body: JSON.stringify(reply.body),
      tally: null,
      facts: { ...facts, outcome: reply.body.error.code },
    });
  }

  private send(req: IncomingMessage, res: ServerResponse, route: FastRoute, started: number, id: string, reply: FastReply): void {
    const given = reply.headers;
    const body = reply.body;
    // A flat list of the exact size: node:http then skips enumerating an object's keys.
    const headers = new Array<string>(given.length + (body === null ? 2 : 4));
    let n = 0;
    for (; n < given.length; n++) headers[n] = given[n]!;
    if (body !== null) {
      let length = 0;
      if (typeof body === 'string') length = Buffer.byteLength(body);
      else if (Buffer.isBuffer(body)) length = body.length;
      else for (const chunk of body) length += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      headers[n++] = 'content-length';
      headers[n++] = String(length);
    }
    headers[n++] = 'x-request-id';
    headers[n++] = id;
    res.writeHead(reply.status, headers);
    if (body === null || typeof body === 'string' || Buffer.isBuffer(body)) res.end(body);
    else {
      // Corked, the headers and every chunk leave in one writev.
      res.cork();
      for (let i = 0; i < body.length - 1; i++) res.write(body[i]!);
      res.end(body[body.length - 1]);
      res.uncork();
    }
    account(this.ctx.log, this.ctx.metrics, reply.tally, id, req.method ?? 'GET', route.pattern, reply.status, performance.now() - started, reply.facts, () =>
      this.ctx.rateLimits.addressOf(req),
    );
  }
}

/** Reads the headers a fast path needs from the raw list: `req.headers` is built on first use, for every header. */
function readHead(req: IncomingMessage): RequestHead {
  let id: string | undefined;
  let ids = 0;
  let ifNoneMatch: string | undefined;
  let contentLength: string | undefined;
  let chunked = false;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    switch (name.length) {
      case 12:
        if (name.toLowerCase() === 'x-request-id') {
          id = raw[i + 1];
          ids += 1;
        }
        break;
      case 13:
        if (name.toLowerCase() === 'if-none-match') ifNoneMatch = ifNoneMatch === undefined ? raw[i + 1] : `${ifNoneMatch}, ${raw[i + 1]}`;
        break;
      case 14:
        if (name.toLowerCase() === 'content-length') contentLength = raw[i + 1];
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') chunked = true;
        break;
    }
  }
  return { id: ids === 1 ? id : undefined, ifNoneMatch, contentLength, chunked };
}
