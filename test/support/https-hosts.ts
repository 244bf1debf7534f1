import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Agent, buildConnector } from 'undici';
import { makeServerCertificate } from './certs.js';
import { tempDir } from './server.js';

/**
 * Real HTTPS hosts with real names for clients that build `https://<name>/…` URLs on the default port
 * (WebFinger, `/.well-known/idns`): each name is served by its own HTTPS server on a free loopback port,
 * with a certificate for that name from a CA made here. `dispatcher` connects `<name>:443` to that port
 * and verifies the certificate for `<name>` against the CA (SNI and Host stay `<name>`), so the client
 * under test runs its real TLS and address-policy code; nothing is mocked but the DNS answer.
 */

/** One request a host received. */
export interface HostRequest {
  method: string;
  /** Path and query, as sent. */
  url: string;
  headers: IncomingMessage['headers'];
}

export type HostHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/** A running HTTPS host. */
export interface TestHost {
  name: string;
  port: number;
  requests: HostRequest[];
  /** What the host does with the next requests (may be replaced between requests). */
  handler: HostHandler;
}

/** A set of named HTTPS hosts sharing one test CA. */
export interface HttpsHosts {
  /** The CA's PEM. */
  ca: string;
  /** Connects each served name to its server, verifying TLS against the test CA. */
  dispatcher: Agent;
  /** A dispatcher like `dispatcher` that trusts only `ca` (default: Node's bundled CAs, so not the test CA). */
  dispatcherTrusting(ca?: string): Agent;
  /** Starts (or re-arms) the host `name`: one of the names given to startHttpsHosts, or localhost. */
  serve(name: string, handler: HostHandler): Promise<TestHost>;
  close(): Promise<void>;
}

/** Makes a CA and one certificate for `names`; hosts are started on demand with `serve`. */
export function startHttpsHosts(names: readonly string[]): HttpsHosts {
  const tmp = tempDir('idns-https-hosts-');
  const files = makeServerCertificate(tmp.dir, names);
  const ca = readFileSync(files.ca, 'utf8');
  const cert = readFileSync(files.cert, 'utf8');
  const key = readFileSync(files.key, 'utf8');
  const servers = new Map<string, { host: TestHost; server: Server; sockets: Set<Socket> }>();
  const agents: Agent[] = [];
  const dispatcherTrusting = (trusted?: string): Agent => {
    const tls = buildConnector(trusted === undefined ? {} : { ca: trusted });
    const agent = new Agent({
      connect(options, callback) {
        // Servers a test runs on loopback addresses (idns servers, plain http) are connected as they are.
        if (options.hostname === '127.0.0.1') {
          tls(options, callback);
          return;
        }
        const entry = servers.get(options.hostname);
        if (entry === undefined || (options.port !== '' && options.port !== '443')) {
          callback(new Error(`no test host serves ${options.hostname}:${options.port || 443}`), null);
          return;
        }
        tls({ ...options, hostname: '127.0.0.1', port: String(entry.host.port), servername: options.hostname }, callback);
      },
    });
    agents.push(agent);
    return agent;
  };
  const dispatcher = dispatcherTrusting(ca);
  return {
    ca,
    dispatcher,
    dispatcherTrusting,
    async serve(name, handler) {
      if (!names.includes(name) && name !== 'localhost') throw new Error(`${name} is not among the certificate's names`);
      const running = servers.get(name);
      if (running) {
        running.host.handler = handler;
        running.host.requests = [];
        return running.host;
      }
      const host: TestHost = { name, port: 0, requests: [], handler };
      const sockets = new Set<Socket>();
      const server = createServer({ cert, key }, (req, res) => {
        host.requests.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers });
        Promise.resolve()
          .then(() => host.handler(req, res))
          .catch(() => res.destroy());
      });
      server.on('secureConnection', (s: Socket) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      host.port = (server.address() as AddressInfo).port;
      servers.set(name, { host, server, sockets });
      return host;
    },
    async close() {
      for (const agent of agents) await agent.destroy();
      for (const { server, sockets } of servers.values()) {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
      servers.clear();
      tmp.remove();
    },
  };
}

/** Answers with a JSON body (JRD by default), optional extra headers. */
export function sendJson(res: ServerResponse, body: unknown, headers: Record<string, string> = {}, status = 200): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/jrd+json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}
