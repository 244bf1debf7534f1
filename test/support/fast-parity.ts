import { Agent, request } from 'node:http';

/**
 * The behaviour the fast paths (src/http/fast/) and the application must share, as one table of
 * requests: test/fast-parity.test.ts sends each row to a server whose fast paths take it and to one
 * where they are off, and asserts the same status, headers (but Date), body, log line and metric deltas.
 */
export interface ParityRow {
  name: string;
  /**
   * Sent in turn from one client address of the row's own (a fresh rate-limit bucket per row and path);
   * a function when each side needs its own input (a handle registered once).
   */
  requests: ParityRequest[] | ((side: 'fast' | 'app') => ParityRequest[]);
  /** Whether the fast path answers the last request (false: it must hand it to the application). */
  fast: boolean;
  /** Maps what differs by design between the sides (the handle each registered, its signatures) to one form. */
  normalise?: (text: string) => string;
}

export interface ParityRequest {
  method?: string;
  path: string;
  headers?: Record<string, string | string[]>;
  body?: string;
  /** Sent chunked, without a Content-Length. */
  chunked?: boolean;
}

/** An agent keeping connections alive, for one row and side. */
export function keepAlive(): Agent {
  return new Agent({ keepAlive: true, maxSockets: 1 });
}

/** A response as compared: status, headers without Date, body. */
export interface Exchange {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * Sends one request from `localAddress` (127.0.0.0/8 reaches a loopback server from any of its
 * addresses) over `agent`'s connections, kept alive as a browser's are.
 */
export function send(base: string, localAddress: string, r: ParityRequest, agent: Agent): Promise<Exchange> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = { ...r.headers };
    if (r.body !== undefined && !r.chunked) headers['content-length'] = String(Buffer.byteLength(r.body));
    const req = request({ host: u.hostname, port: u.port, path: r.path, method: r.method ?? 'GET', headers, localAddress, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const h = { ...res.headers };
        delete h.date;
        resolve({ status: res.statusCode!, headers: h, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (r.body !== undefined && r.chunked) {
      req.write(r.body.slice(0, 3));
      req.end(r.body.slice(3));
    } else req.end(r.body);
  });
}
