import type { IncomingMessage } from 'node:http';
import type { AppContext } from '../../context.js';
import type { Resolver } from '../../resolver/resolver.js';
import type { LookupWire } from '../lookup-wire.js';
import { parseJsonObject } from '../request.js';
import { batchReply } from '../routes/lookup.js';
import { readBody } from './body.js';
import type { FastEndpoint, FastReply, RequestHead } from './dispatch.js';

/**
 * Batch lookups, `POST /v1/lookup`, on the fast path: the general stack's request object and body
 * stream cost more than a hundred cache hits. The dispatcher has applied the body limit and charged
 * the first handle; this reads the body (its Content-Length: a chunked one goes to the application) and
 * answers by the route's rule (routes/lookup.ts `batchReply`). A server without the resolver role
 * leaves the request to the application, which refuses it.
 */
export class BatchEndpoint implements FastEndpoint {
  constructor(
    private readonly ctx: AppContext,
    private readonly wire: LookupWire,
  ) {}

  /** The batch's reply, or null without the resolver role; errors reject to the error mapping. */
  answer(req: IncomingMessage, _param: string, head: RequestHead): Promise<FastReply> | null {
    const resolver = this.ctx.resolver;
    return resolver === null ? null : this.reply(req, resolver, head);
  }

  private async reply(req: IncomingMessage, resolver: Resolver, head: RequestHead): Promise<FastReply> {
    const text = await readBody(req, Number(head.contentLength));
    const reply = await batchReply(this.ctx, resolver, this.wire, parseJsonObject(text), this.ctx.rateLimits.keyOf(req));
    return { status: reply.status, headers: reply.headers, body: reply.body, tally: null, facts: reply.facts };
  }
}
