import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeServerCertificate } from './support/certs.js';
import { exchange, openRaw, parseResponse, type RawResponse } from './support/raw-http.js';
import { startTestServer, tempDir, type TestServer } from './support/server.js';

/** The error shape every refusal has: status, JSON body with code and message, JSON type, connection closed. */
function expectJsonError(res: RawResponse, status: number, code: string): void {
  expect(res.status, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/^application\/json/);
  expect(res.json).toEqual({ error: { code, message: expect.any(String) } });
  expect(res.json.error.message.length).toBeGreaterThan(0);
}

const closes = (res: RawResponse) => expect(res.headers.connection).toBe('close');

// Requests refused by Node's HTTP parser or by the HTTP layers before routing answer like every other error.
describe('requests refused before routing', () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({ zones: { example: {} } });
  });
  afterAll(() => s.close());

  const cases: [name: string, bytes: string, status: number, code: string][] = [
    [
      'Content-Length with Transfer-Encoding',
      'POST /v1/handles HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
      'invalid_request',
    ],
    ['two different Content-Lengths', 'POST /v1/handles HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello', 400, 'invalid_request'],
    ['a Content-Length that is not a number', 'POST /v1/handles HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello', 400, 'invalid_request'],
    ['Transfer-Encoding other than chunked last', 'POST /v1/handles HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', 400, 'invalid_request'],
    ['headers over the size limit', `GET /v1/zones/example HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers_too_large'],
    [
      'many headers over the size limit',
      `GET /v1/zones/example HTTP/1.1\r\nHost: a\r\n${'X-A: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n'.repeat(500)}\r\n`,
      431,
      'headers_too_large',
    ],
    ['a control character in a header value', 'GET /v1/zones/example HTTP/1.1\r\nHost: a\r\nX-A: a\x01b\r\n\r\n', 400, 'invalid_request'],
    ['a space in a header name', 'GET /v1/zones/example HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n', 400, 'invalid_request'],
    ['a bare LF line end', 'GET /v1/zones/example HTTP/1.1\nHost: a\n\n', 400, 'invalid_request'],
    ['an unknown method', 'FROB@ /v1/zones/example HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'invalid_request'],
    ['a control character in the URL', 'GET /v1/zones/\x01 HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'invalid_request'],
    ['an unknown HTTP version', 'GET /v1/zones/example HTTP/7.3\r\nHost: a\r\n\r\n', 400, 'invalid_request'],
    ['not HTTP at all', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03', 400, 'invalid_request'],
    ['a bad chunk size', 'POST /v1/handles HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n', 400, 'invalid_request'],
    ['an HTTP/1.1 request without Host', 'GET /v1/zones/example HTTP/1.1\r\n\r\n', 400, 'invalid_request'],
    ['two Host headers', 'GET /v1/resolve/alice@example HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n', 400, 'invalid_request'],
    ['a Host that is not a host', 'GET /v1/zones/example HTTP/1.1\r\nHost: exa mple\r\n\r\n', 400, 'invalid_request'],
    ['a Host with a path', 'GET /v1/zones/example HTTP/1.1\r\nHost: a/b\r\n\r\n', 400, 'invalid_request'],
    ['a Host with a port out of range', 'GET /v1/zones/example HTTP/1.1\r\nHost: a:99999\r\n\r\n', 400, 'invalid_request'],
    ['an empty Host on a fast path', 'GET /v1/resolve/alice@example HTTP/1.1\r\nHost:\r\n\r\n', 400, 'invalid_request'],
    ['a bad Host on the registration fast path', 'POST /v1/handles HTTP/1.1\r\nHost: a b\r\nContent-Length: 2\r\n\r\n{}', 400, 'invalid_request'],
    ['an Expect other than 100-continue', 'GET /v1/zones/example HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n', 417, 'expectation_failed'],
    ['CONNECT', 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 400, 'invalid_request'],
    ['a backslash in the path', 'GET /v1\\zones/example HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'invalid_request'],
    ['OPTIONS *', 'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'invalid_request'],
    ['an absolute-form target that is not a URL', 'GET http://[bad/v1/zones/example HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'invalid_request'],
    ['the HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 400, 'invalid_request'],
  ];

  it.each(cases)('%s: status and JSON error body, connection closed', async (_name, bytes, status, code) => {
    const res = await exchange(s.url, bytes);
    expectJsonError(res, status, code);
    closes(res);
  });

  it('serves requests with every well-formed Host, and HTTP/1.0 ones without', async () => {
    for (const host of ['127.0.0.1', '127.0.0.1:8053', 'Example.COM', 'id.example.', '[::1]', '[::1]:443', 'xn--bcher-kva.example', 'a_b.example:1']) {
      const res = await exchange(s.url, `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      expect(res.status, `${host}: ${res.body}`).toBe(200);
    }
    expect((await exchange(s.url, 'GET /healthz HTTP/1.0\r\n\r\n')).status).toBe(200);
  });

  it('answers a request that times out with 408 and the JSON error body', async () => {
    const t = await startTestServer({ config: { limits: { ...s.ctx.config.limits, headersTimeoutMs: 500, requestTimeoutMs: 1000 } } });
    try {
      const c = await openRaw(t.url);
      c.socket.write('GET /healthz HTTP/1.1\r\nHost: a\r\n');
      const res = parseResponse((await c.closed).received);
      expectJsonError(res, 408, 'request_timeout');
      closes(res);
    } finally {
      await t.close();
    }
  });

  it('answers a parser error after a complete response on the same connection with its own JSON error', async () => {
    const c = await openRaw(s.url);
    c.socket.write('GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\nX-A: \x7f\r\n\r\n');
    const { received } = await c.closed;
    const second = received.indexOf('HTTP/1.1', 10);
    expect(parseResponse(received).status).toBe(200);
    expectJsonError(parseResponse(received.slice(second)), 400, 'invalid_request');
  });

  // Errors the application and the fast paths make keep the same shape.
  const routed: [name: string, bytes: string, status: number, code: string][] = [
    ['an unknown path', 'GET /nope HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', 404, 'invalid_request'],
    ['an unknown method on a known path', 'PATCH /v1/zones/example HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', 404, 'invalid_request'],
    ['bad percent-encoding on the resolve path', 'GET /v1/resolve/%E0%A4%A HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n', 400, 'invalid_handle'],
    [
      'bad percent-encoding in a query',
      'GET /.well-known/webfinger?resource=%E0%A4%A HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
      400,
      'invalid_resource',
    ],
    [
      'a body over the limit on the registration fast path',
      'POST /v1/handles HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n',
      413,
      'payload_too_large',
    ],
    [
      'a body over the limit, chunked',
      `PUT /v1/handles/a@example HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${'ffff\r\n' + 'a'.repeat(0xffff) + '\r\n'}${'ffff\r\n' + 'a'.repeat(0xffff) + '\r\n'}0\r\n\r\n`,
      413,
      'payload_too_large',
    ],
    ['a body that is not JSON', 'POST /v1/handles HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{{{', 400, 'invalid_json'],
  ];

  it.each(routed)('%s: status and JSON error body', async (_name, bytes, status, code) => {
    expectJsonError(await exchange(s.url, bytes), status, code);
  });
});

describe('requests refused before routing, over HTTPS', () => {
  const tmp = tempDir('idns-framing-');
  let s: TestServer;
  beforeAll(async () => {
    const files = makeServerCertificate(tmp.dir);
    s = await startTestServer({ config: { tls: { cert: files.cert, key: files.key, ca: [] } } });
  });
  afterAll(async () => {
    await s.close();
    tmp.remove();
  });

  it.each([
    [
      'Content-Length with Transfer-Encoding',
      'POST /v1/handles HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n',
      400,
      'invalid_request',
    ],
    ['headers over the size limit', `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers_too_large'],
    ['an HTTP/1.1 request without Host', 'GET /healthz HTTP/1.1\r\n\r\n', 400, 'invalid_request'],
  ] as const)('%s', async (_name, bytes, status, code) => {
    const c = await openRaw(s.url, { tls: true });
    c.socket.write(bytes);
    const res = parseResponse((await c.closed).received);
    expectJsonError(res, status, code);
    closes(res);
  });

  it('closes a connection that fails the TLS handshake without writing HTTP into it', async () => {
    const c = await openRaw(s.url);
    c.socket.write('GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n');
    expect((await c.closed).received).not.toContain('HTTP/1.1');
  });
});
