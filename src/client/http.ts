import type { Dispatcher } from 'undici';
import { request } from './undici.js';
import { IdnsError, type ErrorCode } from '../errors.js';

/** Options for one JSON request to an idns server. */
export interface JsonRequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  body?: unknown;
  /** Whole-request time limit, ms. */
  timeoutMs?: number;
  /** Largest response body read, bytes; a larger one is cut off and refused. */
  maxBytes?: number;
  dispatcher?: Dispatcher;
  /** The caller's cancellation, on top of the time limit. */
  signal?: AbortSignal;
  /** Statuses whose body is not read as JSON (drained within maxBytes, returned as null), e.g. a 404 page. */
  ignoreBodyOf?: readonly number[];
}

/** A parsed JSON response. */
export interface JsonResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_BYTES = 1024 * 1024;

/**
 * Sends a request and reads a JSON response, with a time limit and a size cap, and without following
 * redirects (a redirect is returned as is). Network failures become network_error, a body that is not
 * JSON or too large becomes bad_response.
 */
export async function jsonRequest(url: string, options: JsonRequestOptions = {}): Promise<JsonResponse> {
  const { body: json, ignoreBodyOf: _ignored, ...rest } = options;
  const res = await textRequest(url, {
    ...rest,
    accept: 'application/json',
    ...(json === undefined ? {} : { body: JSON.stringify(json), contentType: 'application/json' }),
  });
  let body: unknown = null;
  if (res.text !== '' && !options.ignoreBodyOf?.includes(res.status)) {
    try {
      body = JSON.parse(res.text);
    } catch (cause) {
      throw new IdnsError('bad_response', `${url}: the response (status ${res.status}) is not JSON`, { cause });
    }
  }
  return { status: res.status, headers: res.headers, body };
}

/** Options for one request whose body and answer are text. */
export interface TextRequestOptions extends Omit<JsonRequestOptions, 'body' | 'ignoreBodyOf'> {
  body?: string;
  contentType?: string;
  accept?: string;
}

/**
 * Sends a request and reads the response as UTF-8 text, within the same bounds as jsonRequest (which is
 * this and a parse): for the text protocols of C2SP (a witness's add-checkpoint).
 */
export async function textRequest(
  url: string,
  options: TextRequestOptions = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const signal = options.signal ? AbortSignal.any([options.signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
  const method = options.method ?? 'GET';
  let res: Dispatcher.ResponseData;
  try {
    res = await request(url, {
      method,
      headers: {
        ...(options.accept === undefined ? {} : { accept: options.accept }),
        ...(options.contentType === undefined ? {} : { 'content-type': options.contentType }),
      },
      body: options.body,
      signal,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
    });
  } catch (cause) {
    // A refusal by our own address policy (made in the connect lookup) keeps its meaning.
    const refused = [cause, (cause as { cause?: unknown })?.cause].find((e) => e instanceof IdnsError);
    if (refused) throw refused;
    throw new IdnsError('network_error', `${method} ${url}: ${(cause as Error).message}`, { cause });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) {
        res.body.destroy();
        throw new IdnsError('bad_response', `${url}: the response is larger than ${maxBytes} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (cause) {
    if (cause instanceof IdnsError) throw cause;
    throw new IdnsError('network_error', `${url}: the response was cut off: ${(cause as Error).message}`, { cause });
  }
  return { status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') };
}

/** Turns an idns JSON error body into the typed error it describes, or null when the body is not one. */
export function errorFromBody(body: unknown): IdnsError | null {
  const err = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error;
  if (!err || typeof err.code !== 'string' || typeof err.message !== 'string') return null;
  const details = typeof err.details === 'object' && err.details !== null ? (err.details as Record<string, unknown>) : undefined;
  return new IdnsError(err.code as ErrorCode, err.message, details ? { details } : undefined);
}
