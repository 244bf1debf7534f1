import type { ServerResponse } from 'node:http';
import type { Logger } from '../log.js';

/**
 * A streamed response body that never fails inside @hono/node-server, which would print the error to
 * the console and answer `500 text/plain` with the error's message (or append that text to a body
 * already under way). The first chunk is read here: a failure before it is thrown, so the route's
 * error becomes the JSON error response. A failure after it is logged and the connection is closed
 * without the body's end, so the client sees a body cut short (a chunked body without its last chunk),
 * never text that is not part of it.
 */
export async function streamedBody(
  body: ReadableStream<Uint8Array>,
  outgoing: ServerResponse | undefined,
  log: Logger,
  what: string,
): Promise<ReadableStream<Uint8Array>> {
  const reader = body.getReader();
  let pending: Awaited<ReturnType<typeof reader.read>> | null = await reader.read();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = pending ?? (await reader.read());
        pending = null;
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      } catch (err) {
        log.error('response body failed', { err, what });
        // What was written still reaches the client, then the connection closes; the stream stays
        // open until the close cancels it, so nothing more is written (not even the last chunk).
        const socket = outgoing?.socket;
        if (socket) {
          socket.end();
          socket.once('finish', () => socket.destroy());
        } else {
          controller.error(err);
        }
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/** The node:http response under a hono context's request (undefined outside @hono/node-server). */
export function outgoingOf(env: unknown): ServerResponse | undefined {
  return (env as { outgoing?: ServerResponse } | undefined)?.outgoing;
}
