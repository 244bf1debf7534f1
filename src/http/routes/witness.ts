import { Hono } from 'hono';
import type { AppContext } from '../../context.js';
import { witnessKeyOf } from '../../transparency/witness-key.js';

/** This server as a witness (docs/protocol.md §14): C2SP tlog-witness `add-checkpoint`, and what it is and has seen. */
export function witnessRoutes(ctx: AppContext): Hono {
  const app = new Hono();
  app.post('/v1/witness/add-checkpoint', async (c) => {
    const answer = await ctx.witness.addCheckpoint(await c.req.text());
    // C2SP tlog-witness: a size conflict names the size held, so the log can send the right proof.
    if ('heldSize' in answer) return c.body(`${answer.heldSize}\n`, 409, { 'content-type': 'text/x.tlog.size' });
    return c.body(answer.cosignatures, 200, { 'content-type': 'text/plain; charset=utf-8' });
  });
  app.get('/v1/witness', (c) => {
    const { name, key } = witnessKeyOf(ctx.config.dataDir);
    c.header('Cache-Control', 'no-store');
    const follows = ctx.store.witness.follows().map(({ zone, servers, serial }) => ({ zone, servers, serial }));
    return c.json({ name, thumbprint: key.kid, publicKey: key.publicJwk, follows, forks: ctx.store.witness.forks() });
  });
  return app;
}
