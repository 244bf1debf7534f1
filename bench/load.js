// Load generator, run as its own process so it never shares the server's event loop.
// Usage: node bench/load.js OPTIONS.json, the file holding {"url","paths":[...],"connections","duration"}.
// With "method":"POST" and "bodiesFile": a JSON array of request bodies, each sent once, in turn.
// Prints autocannon's result as one JSON line.
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

const opts = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const paths = opts.paths;
const bodies = opts.bodiesFile ? JSON.parse(readFileSync(opts.bodiesFile, 'utf8')) : null;
let i = 0;
const result = await autocannon({
  url: opts.url,
  connections: opts.connections ?? 64,
  pipelining: 1,
  duration: opts.duration ?? 5,
  // Bodies that must each be sent once (registrations) bound the run; repeatable ones (batch lookups) don't.
  ...(bodies && !opts.repeat ? { amount: bodies.length } : {}),
  requests: [
    {
      method: opts.method ?? 'GET',
      setupRequest: (req) => {
        // A deterministic walk over a shuffled list: random handles without a random source per request.
        req.path = paths[i % paths.length];
        if (bodies) {
          req.body = bodies[i % bodies.length];
          req.headers = { ...req.headers, 'content-type': 'application/json' };
        }
        i += 1;
        return req;
      },
    },
  ],
});
process.stdout.write(
  `${JSON.stringify({
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    non2xx: result.non2xx,
    total: result.requests.total,
  })}\n`,
);
