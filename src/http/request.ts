import type { Context } from 'hono';
import { IdnsError } from '../errors.js';

/** Reads a JSON object body (size already bounded by the body-limit middleware). */
export async function readJsonObject(c: Context): Promise<Record<string, unknown>> {
  return parseJsonObject(await c.req.text());
}

/** Parses a request body that must be a JSON object. */
export function parseJsonObject(text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new IdnsError('invalid_json', 'the request body is not valid JSON', { cause });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new IdnsError('invalid_request', 'the request body must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/** Reads a bounded non-negative integer query parameter. */
export function intQuery(c: Context, name: string, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = c.req.query(name);
  if (raw === undefined) return fallback;
  if (!/^\d{1,16}$/.test(raw) || Number(raw) > max) throw new IdnsError('invalid_request', `query parameter ${name} must be an integer from 0 to ${max}`);
  return Number(raw);
}
