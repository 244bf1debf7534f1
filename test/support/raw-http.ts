import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { HTTP_TIMEOUT_MS } from './http.js';

/** A raw client connection, with what it received and when it closed (ms after it connected). */
export interface RawConnection {
  socket: Socket;
  /** Everything received so far. */
  received: () => string;
  /** Resolves when the connection closes (bounded: rejects after HTTP_TIMEOUT_MS × 3). */
  closed: Promise<{ afterMs: number; received: string }>;
  /** Resolves with what was received once `text` has arrived (bounded like `closed`). */
  receivedUntil: (text: string) => Promise<string>;
  connectedAt: number;
}

/** Opens a TCP (or TLS, with `tls`) connection to a URL's host and port, resolved once connected. */
export function openRaw(url: string, options: { tls?: boolean; handshake?: boolean } = {}): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const useTls = options.tls === true && options.handshake !== false;
    const socket: Socket = useTls
      ? tlsConnect({ host: hostname, port: Number(port), rejectUnauthorized: false })
      : netConnect({ host: hostname, port: Number(port) });
    let data = Buffer.alloc(0);
    const waiters: { text: string; done: (s: string) => void }[] = [];
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const text = data.toString('latin1');
      for (const w of waiters.splice(0))
        if (text.includes(w.text)) w.done(text);
        else waiters.push(w);
    });
    socket.on('error', () => {
      // A reset by the server is one of the outcomes under test; `closed` reports it.
    });
    const limit = HTTP_TIMEOUT_MS * 3;
    socket.once(useTls ? 'secureConnect' : 'connect', () => {
      const connectedAt = performance.now();
      const closed = new Promise<{ afterMs: number; received: string }>((done, fail) => {
        const t = setTimeout(() => fail(new Error(`the server kept the connection open for ${limit} ms`)), limit);
        socket.once('close', () => {
          clearTimeout(t);
          done({ afterMs: performance.now() - connectedAt, received: data.toString('latin1') });
        });
      });
      closed.catch(() => undefined);
      const receivedUntil = (text: string) =>
        new Promise<string>((done, fail) => {
          if (data.toString('latin1').includes(text)) return done(data.toString('latin1'));
          const t = setTimeout(() => fail(new Error(`"${text}" not received within ${limit} ms`)), limit);
          waiters.push({ text, done: (s) => (clearTimeout(t), done(s)) });
          void closed.then(() => {
            clearTimeout(t);
            if (!data.toString('latin1').includes(text)) fail(new Error(`closed before "${text}" arrived`));
          });
        });
      resolve({ socket, received: () => data.toString('latin1'), closed, receivedUntil, connectedAt });
    });
    socket.once('close', () => reject(new Error('closed before connecting')));
  });
}

/** Writes `text` one byte every `everyMs` until the socket closes; returns a function that stops it. */
export function drip(socket: Socket, text: string, everyMs: number): () => void {
  let i = 0;
  const t = setInterval(() => {
    if (socket.destroyed || i >= text.length) return clearInterval(t);
    socket.write(text[i++]!);
  }, everyMs);
  socket.once('close', () => clearInterval(t));
  return () => clearInterval(t);
}

/** A raw HTTP/1.1 response parsed: status, lower-cased headers, body text and the body as JSON. */
export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  json: any;
}

/** Parses the first response in `text` (Content-Length framed, as every error response here is). */
export function parseResponse(text: string): RawResponse {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) throw new Error(`no complete response head in ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine!)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  const length = Number(headers['content-length'] ?? NaN);
  const body = Number.isNaN(length)
    ? text.slice(end + 4)
    : Buffer.from(text.slice(end + 4), 'latin1')
        .subarray(0, length)
        .toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = undefined;
  }
  return { status, headers, body, json };
}

/** Sends raw bytes on a new connection and returns the response the server sent before closing. */
export async function exchange(url: string, bytes: string | Buffer): Promise<RawResponse & { raw: string }> {
  const c = await openRaw(url);
  c.socket.write(bytes);
  const { received } = await c.closed;
  return { ...parseResponse(received), raw: received };
}
