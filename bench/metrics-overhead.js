// What the request metrics cost per request, in this process, without HTTP: the pre-bound tally of the
// resolve fast path (count + duration histogram), the `Metrics.request()` accounting of the application
// and the other fast paths, and prom-client's own calls beside them for scale.
// Usage: `npm run build && node bench/metrics-overhead.js`. Not part of `npm run bench`.
import { Counter, Histogram, Registry } from 'prom-client';
import { build, median } from './lib.js';

const { Metrics, REQUEST_DURATION_BUCKETS } = await import(`${build}dist/http/metrics.js`);

const sources = {
  now: () => Date.now(),
  zones: () => [],
  replication: () => [],
  notifies: () => ({ sent: 0, gaveUp: 0 }),
  answerFiles: () => [],
  resolverCache: () => null,
};
const metrics = new Metrics(sources);
const tally = metrics.tally({ route: '/v1/resolve/:handle', method: 'GET', status: '200' }, { role: 'authoritative', outcome: 'answer' });
const registry = new Registry();
const counter = new Counter({ name: 'c_total', help: 'c', labelNames: ['route', 'method', 'status'], registers: [registry] });
const histogram = new Histogram({
  name: 'h_seconds',
  help: 'h',
  labelNames: ['route', 'method', 'status_class'],
  buckets: [...REQUEST_DURATION_BUCKETS],
  registers: [registry],
});
const child = histogram.labels({ route: '/v1/resolve/:handle', method: 'GET', status_class: '2xx' });

// Durations as the fast path sees them: tens of µs, a few slower.
const durations = Float64Array.from({ length: 1024 }, (_, i) => (i % 97 === 0 ? 0.004 : 0.00002 + (i % 13) * 0.000004));
const cases = {
  'Tally.add (resolve fast path: request count + duration histogram)': (i) => tally.add(durations[i & 1023]),
  'performance.now() twice + Tally.add (what the fast path adds per request)': (i) => {
    const started = performance.now();
    tally.add((performance.now() - started + durations[i & 1023]) / 1000);
  },
  'Metrics.request (application and other fast paths)': (i) => metrics.request('/v1/lookup/:handle', 'GET', 200, durations[i & 1023]),
  'prom-client Counter.inc(labels) (the old per-request count)': () => counter.inc({ route: '/v1/lookup/:handle', method: 'GET', status: '200' }),
  'prom-client Histogram.labels(...) child observe': (i) => child.observe(durations[i & 1023]),
  'prom-client Histogram.observe(labels, v)': (i) =>
    histogram.observe({ route: '/v1/lookup/:handle', method: 'GET', status_class: '2xx' }, durations[i & 1023]),
};

const N = 2_000_000;
for (const [name, fn] of Object.entries(cases)) {
  for (let i = 0; i < N / 4; i++) fn(i); // warm-up
  const runs = [];
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) fn(i);
    runs.push(Number(process.hrtime.bigint() - t0) / N);
  }
  process.stdout.write(`${name}: ${median(runs).toFixed(1)} ns per request (median of 5 × ${N})\n`);
}
// Scraping stays valid and holds what was counted.
const text = await metrics.registry.metrics();
if (!text.includes('idns_http_request_duration_seconds_count{route="/v1/resolve/:handle",method="GET",status_class="2xx"}'))
  throw new Error('no duration series');
