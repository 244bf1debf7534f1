// Load generator, run as its own process so it never shares the server's event loop.
// Usage: node bench/load.js '{"url":"http://127.0.0.1:1234","paths":["/a","/b"],"connections":64,"duration":5}'
// Prints autocannon's result as one JSON line.
import autocannon from 'autocannon';

const opts = JSON.parse(process.argv[2]);
const paths = opts.paths;
let i = 0;
const result = await autocannon({
  url: opts.url,
  connections: opts.connections ?? 64,
  pipelining: 1,
  duration: opts.duration ?? 5,
  requests: [
    {
      method: opts.method ?? 'GET',
      setupRequest: (req) => {
        // A deterministic walk over a shuffled list: random handles without a random source per request.
        req.path = paths[i++ % paths.length];
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
