import { Hono } from 'hono';
import type { AuthoritativeAnswer } from '../../authority/authority.js';
import type { BoundLog } from '../../authority/zone-logs.js';
import type { AppContext } from '../../context.js';
import { zoneFromPath } from './zones.js';
import { note } from '../observe.js';
import { IdnsError, isIdnsError } from '../../errors.js';
import { signaturePrefix } from '../../records/jws.js';

/** `GET /v1/resolve/{handle}[?zone=Z]`: authoritative, non-recursive answers from the zones held here. */
export function resolveRoutes(ctx: AppContext): Hono {
  const app = new Hono();
  app.get('/v1/resolve/:handle', (c) => {
    note(c, { role: 'authoritative' });
    const zone = c.req.query('zone');
    const withLog = logQuery(c.req.query('log'));
    const { answer, log } = resolveBound(ctx, c.req.param('handle'), zone === undefined ? undefined : zoneFromPath(zone), withLog);
    note(c, { zone: answer.zone, outcome: answer.status });
    const plain = answerEtag(answer.zoneRecord, signaturePrefix(answer.record), answer.ttl);
    const etag = log ? boundEtag(plain, log) : plain;
    const reply = resolveReply(answer.status, answer.ttl, etag, c.req.header('If-None-Match'));
    for (let i = 0; i < reply.headers.length; i += 2) c.header(reply.headers[i]!, reply.headers[i + 1]!);
    if (reply.status === 304) return c.body(null, 304);
    const body = JSON.stringify(answer);
    return c.body(log ? boundBody(Buffer.from(body), log).toString() : body, reply.status);
  });
  return app;
}

/**
 * An authoritative answer and, with `withLog`, its binding to the zone's log, read in the same turn (the
 * checkpoint of the version it was given from, docs/protocol.md §13.5). When another connection (the
 * writer thread) committed a version the zone rows cached here do not show yet, the binding's map proofs
 * cannot be read for the version answered (zone_unavailable, and the cache is dropped): the answer is
 * read once more, from the version committed.
 */
export function resolveBound(ctx: AppContext, handle: string, zone: string | undefined, withLog: boolean): { answer: AuthoritativeAnswer; log?: BoundLog } {
  const read = () => {
    const answer = ctx.authority.resolve(handle, zone);
    return withLog ? { answer, log: ctx.zoneLogs.bind(answer) } : { answer };
  };
  try {
    return read();
  } catch (err) {
    if (!withLog || !isIdnsError(err, 'zone_unavailable')) throw err;
    return read();
  }
}

/** An answer's body (JSON) with its log binding as the last member (BoundLog.member). */
export function boundBody(body: Buffer, log: BoundLog): Buffer {
  const out = Buffer.allocUnsafe(body.length - 1 + log.member.length);
  log.member.copy(out, body.copy(out, 0, 0, body.length - 1));
  return out;
}

/** The ETag of an answer bound to the log: the body also changes with the checkpoint's cosignatures, so they name it too. */
export function boundEtag(etag: string, log: BoundLog): string {
  return `${etag.slice(0, -1)}-${log.tag}"`;
}

/** `?log=1` asks for the answer's log binding; absent, the answer as always; anything else is a bad request. */
function logQuery(raw: string | undefined): boolean {
  if (raw === undefined) return false;
  if (raw === '1') return true;
  throw new IdnsError('invalid_request', 'log must be 1 (or absent)');
}

/** The status and headers of an authoritative answer; the body, when there is one, is the answer's JSON. */
export interface ResolveReply {
  /** 304: no body. */
  status: 200 | 304 | 404;
  /** Name, value, name, value… (lower-case names). */
  headers: string[];
}

/**
 * The one rule for an authoritative answer's status and headers, used by this route and its fast path
 * (src/http/fast/resolve.ts): 404 for a denial, Cache-Control by the answer's TTL, the ETag, and 304
 * without a body when If-None-Match names it.
 */
export function resolveReply(status: AuthoritativeAnswer['status'], ttl: number, etag: string, ifNoneMatch: string | undefined): ResolveReply {
  const maxAge = `public, max-age=${ttl}`;
  if (etagMatches(ifNoneMatch, etag)) return { status: 304, headers: ['cache-control', maxAge, 'etag', etag] };
  return { status: status === 'denial' ? 404 : 200, headers: ['content-type', 'application/json', 'cache-control', maxAge, 'etag', etag] };
}

/**
 * The ETag of an answer, named by the signatures it carries rather than by hashing its body. The body is
 * fixed by the zone record (zone and serial; for a denial also its noCut gaps, which follow from the zone's
 * content at that serial and the name asked), the record (which fixes the status) and the ttl. Ed25519
 * signatures of different payloads differ, so 16 characters (96 bits) of each name it (the record's:
 * `recordSignature`, records/jws.ts signaturePrefix).
 */
export function answerEtag(zoneRecord: string, recordSignature: string, ttl: number): string {
  return `"${signaturePrefix(zoneRecord)}${recordSignature}${ttl}"`;
}

/** RFC 9110 13.1.2: If-None-Match uses weak comparison, may list several tags, and `*` matches any. */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}
