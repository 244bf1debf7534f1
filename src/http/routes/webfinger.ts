import { Hono } from 'hono';
import type { AppContext } from '../../context.js';
import { IdnsError, isIdnsError } from '../../errors.js';
import type { AuthoritativeAnswer } from '../../authority/authority.js';
import { parseHandle } from '../../names/handle.js';
import { decodePayload } from '../../authority/editor.js';
import { linkUri } from '../../records/handle-links.js';
import type { HandleFields } from '../../records/types.js';
import { endpointProblem } from '../../records/urls.js';
import { note } from '../observe.js';
import type { BridgedResult } from '../../resolver/resolver.js';

/** Property name under which the JRD carries the signed handle record, for clients that verify. */
export const RECORD_PROPERTY = 'https://idns.dev/ns/record';
/** Property naming, as an acct: URI, the handle this one moved to (the owner-signed `movedTo`). */
export const MOVED_TO_PROPERTY = 'https://idns.dev/ns/movedTo';
/** The link relation of a profile page, as Mastodon and WebFinger clients use it. */
export const PROFILE_PAGE_REL = 'http://webfinger.net/rel/profile-page';

/** Parses a WebFinger `resource` (RFC 7033 4.1) as an `acct:` URI (RFC 7565) of a valid handle. */
export function parseAcctResource(resource: string | undefined): string {
  if (resource === undefined || resource === '') throw new IdnsError('invalid_resource', 'the "resource" query parameter is required');
  if (!/^acct:/i.test(resource)) throw new IdnsError('invalid_resource', 'resource must be an acct: URI, such as acct:alice@example.com');
  try {
    return parseHandle(resource.slice(5)).handle;
  } catch (cause) {
    throw new IdnsError('invalid_resource', `resource is not a valid handle: ${(cause as Error).message}`, { cause });
  }
}

/** What a WebFinger query asks for: a handle, or the handle whose endpoint is an actor URL. */
export type WebfingerResource = { handle: string } | { endpoint: string };

/**
 * Parses a WebFinger `resource`: an `acct:` URI of a handle, or an http(s) URL (an actor URL, as Mastodon
 * and Fedify ask by) under the endpoint rules (records/urls.ts, loopback allowed as development zones
 * sign it), which names the handle whose endpoint it is exactly. Anything else is invalid_resource.
 */
export function parseResource(resource: string | undefined): WebfingerResource {
  if (resource !== undefined && /^https?:\/\//i.test(resource)) {
    const problem = endpointProblem(resource, true, 'the resource URL');
    if (problem !== null) throw new IdnsError('invalid_resource', `${problem}; resource must be an acct: URI or the URL of a handle's endpoint`);
    return { endpoint: resource };
  }
  if (resource !== undefined && resource !== '' && !/^acct:/i.test(resource)) {
    throw new IdnsError('invalid_resource', "resource must be an acct: URI (acct:alice@example.com) or the https URL of a handle's endpoint (its actor)");
  }
  return { handle: parseAcctResource(resource) };
}

/**
 * A handle's signed record and its TTL: from a zone held here, or, on a server that also runs the
 * resolver role, through the resolver (verified) for handles held elsewhere, or the bridge's unverified
 * answer for a handle whose host publishes no zone (no signed record then).
 */
async function findHandle(ctx: AppContext, handle: string): Promise<{ record: string; ttl: number } | { bridged: BridgedResult; ttl: number }> {
  let answer: AuthoritativeAnswer | null = null;
  try {
    answer = ctx.authority.resolve(handle);
  } catch (err) {
    if (!isIdnsError(err, 'not_authoritative') || !ctx.resolver) throw err;
  }
  if (answer === null || (answer.status === 'referral' && ctx.resolver)) {
    const r = await ctx.resolver!.lookup(handle);
    // Bridged from the host's own WebFinger: there is no signed record to pass on.
    if (!r.verified) return { bridged: r, ttl: r.ttl };
    if (r.status === 'not_found') throw new IdnsError('handle_not_found', `${handle} does not exist`);
    return { record: r.proof.record, ttl: r.ttl };
  }
  if (answer.status === 'referral') throw new IdnsError('not_authoritative', `${handle} is in a zone delegated away from ${answer.zone}`);
  if (answer.status !== 'answer') throw new IdnsError('handle_not_found', `${handle} does not exist`);
  return { record: answer.record, ttl: answer.ttl };
}

interface Link {
  rel: string;
  type: string;
  href: string;
}

/**
 * The JRD of a handle, shaped as Mastodon's (docs/protocol.md §7): `aliases` are the profile page, the
 * endpoint (the actor URL) and the owner's alsoKnownAs (handles as acct: URIs); links are the profile
 * page (when set) and `self`, the endpoint as application/activity+json; properties carry the signed
 * record and, after a move, the handle moved to. `rels` filters the links (RFC 7033 4.3).
 */
export function handleJrd(record: string, rels: readonly string[]): { subject: string; aliases: string[]; links: Link[]; properties: Record<string, string> } {
  const h = decodePayload(record) as unknown as HandleFields;
  const links: Link[] = [];
  if (h.profile !== undefined) links.push({ rel: PROFILE_PAGE_REL, type: 'text/html', href: h.profile });
  links.push({ rel: 'self', type: 'application/activity+json', href: h.endpoint });
  const aliases = [...new Set([...(h.profile !== undefined ? [h.profile] : []), h.endpoint, ...(h.alsoKnownAs ?? []).map(linkUri)])];
  const properties: Record<string, string> = { [RECORD_PROPERTY]: record };
  if (h.movedTo !== undefined) properties[MOVED_TO_PROPERTY] = linkUri(h.movedTo);
  return { subject: `acct:${h.handle}`, aliases, links: rels.length === 0 ? links : links.filter((l) => rels.includes(l.rel)), properties };
}

/**
 * The JRD of a bridged handle: what its host's WebFinger said (subject, aliases, profile page, actor), in
 * the same shape, without properties: there is no signed record, and the resolver vouches for none of it.
 */
export function bridgedJrd(r: BridgedResult, rels: readonly string[]): { subject: string; aliases: string[]; links: Link[] } {
  const links: Link[] = [];
  if (r.profile !== undefined) links.push({ rel: PROFILE_PAGE_REL, type: 'text/html', href: r.profile });
  links.push({ rel: 'self', type: 'application/activity+json', href: r.endpoint });
  return { subject: r.subject, aliases: r.aliases, links: rels.length === 0 ? links : links.filter((l) => rels.includes(l.rel)) };
}

/** `GET /.well-known/webfinger?resource=acct:…|<actor URL>`: the handle as a JRD, readable from any origin. */
export function webfingerRoutes(ctx: AppContext): Hono {
  const app = new Hono();
  app.use('/.well-known/webfinger', async (c, next) => {
    await next();
    // RFC 7033 5: WebFinger resources are public and must be readable by in-browser clients.
    c.res.headers.set('Access-Control-Allow-Origin', '*');
  });
  app.get('/.well-known/webfinger', async (c) => {
    note(c, { role: 'webfinger' });
    const resource = parseResource(c.req.query('resource'));
    const rels = c.req.queries('rel') ?? [];
    // By actor URL only among the zones held here: a resolver cannot search other servers by endpoint.
    const found = 'handle' in resource ? await findHandle(ctx, resource.handle) : ctx.authority.byEndpoint(resource.endpoint).answer;
    note(c, { outcome: 'found' });
    c.header('Cache-Control', `public, max-age=${found.ttl}`);
    c.header('Content-Type', 'application/jrd+json');
    return c.body(JSON.stringify('bridged' in found ? bridgedJrd(found.bridged, rels) : handleJrd(found.record, rels)), 200);
  });
  return app;
}
