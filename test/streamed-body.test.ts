import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { errorResponse } from '../src/http/errors.js';
import { outgoingOf, streamedBody } from '../src/http/streamed-body.js';
import { createLogger } from '../src/log.js';
import { openRaw, parseResponse } from './support/raw-http.js';

/** A body that gives `good` chunks, then fails. */
function failingAfter(good: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent++ < good) controller.enqueue(new TextEncoder().encode(`line ${sent}\n`));
      else throw new IdnsError('storage_busy', 'the database is busy');
    },
  });
}

// A streamed body (a zone transfer) that fails never reaches @hono/node-server's own error answer
// (500 text/plain with the error's message, or that text appended to the body).
describe('streamed response bodies', () => {
  const lines: string[] = [];
  const log = createLogger('error', (l) => lines.push(l));
  let server: Server;
  let url: string;
  beforeAll(async () => {
    const app = new Hono();
    app.get(
      '/fails/:good',
      async (c) => new Response(await streamedBody(failingAfter(Number(c.req.param('good'))), outgoingOf(c.env), log, 'test'), { status: 200 }),
    );
    app.onError((err, c) => errorResponse(c, err, log));
    server = createServer(getRequestListener(app.fetch));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('a failure before the first chunk is the JSON error response', async () => {
    const res = await fetch(`${url}/fails/0`);
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({ error: { code: 'storage_busy', message: 'the database is busy' } });
  });

  it('a failure after it cuts the body short, adds nothing to it, and is logged', async () => {
    const c = await openRaw(url);
    c.socket.write('GET /fails/3 HTTP/1.1\r\nHost: a\r\n\r\n');
    const { received } = await c.closed;
    const res = parseResponse(received);
    expect(res.status).toBe(200);
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(received).toContain('line 3\n');
    expect(received).not.toMatch(/Error|busy/);
    // No last chunk: the client can tell the body is incomplete.
    expect(received.endsWith('0\r\n\r\n')).toBe(false);
    expect(lines.some((l) => JSON.parse(l).msg === 'response body failed')).toBe(true);
  });
});
