import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request that reached a gate. */
export interface GatedRequest {
  method: string;
  path: string;
  /** The Authorization header as received (what an eavesdropper on this hop would copy). */
  authorization: string | undefined;
  /** The request body, as text. */
  body: string;
  /** The upstream's status; null while held or in flight, or when the gate cut the connection. */
  status: number | null;
  /** True once the request was answered or cut. */
  done: boolean;
}

/**
 * A real HTTP relay in front of a server. It logs every request with its Authorization header, and can
 * hold requests that match `hold` before forwarding them (the sender then provably has the request in
 * flight) until `release()`, or cut the connection of requests that match `cut` instead of forwarding.
 */
export interface Gate {
  url: string;
  requests: GatedRequest[];
  /** Requests matching this are held before they are forwarded, until `release()`. */
  hold: ((req: GatedRequest) => boolean) | null;
  /** Requests matching this are answered by closing the connection (as a server that went away). */
  cut: ((req: GatedRequest) => boolean) | null;
  /** Requests held right now. */
  held(): number;
  /** Forwards (or cuts) the held requests, and holds no more. */
  release(): void;
  close(): Promise<void>;
}

/** Starts a gate relaying to `target` on a free loopback port. */
export async function startGate(target: string): Promise<Gate> {
  const upstream = new URL(target);
  let waiting: (() => void)[] = [];
  const gate: Gate = {
    url: '',
    requests: [],
    hold: null,
    cut: null,
    held: () => waiting.length,
    release() {
      gate.hold = null;
      const w = waiting;
      waiting = [];
      for (const f of w) f();
    },
    close: async () => {
      gate.release();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    void (async () => {
      const entry: GatedRequest = {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        authorization: req.headers.authorization,
        body: '',
        status: null,
        done: false,
      };
      gate.requests.push(entry);
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      entry.body = Buffer.concat(chunks).toString('utf8');
      if (gate.hold?.(entry)) await new Promise<void>((r) => waiting.push(r));
      if (gate.cut?.(entry)) {
        entry.done = true;
        req.socket.destroy();
        return;
      }
      const headers = { ...req.headers, host: upstream.host };
      delete headers.connection;
      const up = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers }, (ur) => {
        const h = { ...ur.headers };
        delete h.connection;
        delete h['keep-alive'];
        res.writeHead(ur.statusCode ?? 502, h);
        ur.pipe(res);
        ur.on('end', () => {
          entry.status = ur.statusCode ?? null;
          entry.done = true;
        });
      });
      up.on('error', () => {
        entry.done = true;
        res.destroy();
      });
      up.end(Buffer.concat(chunks));
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  gate.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return gate;
}
