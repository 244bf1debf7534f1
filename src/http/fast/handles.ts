import type { IncomingMessage } from 'node:http';
import type { AppContext } from '../../context.js';
import { parseJsonObject } from '../request.js';
import { readBody } from './body.js';
import { changeRequestOf, registerReply } from '../routes/handles.js';
import type { FastEndpoint, FastReply, RequestHead } from './dispatch.js';

/**
 * Registration, `POST /v1/handles`, on the fast path: on a busy primary the general stack took as long
 * as the change itself (bench/analysis.md, target 4). The dispatcher has applied the body limit and the
 * client's write limit; this reads the body (its Content-Length: a chunked one goes to the application),
 * submits the change and answers by the route's rule (routes/handles.ts `registerReply`).
 */
export class HandlesEndpoint implements FastEndpoint {
  constructor(private readonly ctx: AppContext) {}

  /** The registration's reply, once the change is accepted; errors reject to the error mapping. */
  async answer(req: IncomingMessage, _param: string, head: RequestHead): Promise<FastReply> {
    const text = await readBody(req, Number(head.contentLength));
    const result = await this.ctx.changes.submit(changeRequestOf(parseJsonObject(text)), { expectAction: 'register' });
    const reply = registerReply(result);
    return {
      status: reply.status,
      headers: reply.headers,
      body: reply.body,
      tally: null,
      facts: { role: 'change', action: 'register', zone: result.zone, outcome: 'accepted' },
    };
  }
}
