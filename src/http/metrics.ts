import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { serialOf } from '../authority/serial.js';
import type { AppContext } from '../context.js';

/**
 * A count of requests that all carry the same labels, for a hot path: it adds 1 to `n`, and the count
 * reaches `requests` (and `queries`) when the metrics are read. prom-client's inc() builds and checks
 * the label set on every call, a cost worth skipping on a path that answers tens of thousands a second.
 */
export class Tally {
  n = 0;
  constructor(
    readonly request: { route: string; method: string; status: string },
    readonly query: { role: string; outcome: string } | null,
  ) {}
}

/**
 * The server's Prometheus metrics. Label values come from route patterns, fixed outcome names, error
 * codes and the names of zones held here, never from raw request input, so cardinality stays bounded.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly queries: Counter<'role' | 'outcome'>;
  readonly changes: Counter<'action' | 'outcome'>;
  readonly cache: Counter<'result'>;
  readonly upstream: Histogram<'outcome'>;
  readonly refused: Counter<'reason'>;

  private readonly tallies: Tally[] = [];

  constructor(ctx: AppContext) {
    const registers = [this.registry];
    // Reading either counter first adds what hot paths have tallied.
    const collect = () => this.flushTallies();
    this.requests = new Counter({ name: 'idns_http_requests_total', help: 'HTTP requests by route pattern, method and status', labelNames: ['route', 'method', 'status'], registers, collect });
    this.queries = new Counter({
      name: 'idns_queries_total',
      help: 'Queries by role (authoritative, resolver) and outcome (answer, denial, referral, found, not_found, or an error code)',
      labelNames: ['role', 'outcome'],
      registers,
      collect,
    });
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
    this.cache = new Counter({ name: 'idns_resolver_cache_total', help: 'Resolver cache lookups by result (hit, miss, stale)', labelNames: ['result'], registers });
    this.upstream = new Histogram({
      name: 'idns_resolver_upstream_seconds',
      help: 'Latency of the resolver requests to zone servers and upstream resolvers, by outcome (ok, error)',
      labelNames: ['outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    new Gauge({
      name: 'idns_zone_serial',
      help: 'Current serial of each zone held here',
      labelNames: ['zone', 'role'],
      registers,
      collect() {
        this.reset();
        for (const z of ctx.zones.list()) if (z.record !== '') this.set({ zone: z.name, role: z.role }, serialOf(z.version));
      },
    });
    new Gauge({
      name: 'idns_secondary_lag_serials',
      help: "How many serials a secondary zone is behind its source's last announced serial",
      labelNames: ['zone'],
      registers,
      collect() {
        this.reset();
        for (const s of ctx.replicator.statuses()) {
          if (s.primarySerial !== null && s.serial !== null) this.set({ zone: s.zone }, (s.primarySerial - s.serial + 2 ** 32) % 2 ** 32);
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
        for (const row of ctx.zones.list()) {
          if (row.role === 'secondary' && row.refreshedAt !== null) this.set({ zone: row.name }, (ctx.clock.now() - row.refreshedAt) / 1000);
        }
      },
    });
    new Gauge({
      name: 'idns_transfers',
      help: 'Zone transfers since start, by zone and kind (full, incremental, failed)',
      labelNames: ['zone', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const s of ctx.replicator.statuses()) {
          for (const kind of ['full', 'incremental', 'failed'] as const) this.set({ zone: s.zone, kind }, s.transfers[kind]);
        }
      },
    });
    new Gauge({
      name: 'idns_notifies',
      help: 'Notifies since start, by result (sent, including retries; gave_up)',
      labelNames: ['result'],
      registers,
      collect() {
        this.set({ result: 'sent' }, ctx.notifier.sent);
        this.set({ result: 'gave_up' }, ctx.notifier.failed);
      },
    });
    new Gauge({
      name: 'idns_answer_file_handles',
      help: "Handles in each zone's answer file (kind=entries), and those changed since it was built, answered from the database (kind=changed)",
      labelNames: ['zone', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const f of ctx.answerFiles?.status() ?? []) {
          this.set({ zone: f.zone, kind: 'entries' }, f.entries);
          this.set({ zone: f.zone, kind: 'changed' }, f.changed);
        }
      },
    });
    new Gauge({
      name: 'idns_resolver_cache_entries',
      help: 'Entries in the resolver cache',
      registers,
      collect() {
        this.set(ctx.resolver?.cacheSize ?? 0);
      },
    });
    new Gauge({
      name: 'idns_resolver_cache_bytes',
      help: 'Estimated bytes held by the resolver cache (bounded by resolver.cache.maxBytes)',
      registers,
      collect() {
        this.set(ctx.resolver?.cacheBytes ?? 0);
      },
    });
  }

  /** A tally for requests with these labels (one per label set: keep and reuse it). */
  tally(request: Tally['request'], query: Tally['query']): Tally {
    const t = new Tally(request, query);
    this.tallies.push(t);
    return t;
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
