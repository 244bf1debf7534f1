// Load generator, run as its own process so it never shares the server's event loop.
// Usage: node bench/load.js OPTIONS.json, the file holding {"url","paths":[...],"connections","duration"}
// ("pathsFile" instead of "paths": a file holding the JSON array).
// With "method":"POST" and "bodiesFile": a JSON array of request bodies, each sent once, in turn (or
// over and over with "repeat": true). With "track": true it also reports the highest `serial` of the 2xx
// answers and when the last 2xx arrived (epoch ms), so the caller can time how long a change takes to
// reach a secondary after its acknowledgement.
// Such a run reports `rate`, answers per second until the last one.
// Prints the result as one JSON line; {"jobs": [...]} runs each job in turn in this one process (saving
// a process start per run) and prints a JSON array of their results.
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

const file = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const parsed = new Map();
const readJson = (f) => {
  if (!parsed.has(f)) parsed.set(f, JSON.parse(readFileSync(f, 'utf8')));
  return parsed.get(f);
};
const results = [];
for (const job of file.jobs ?? [file]) results.push(await run(job));
process.stdout.write(`${JSON.stringify(file.jobs ? results : results[0])}\n`);

async function run(opts) {
  const paths = opts.pathsFile ? readJson(opts.pathsFile) : opts.paths;
  const bodies = opts.bodiesFile ? readJson(opts.bodiesFile) : null;
  let i = 0;
  let maxSerial = -1;
  let lastAckAt = 0;
  let lastAnswerAt = 0;
  const startedAt = Date.now();
  const once = bodies && !opts.repeat;
  // Latencies of the 2xx answers, in ms: autocannon's own histogram keeps whole milliseconds, too coarse
  // for a p99 of 2-4 ms compared as a ratio (2 against 3 ms reads as 1.5x whatever the truth).
  const latencies = [];
  const tracker = autocannon({
    url: opts.url,
    connections: opts.connections ?? 64,
    pipelining: 1,
    duration: opts.duration ?? 5,
    // Bodies that must each be sent once (registrations) bound the run; repeatable ones (batch lookups) don't.
    // Such a run ends at the first sampling tick after its last answer: tick often, and time it ourselves.
    ...(once ? { amount: bodies.length, sampleInt: 50 } : {}),
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
        ...(once
          ? {
              onResponse: (status, body) => {
                lastAnswerAt = Date.now();
                if (!opts.track || status < 200 || status > 299) return;
                lastAckAt = lastAnswerAt;
                const serial = JSON.parse(body).serial;
                if (serial > maxSerial) maxSerial = serial;
              },
            }
          : {}),
      },
    ],
  });
  tracker.on('response', (_client, status, _bytes, ms) => {
    if (status >= 200 && status <= 299) latencies.push(ms);
  });
  const result = await tracker;
  const sorted = Float64Array.from(latencies).sort();
  const percentile = (p) => (sorted.length === 0 ? 0 : Math.round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] * 100) / 100);
  return {
    rps: result.requests.average,
    // To 0.01 ms, from each answer's own time (autocannon's: from the request's write to its answer).
    p50: percentile(50),
    p99: percentile(99),
    errors: result.errors,
    non2xx: result.non2xx,
    total: result.requests.total,
    // Bodies sent once: answers per second from the start to the last answer (rps, an average of
    // per-sample counts, would count the last partial sample as a whole one).
    ...(once ? { rate: result.requests.total / ((lastAnswerAt - startedAt) / 1000) } : {}),
    startedAt,
    ...(opts.track ? { maxSerial, lastAckAt } : {}),
  };
}
