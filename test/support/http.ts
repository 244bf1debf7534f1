import { request } from 'undici';
import type { Clock } from '../../src/clock.js';
import { signChangeRequest, type ChangeIntent } from '../../src/client/requests.js';
import type { UserKey } from './keys.js';

/** Every HTTP call a test makes is bounded by this. */
export const HTTP_TIMEOUT_MS = 10_000;

/** A response as tests look at it. */
export interface HttpResult {
  status: number;
  headers: Record<string, string>;
  text: string;
  /** The body parsed as JSON, or undefined when it is empty or not JSON. */
  json: any;
}

/** Options of one request. */
export interface SendOptions {
  /** A value sent as JSON. */
  json?: unknown;
  /** A raw body sent as is (with content-type application/json unless headers say otherwise). */
  raw?: string;
  headers?: Record<string, string>;
}

/** Sends one request with undici (keep-alive), bounded in time, and reads the whole body. */
export async function send(base: string, method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, options: SendOptions = {}): Promise<HttpResult> {
  const body = options.raw ?? (options.json === undefined ? undefined : JSON.stringify(options.json));
  const headers: Record<string, string> = { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...options.headers };
  const res = await request(`${base}${path}`, {
    method,
    headers,
    body,
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    headersTimeout: HTTP_TIMEOUT_MS,
    bodyTimeout: HTTP_TIMEOUT_MS,
  });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  const flat: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) flat[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
  return { status: res.statusCode, headers: flat, text, json };
}

/** GET a path. */
export function get(base: string, path: string, headers?: Record<string, string>): Promise<HttpResult> {
  return send(base, 'GET', path, headers ? { headers } : {});
}

/** POST /v1/handles with `{request}`. */
export function postChange(base: string, jws: string): Promise<HttpResult> {
  return send(base, 'POST', '/v1/handles', { json: { request: jws } });
}

/** PUT /v1/handles/{handle} with `{request}`. */
export function putChange(base: string, handle: string, jws: string): Promise<HttpResult> {
  return send(base, 'PUT', `/v1/handles/${encodeURIComponent(handle)}`, { json: { request: jws } });
}

/** DELETE /v1/handles/{handle} with `{request}`. */
export function deleteChange(base: string, handle: string, jws: string): Promise<HttpResult> {
  return send(base, 'DELETE', `/v1/handles/${encodeURIComponent(handle)}`, { json: { request: jws } });
}

/** GET /v1/resolve/{handle}. */
export function resolveHandle(base: string, handle: string, headers?: Record<string, string>): Promise<HttpResult> {
  return get(base, `/v1/resolve/${encodeURIComponent(handle)}`, headers);
}

/**
 * Signs a register request for `key` and posts it; fails the test unless it is accepted with 201.
 * `addedKeys` are further keys of the handle, each listed and proving possession (as the server demands).
 */
export async function registerOk(
  base: string,
  key: UserKey,
  handle: string,
  options: { endpoint?: string; addedKeys?: UserKey[]; invite?: string; clock?: Clock } = {},
): Promise<{ op: string; serial: number; record: string; jws: string }> {
  const added = options.addedKeys ?? [];
  const intent: ChangeIntent = {
    action: 'register',
    handle,
    endpoint: options.endpoint ?? `https://social.example/users/${handle.split('@')[0]}`,
    keys: [key.public, ...added.map((k) => k.public)],
    ...(options.invite === undefined ? {} : { invite: options.invite }),
  };
  const jws = signChangeRequest(
    intent,
    key.private,
    options.clock,
    added.map((k) => k.private),
  );
  const res = await postChange(base, jws);
  if (res.status !== 201) throw new Error(`registering ${handle} failed: ${res.status} ${res.text}`);
  return { op: res.json.op, serial: res.json.serial, record: res.json.record, jws };
}

/** Decodes the payload of a compact JWS without verifying it. */
export function payloadOf(jws: string): any {
  return JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString('utf8'));
}

/** The value of `max-age` in a Cache-Control header, or undefined. */
export function maxAge(cacheControl: string | undefined): number | undefined {
  const m = /(?:^|,)\s*max-age=(\d+)/.exec(cacheControl ?? '');
  return m ? Number(m[1]) : undefined;
}
