import { readFileSync } from 'node:fs';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import { serialsFrom } from '../records/serial.js';

/** A zone held here, as the metrics read it when scraped. */
export interface ZoneFacts {
  name: string;
  role: 'primary' | 'secondary';
  /** The zone's serial, or null when it holds no zone record yet. */
  serial: number | null;
  /** Secondary: last successful check against a source, ms; null before the first (and on a primary). */
  refreshedAt: number | null;
}

/** A secondary zone's replication, as the metrics read it when scraped. */
export interface ReplicationFacts {
  zone: string;
  serial: number | null;
  /** The serial the source announced at the last successful check. */
  primarySerial: number | null;
  /** Transfers since start (monotonic). */
  transfers: { full: number; incremental: number; failed: number };
}

/**
 * What the metrics read from the rest of the server, only when scraped: a narrow view, so the metrics
 * sit below the context (the context builds this; nothing here knows the context).
 */
export interface MetricsSources {
  /** Wall-clock time, ms. */
  now(): number;
  zones(): Iterable<ZoneFacts>;
  /** Per zone holding a zone record, the earliest `exp` (epoch seconds) among the signatures served for it. */
  signatureExpiry(): Iterable<{ zone: string; exp: number }>;
  replication(): Iterable<ReplicationFacts>;
  /** Notifies since start (monotonic): sent (retries included) and given up. */
  notifies(): { sent: number; gaveUp: number };
  answerFiles(): Iterable<{ zone: string; entries: number; changed: number }>;
  /** Zones' log trees held in memory for answers bound to the log (authority/zone-logs.ts). */
  zoneLogTrees(): Iterable<{ zone: string; leaves: number; bytes: number }>;
  /** The resolver cache, or null without a resolver role. */
  resolverCache(): { entries: number; bytes: number } | null;
  /** Forks the resolver met and keeps as evidence (two contents of one zone serial); 0 without a resolver role. */
  resolverZoneForks(): number;
  /** Forks of zones' logs this server, as a witness, met and keeps as evidence (GET /v1/witness). */
  witnessForks(): number;
  /** Key rollovers under way in primary zones held here: the phase and since when (epoch seconds). */
  rollovers(): Iterable<{ zone: string; phase: string; since: number }>;
}

/** Upper bounds of the request-duration buckets, s: a fast-path read takes tens of µs, a registration a few ms. */
export const REQUEST_DURATION_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * One series of a histogram, bound to its labels once: observing is a bucket scan and two additions,
 * no label set to build, hash or check (prom-client's observe() does all three on every call).
 */
export class DurationSeries {
  /** Observations per bucket, not cumulative; the last slot is above the highest bound (+Inf). */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Adds one observation, in seconds. */
  observe(seconds: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && seconds > bounds[i]!) i++;
    this.counts[i]! += 1;
    this.sum += seconds;
    this.count += 1;
  }
}

/**
 * `idns_http_request_duration_seconds`: a Prometheus histogram whose series are bound once per label
 * set (DurationSeries) and written out when scraped, in the shape prom-client's registry prints.
 */
class RequestDurations {
  readonly name = 'idns_http_request_duration_seconds';
  readonly help =
    'Time to answer an HTTP request, from its headers until the response is handed to Node, by route pattern, method and status class (2xx, 4xx…)';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, DurationSeries>();

  /** The series of these labels, made on first use (keep and reuse it on a hot path). */
  bind(route: string, method: string, status: number): DurationSeries {
    const statusClass = `${Math.floor(status / 100)}xx`;
    const key = `${route} ${method} ${statusClass}`;
    let s = this.series.get(key);
    if (s === undefined) {
      s = new DurationSeries({ route, method, status_class: statusClass }, REQUEST_DURATION_BUCKETS);
      this.series.set(key, s);
    }
    return s;
  }

  /** The histogram as prom-client's registry reads a metric. */
  async get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { metricName: string; labels: Record<string, string | number>; value: number }[];
  }> {
    const values = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series.values()) {
      let acc = 0;
      for (let i = 0; i < REQUEST_DURATION_BUCKETS.length; i++) {
        acc += s.counts[i]!;
        values.push({ metricName: bucket, labels: { ...s.labels, le: REQUEST_DURATION_BUCKETS[i]! }, value: acc });
      }
      values.push({ metricName: bucket, labels: { ...s.labels, le: '+Inf' }, value: s.count });
      values.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const s of this.series.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

/**
 * A count of requests that all carry the same labels, for a hot path: `add` counts one and its
 * duration; the count reaches `requests` (and `queries`) when the metrics are read. prom-client's inc()
 * builds and checks the label set on every call, a cost worth skipping on a path that answers tens of
 * thousands a second.
 */
export class Tally {
  n = 0;
  constructor(
    readonly request: { route: string; method: string; status: string },
    readonly query: { role: string; outcome: string } | null,
    readonly duration: DurationSeries,
  ) {}

  /** Counts one request that took `seconds`. */
  add(seconds: number): void {
    this.n += 1;
    this.duration.observe(seconds);
  }
}

/** The package's version, read once: src/http/ and dist/http/ both sit two levels below package.json. */
let packageVersion: string | null = null;
function version(): string {
  if (packageVersion === null) {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    packageVersion = typeof pkg.version === 'string' ? pkg.version : 'unknown';
  }
  return packageVersion;
}

/**
 * The process and Node.js metrics (CPU, memory, heap, event-loop lag, GC), made once per process: they
 * describe the process, and each collection starts an event-loop monitor and a GC observer that are
 * never stopped, so a process with several servers (tests) shares one set.
 */
let processMetrics: Registry | null = null;
function processRegistry(): Registry {
  if (processMetrics === null) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics });
  }
  return processMetrics;
}

/**
 * The server's Prometheus metrics. Label values come from route patterns, fixed outcome names, error
 * codes and the names of zones held here, never from raw request input, so cardinality stays bounded.
 * Cumulative counts are counters named `_total`, durations histograms in `_seconds`, sizes in `_bytes`.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly queries: Counter<'role' | 'outcome'>;
  readonly changes: Counter<'action' | 'outcome'>;
  readonly cache: Counter<'result'>;
  readonly upstream: Histogram<'outcome'>;
  readonly refused: Counter<'reason'>;

  private readonly durations = new RequestDurations();
  private readonly tallies: Tally[] = [];
  /** The tallies of `request()`, by route, method and status. */
  private readonly byRequest = new Map<string, Tally>();

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    // Reading either counter first adds what hot paths have tallied.
    const collect = () => this.flushTallies();
    this.requests = new Counter({
      name: 'idns_http_requests_total',
      help: 'HTTP requests by route pattern, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
      collect,
    });
    this.queries = new Counter({
      name: 'idns_queries_total',
      help: 'Queries by role (authoritative, resolver) and outcome (answer, denial, referral, found, not_found, or an error code)',
      labelNames: ['role', 'outcome'],
      registers,
      collect,
    });
    // prom-client's registry takes any metric with a name, get() and reset(); its Metric type lists only its own classes.
    this.registry.registerMetric(this.durations as unknown as Metric);
    this.changes = new Counter({
      name: 'idns_changes_total',
      help: 'Handle change requests (registrations, updates, deletions) by action and outcome (accepted or an error code)',
      labelNames: ['action', 'outcome'],
      registers,
    });
    this.refused = new Counter({
      name: 'idns_http_refused_total',
      help: 'Connections closed and requests refused before the application saw them, by reason (address_limit, server_limit, an error code, or transport)',
      labelNames: ['reason'],
      registers,
    });
    this.cache = new Counter({
      name: 'idns_resolver_cache_total',
      help: 'Resolver cache lookups by result (hit, miss, stale)',
      labelNames: ['result'],
      registers,
    });
    this.upstream = new Histogram({
      name: 'idns_resolver_upstream_seconds',
      help: 'Latency of the resolver requests to zone servers and upstream resolvers, by outcome (ok, error)',
      labelNames: ['outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    new Gauge({
      name: 'idns_build_info',
      help: 'Always 1: the version of idns and of Node.js this process runs',
      labelNames: ['version', 'node'],
      registers,
    }).set({ version: version(), node: process.version }, 1);
    new Gauge({
      name: 'idns_zone_serial',
      help: 'Current serial of each zone held here',
      labelNames: ['zone', 'role'],
      registers,
      collect() {
        this.reset();
        for (const z of sources.zones()) if (z.serial !== null) this.set({ zone: z.name, role: z.role }, z.serial);
      },
    });
    new Gauge({
      name: 'idns_zone_signature_expiry_seconds',
      help: "Seconds until the earliest signature served for each zone expires (a primary: its zone record's and its records'; a secondary: its zone record's); negative once expired",
      labelNames: ['zone'],
      registers,
      collect() {
        this.reset();
        const now = sources.now() / 1000;
        for (const z of sources.signatureExpiry()) this.set({ zone: z.zone }, Math.round(z.exp - now));
      },
    });
    new Gauge({
      name: 'idns_zone_key_rollover_phase_seconds',
      help: 'For each primary zone rolling its key (idns zone rekey): seconds in its present phase (publishing, signing, draining, retiring); absent when none is under way',
      labelNames: ['zone', 'phase'],
      registers,
      collect() {
        this.reset();
        const now = sources.now() / 1000;
        for (const r of sources.rollovers()) this.set({ zone: r.zone, phase: r.phase }, Math.round(now - r.since));
      },
    });
    new Gauge({
      name: 'idns_secondary_lag_serials',
      help: "How many serials a secondary zone is behind its source's last announced serial",
      labelNames: ['zone'],
      registers,
      collect() {
        this.reset();
        for (const s of sources.replication()) {
          if (s.primarySerial !== null && s.serial !== null) this.set({ zone: s.zone }, serialsFrom(s.serial, s.primarySerial));
        }
      },
    });
    new Gauge({
      name: 'idns_secondary_seconds_since_check',
      help: 'Seconds since a secondary zone last checked its source successfully',
      labelNames: ['zone'],
      registers,
      collect() {
        this.reset();
        const now = sources.now();
        for (const z of sources.zones()) if (z.role === 'secondary' && z.refreshedAt !== null) this.set({ zone: z.name }, (now - z.refreshedAt) / 1000);
      },
    });
    // Counters whose counts other components keep: each scrape copies them (they only grow while the process runs).
    new Counter({
      name: 'idns_transfers_total',
      help: 'Zone transfers since start, by zone and kind (full, incremental, failed)',
      labelNames: ['zone', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const s of sources.replication()) {
          for (const kind of ['full', 'incremental', 'failed'] as const) this.inc({ zone: s.zone, kind }, s.transfers[kind]);
        }
      },
    });
    new Counter({
      name: 'idns_notifies_total',
      help: 'Notifies since start, by result (sent, including retries; gave_up)',
      labelNames: ['result'],
      registers,
      collect() {
        const n = sources.notifies();
        this.reset();
        this.inc({ result: 'sent' }, n.sent);
        this.inc({ result: 'gave_up' }, n.gaveUp);
      },
    });
    new Gauge({
      name: 'idns_answer_file_handles',
      help: "Handles in each zone's answer file (kind=entries), and those changed since it was built, answered from the database (kind=changed)",
      labelNames: ['zone', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const f of sources.answerFiles()) {
          this.set({ zone: f.zone, kind: 'entries' }, f.entries);
          this.set({ zone: f.zone, kind: 'changed' }, f.changed);
        }
      },
    });
    new Gauge({
      name: 'idns_zone_log_tree_bytes',
      help: "Bytes of each zone's log tree held in memory for answers bound to the log (?log=1): about 64 a leaf",
      labelNames: ['zone'],
      registers,
      collect() {
        this.reset();
        for (const t of sources.zoneLogTrees()) this.set({ zone: t.zone }, t.bytes);
      },
    });
    new Gauge({
      name: 'idns_zone_log_tree_leaves',
      help: "Leaves of each zone's log tree held in memory so far (the tree serves proofs once it holds the checkpoint's size)",
      labelNames: ['zone'],
      registers,
      collect() {
        this.reset();
        for (const t of sources.zoneLogTrees()) this.set({ zone: t.zone }, t.leaves);
      },
    });
    new Gauge({
      name: 'idns_resolver_cache_entries',
      help: 'Entries in the resolver cache',
      registers,
      collect() {
        this.set(sources.resolverCache()?.entries ?? 0);
      },
    });
    new Gauge({
      name: 'idns_resolver_zone_forks',
      help: 'Zone forks the resolver met and keeps as evidence: two zone records of one zone and serial with different contents (resolver.zoneForks()), or two checkpoints of one zone and size with different roots (resolver.checkpointForks())',
      registers,
      collect() {
        this.set(sources.resolverZoneForks());
      },
    });
    new Gauge({
      name: 'idns_witness_forks',
      help: "Forks of zones' logs this server met as a witness and keeps as evidence: two checkpoints of one zone that do not extend one another (GET /v1/witness)",
      registers,
      collect() {
        this.set(sources.witnessForks());
      },
    });
    new Gauge({
      name: 'idns_resolver_cache_bytes',
      help: 'Estimated bytes held by the resolver cache (bounded by resolver.cache.maxBytes)',
      registers,
      collect() {
        this.set(sources.resolverCache()?.bytes ?? 0);
      },
    });
    // The same metric objects in this registry too (a registry only refers to them); typed as plain objects by getMetricsAsArray.
    for (const m of processRegistry().getMetricsAsArray()) this.registry.registerMetric(m as unknown as Metric);
  }

  /** A tally for requests with these labels (one per label set: keep and reuse it). */
  tally(request: Tally['request'], query: Tally['query']): Tally {
    const t = new Tally(request, query, this.durations.bind(request.route, request.method, Number(request.status)));
    this.tallies.push(t);
    return t;
  }

  /**
   * Counts one request (`idns_http_requests_total`) and its duration: the accounting of every request,
   * the application's and the fast paths'. Labels must come from route patterns and fixed sets.
   */
  request(route: string, method: string, status: number, seconds: number): void {
    const key = `${route} ${method} ${status}`;
    let t = this.byRequest.get(key);
    if (t === undefined) {
      t = this.tally({ route, method, status: String(status) }, null);
      this.byRequest.set(key, t);
    }
    t.add(seconds);
  }

  private flushTallies(): void {
    for (const t of this.tallies) {
      if (t.n === 0) continue;
      this.requests.inc(t.request, t.n);
      if (t.query) this.queries.inc(t.query, t.n);
      t.n = 0;
    }
  }
}
