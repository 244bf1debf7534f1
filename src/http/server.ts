import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { HandlesFastPath } from './handles-fast-path.js';
import { LookupFastPath } from './lookup-fast-path.js';
import { LookupWire } from './lookup-wire.js';
import { ResolveFastPath } from './resolve-fast-path.js';
import { createServer as createHttpsServer } from 'node:https';
import { serverCredentials } from '../tls.js';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import type { AppContext } from '../context.js';
import { createApp } from './app.js';

/** A running HTTP server. */
export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8053 */
  url: string;
  port: number;
  server: Server;
  /** Stops accepting, lets in-flight requests finish, then resolves. */
  close(): Promise<void>;
}

/** Starts the HTTP server for a context on host:port (port 0: any free port). */
export async function startServer(ctx: AppContext, host: string, port: number): Promise<RunningServer> {
  const wire = new LookupWire();
  const { app } = createApp(ctx, wire);
  const listener = getRequestListener(app.fetch);
  const tls = serverCredentials(ctx.config);
  const resolveFast = new ResolveFastPath(ctx);
  const lookupFast = new LookupFastPath(ctx, wire);
  const handlesFast = new HandlesFastPath(ctx);
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    if (!resolveFast.handle(req, res) && !lookupFast.handle(req, res) && !handlesFast.handle(req, res)) void listener(req, res);
  };
  const server: Server = tls ? createHttpsServer({ cert: tls.cert, key: tls.key }, handler) : createServer(handler);
  // Every input from the network is time-limited: slow headers or a slow-drip body are cut off.
  server.headersTimeout = ctx.config.limits.headersTimeoutMs;
  server.requestTimeout = ctx.config.limits.requestTimeoutMs;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 100;
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
