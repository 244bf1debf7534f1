import { Hono } from 'hono';
import type { AppContext } from '../../context.js';
import { IdnsError, isIdnsError } from '../../errors.js';
import type { AuthoritativeAnswer } from '../../authority/answers.js';
import { parseHandle } from '../../names/handle.js';
import { decodePayload } from '../../authority/editor.js';
import { note } from '../observe.js';

/** Property name under which the JRD carries the signed handle record, for clients that verify. */
export const RECORD_PROPERTY = 'https://idns.dev/ns/record';

/** Parses a WebFinger `resource` (RFC 7033 4.1): only `acct:` URIs (RFC 7565) of a valid handle. */
export function parseAcctResource(resource: string | undefined): string {
  if (resource === undefined || resource === '') throw new IdnsError('invalid_resource', 'the "resource" query parameter is required');
  if (!/^acct:/i.test(resource)) throw new IdnsError('invalid_resource', 'resource must be an acct: URI, such as acct:alice@example.com');
  try {
    return parseHandle(resource.slice(5)).handle;
  } catch (cause) {
    throw new IdnsError('invalid_resource', `resource is not a valid handle: ${(cause as Error).message}`, { cause });
  }
}

/**
 * The handle's endpoint and signed record: from a zone held here, or, on a server that also runs the
 * resolver role, through the resolver for handles held elsewhere.
 */
async function findHandle(ctx: AppContext, handle: string): Promise<{ endpoint: string; record: string | null; ttl: number }> {
  let answer: AuthoritativeAnswer | null = null;
  try {
    answer = ctx.authority.resolve(handle);
  } catch (err) {
    if (!isIdnsError(err, 'not_authoritative') || !ctx.resolver) throw err;
  }
  if (answer === null || (answer.status === 'referral' && ctx.resolver)) {
    const r = await ctx.resolver!.lookup(handle);
    // Bridged from the host's own WebFinger: there is no signed record to pass on.
    if (!r.verified) return { endpoint: r.endpoint, record: null, ttl: r.ttl };
    if (r.status === 'not_found') throw new IdnsError('handle_not_found', `${handle} does not exist`);
    return { endpoint: r.endpoint!, record: r.proof.record, ttl: r.ttl };
  }
  if (answer.status === 'referral') throw new IdnsError('not_authoritative', `${handle} is in a zone delegated away from ${answer.zone}`);
  if (answer.status !== 'answer') throw new IdnsError('handle_not_found', `${handle} does not exist`);
  const record = decodePayload(answer.record) as { endpoint: string };
  return { endpoint: record.endpoint, record: answer.record, ttl: answer.ttl };
}

/** `GET /.well-known/webfinger?resource=acct:…`: the handle as a JRD, readable from any origin. */
export function webfingerRoutes(ctx: AppContext): Hono {
  const app = new Hono();
  app.use('/.well-known/webfinger', async (c, next) => {
    await next();
    // RFC 7033 5: WebFinger resources are public and must be readable by in-browser clients.
    c.res.headers.set('Access-Control-Allow-Origin', '*');
  });
  app.get('/.well-known/webfinger', async (c) => {
    note(c, { role: 'webfinger' });
    const handle = parseAcctResource(c.req.query('resource'));
    const rels = c.req.queries('rel') ?? [];
    const found = await findHandle(ctx, handle);
    note(c, { outcome: 'found' });
    const links = [{ rel: 'self', type: 'application/activity+json', href: found.endpoint }];
    const jrd = {
      subject: `acct:${handle}`,
      links: rels.length === 0 ? links : links.filter((l) => rels.includes(l.rel)),
      ...(found.record === null ? {} : { properties: { [RECORD_PROPERTY]: found.record } }),
    };
    c.header('Cache-Control', `public, max-age=${found.ttl}`);
    c.header('Content-Type', 'application/jrd+json');
    return c.body(JSON.stringify(jrd), 200);
  });
  return app;
}
