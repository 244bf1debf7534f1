import { Hono, type Context } from 'hono';
import { handleHistory, MAX_HISTORY_PAGE } from '../../authority/history.js';
import type { AppContext } from '../../context.js';
import { IdnsError } from '../../errors.js';
import { normaliseHandle } from '../../names/handle.js';
import { intQuery, readJsonObject } from '../request.js';
import { note } from '../observe.js';

/** Registration and updates: each body is `{ "request": "<compact JWS>" }` signed by the handle's key. */
export function handleRoutes(ctx: AppContext): Hono {
  const app = new Hono();

  app.post('/v1/handles', async (c) => {
    const reply = registerReply(await submit(c, { expectAction: 'register' }));
    for (let i = 0; i < reply.headers.length; i += 2) c.header(reply.headers[i]!, reply.headers[i + 1]!);
    return c.body(reply.body, reply.status);
  });

  app.put('/v1/handles/:handle', async (c) => {
    return c.json(await submit(c, { expectAction: 'update', expectHandle: c.req.param('handle') }), 200);
  });

  app.delete('/v1/handles/:handle', async (c) => {
    return c.json(await submit(c, { expectAction: 'delete', expectHandle: c.req.param('handle') }), 200);
  });

  async function submit(c: Context, options: { expectAction: 'register' | 'update' | 'delete'; expectHandle?: string }) {
    note(c, { role: 'change', action: options.expectAction });
    const result = await ctx.changes.submit(await requestOf(c), options);
    note(c, { zone: result.zone, outcome: 'accepted' });
    return result;
  }

  app.get('/v1/handles/:handle/log', (c) => {
    const after = intQuery(c, 'after', 0);
    const limit = intQuery(c, 'limit', 100, MAX_HISTORY_PAGE);
    const handle = normaliseHandle(c.req.param('handle'));
    return c.json({ handle, operations: handleHistory(ctx.store, ctx.zones, handle, after, limit) });
  });

  return app;
}

async function requestOf(c: Context): Promise<string> {
  return changeRequestOf(await readJsonObject(c));
}

/** The one rule for an accepted registration's answer, used by this route and its fast path (src/http/fast/handles.ts). */
export function registerReply(result: unknown): { status: 201; headers: string[]; body: string } {
  return { status: 201, headers: ['content-type', 'application/json'], body: JSON.stringify(result) };
}

/** The change request a body carries: `{ "request": "<compact JWS>" }`. */
export function changeRequestOf(body: Record<string, unknown>): string {
  if (typeof body.request !== 'string') throw new IdnsError('invalid_request', 'the body must be {"request": "<compact JWS>"}');
  return body.request;
}
