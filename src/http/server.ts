import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { FastPaths } from './fast/dispatch.js';
import { assertMirrored } from './fast/routes.js';
import { LookupWire } from './lookup-wire.js';
import { createServer as createHttpsServer } from 'node:https';
import { serverCredentials } from '../tls.js';
import { getRequestListener, RequestError } from '@hono/node-server';
import type { ServerConfig } from '../config.js';
import { IdnsError } from '../errors.js';
import { ConnectionGuard } from './connections.js';
import { errorReply } from './errors.js';
import { answerClientError, framingError, hostProblem, refuse, timeoutError } from './framing.js';
import type { AppContext } from '../context.js';
import { createApp } from './app.js';

/** A running HTTP server. */
export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8053 */
  url: string;
  port: number;
  server: Server;
  /** The connection limits (per-address counts). */
  connections: ConnectionGuard;
  /** Stops accepting, lets in-flight requests finish, then resolves. */
  close(): Promise<void>;
  /** Reads the TLS certificate and key files again (idns ctl reload); false when not serving HTTPS. */
  reloadTls(): boolean;
}

/**
 * How often Node looks for connections past `headersTimeout` or `requestTimeout` (its default, 30 s,
 * let slow clients stay three times past the limits): a tenth of the shorter limit, at most 500 ms,
 * so a connection is cut within a second of its limit. Each check walks only the connections with a
 * request in progress.
 */
export function checkingIntervalMs(limits: ServerConfig['limits']): number {
  return Math.max(25, Math.min(500, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 10)));
}

/** How a server is started, beyond its context's configuration. */
export interface StartOptions {
  /**
   * Whether the fast paths (src/http/fast/) answer their endpoints; default true. Off, every request
   * goes through the application: tests drive both paths with the same requests (test/fast-parity.test.ts).
   */
  fastPaths?: boolean;
}

/** Starts the HTTP server for a context on host:port (port 0: any free port). */
export async function startServer(ctx: AppContext, host: string, port: number, start: StartOptions = {}): Promise<RunningServer> {
  const limits = ctx.config.limits;
  const wire = new LookupWire();
  const { app } = createApp(ctx, wire);
  // Each fast endpoint mirrors the application's chain for it; a chain changed on one side only stops the start.
  assertMirrored(app);
  const fast = start.fastPaths === false ? null : new FastPaths(ctx, wire);
  const refused = (reason: string) => ctx.metrics.refused.inc({ reason });
  const listener = getRequestListener(app.fetch, {
    // HTTP/1.0 requests may come without Host (hostProblem refuses HTTP/1.1 ones): the URL needs one, no route reads it.
    hostname: 'localhost',
    // What @hono/node-server refuses itself (a bad Host, a backslash in the path, `OPTIONS *`) it would
    // answer 400 with no body.
    errorHandler: (err) => {
      if (err instanceof RequestError) refused('invalid_request');
      const e = err instanceof RequestError ? new IdnsError('invalid_request', `malformed request: ${err.message}`) : err;
      const reply = errorReply(e, '', '', ctx.log);
      return Response.json(reply.body, { status: reply.status, headers: { ...reply.headers, connection: 'close' } });
    },
  });
  const tls = serverCredentials(ctx.config);
  const guard = new ConnectionGuard({
    // Per-address limits follow the rate limits: off on loopback and where a proxy makes every client one address.
    perAddress: ctx.config.rateLimits.enabled ? limits.connectionsPerAddress : null,
    headersTimeoutMs: limits.headersTimeoutMs,
    tls: tls !== null,
    onRefused: () => refused('address_limit'),
    onTimeout: (socket, secured) => {
      refused('request_timeout');
      answerClientError(secured ? timeoutError(limits) : null, socket);
    },
  });
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (tls) guard.requestArrived(req);
    const badHost = hostProblem(req);
    if (badHost !== null) {
      refused('invalid_request');
      return refuse(res, 'invalid_request', badHost);
    }
    if (fast === null || !fast.handle(req, res)) void listener(req, res);
  };
  // Node's answers of its own (an empty 400 for a missing Host) are replaced by JSON ones (framing.ts).
  const options = { requireHostHeader: false, connectionsCheckingInterval: checkingIntervalMs(limits) };
  const server: Server = tls
    ? createHttpsServer({ ...options, cert: tls.cert, key: tls.key, handshakeTimeout: limits.headersTimeoutMs }, handler)
    : createServer(options, handler);
  // Every input from the network is time-limited: slow headers or a slow-drip body are cut off.
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  // Node closes an idle keep-alive connection 1 s after the timeout it announces to the client (so a
  // client never reuses a connection the server is closing): announced 1 s early, it closes on time.
  server.keepAliveTimeout = limits.keepAliveTimeoutMs - 1000;
  server.maxHeadersCount = 100;
  server.maxConnections = limits.maxConnections;
  server.on('drop', () => refused('server_limit'));
  server.on('connection', guard.accept);
  if (tls) server.on('secureConnection', guard.secured);
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    const e = framingError(err, limits);
    refused(e ? e.code : 'transport');
    ctx.log.debug('connection refused', { reason: e ? e.code : 'transport', error: err.code });
    answerClientError(e, socket);
  });
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    if (tls) guard.requestArrived(req);
    refuse(res, 'expectation_failed', 'the only expectation this server meets is Expect: 100-continue');
  });
  // CONNECT asks for a tunnel, which this server does not give; without a listener Node drops the connection unanswered.
  server.on('connect', (_req: IncomingMessage, socket: Socket) => {
    refused('invalid_request');
    answerClientError(new IdnsError('invalid_request', 'CONNECT is not served here'), socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `${tls ? 'https' : 'http'}://${shownHost}:${address.port}`,
    port: address.port,
    server,
    connections: guard,
    reloadTls: () => {
      // Read again from the configured files: a renewed certificate is used by the next handshakes.
      if (tls === null) return false;
      const fresh = serverCredentials(ctx.config)!;
      (server as unknown as { setSecureContext(o: { cert: Buffer; key: Buffer }): void }).setSecureContext({ cert: fresh.cert, key: fresh.key });
      return true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        // Graceful: stop accepting, let requests in flight finish, and close each keep-alive connection
        // as soon as it is idle rather than waiting for its client; after the deadline, close what is left.
        const sweep = setInterval(() => server.closeIdleConnections(), 50);
        const deadline = setTimeout(() => server.closeAllConnections(), ctx.config.limits.requestTimeoutMs);
        server.close(() => {
          clearInterval(sweep);
          clearTimeout(deadline);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
