import type { Agent } from 'undici';
import { systemClock, timersFor, type Clock } from './clock.js';
import type { ServerConfig } from './config.js';
import { createLogger, type Logger } from './log.js';
import { LocalContext } from './local-context.js';
import { Metrics, type MetricsSources, type ZoneFacts } from './http/metrics.js';
import { serialOf } from './records/serial.js';
import { createResolver, type Resolver } from './resolver/resolver.js';
import { outboundAgent, trustedCas } from './tls.js';
import { MAX_AUTH_SKEW } from './replication/credentials.js';
import { NonceStore } from './replication/nonces.js';
import { Housekeeper } from './replication/housekeeping.js';
import { Fencer } from './replication/fencing.js';
import { KeyRollovers } from './authority/rollover.js';
import { DelegationFollower } from './authority/auto-ds.js';
import { Notifier } from './replication/notifier.js';
import { PeerLog } from './replication/peers.js';
import { Replicator } from './replication/secondary.js';
import { DEFAULT_TRANSFER_LIMITS } from './replication/transfer-client.js';
import { Witness } from './replication/witnessing.js';
import { CosignatureCollector } from './replication/cosigning.js';
import { witnessKeyOf } from './transparency/witness-key.js';

/**
 * Everything a server process owns, built once at start-up in a straight line: the data directory's
 * services (LocalContext), then the serving roles: resolver, replication, notifies, upkeep, metrics.
 * HTTP routes receive this; nothing else reads configuration or the environment.
 */
export class AppContext extends LocalContext {
  /** The resolver role, when configured. */
  readonly resolver: Resolver | null;
  /** Nonces of the transfer credentials accepted within their time window (each is good once). */
  readonly authNonces: NonceStore;
  readonly replicator: Replicator;
  readonly notifier: Notifier;
  readonly housekeeper: Housekeeper;
  /** The last notify to each target and the last transfer of each client, per zone (for the operator page). */
  readonly peers: PeerLog;
  /** Asks a primary zone's other servers whether it was promoted elsewhere (fencing.ts). */
  readonly fencer: Fencer;
  /** Takes key rollovers of primary zones through their phases (rollover.ts). */
  readonly rollovers: KeyRollovers;
  /** A parent's primary following its `--auto-ds` children's requested ds sets (auto-ds.ts). */
  readonly delegationFollower: DelegationFollower;
  /** This server as a witness of the zones it copies (witnessing.ts). */
  readonly witness: Witness;
  /** A primary collecting its zones' cosignatures from their witnesses (cosigning.ts). */
  readonly cosignatures: CosignatureCollector;
  private keyTimer: unknown = null;
  private changesTimer: unknown = null;
  readonly metrics: Metrics;
  /** Outbound connections of replication (transfers, notifies) to operator-configured servers. */
  private readonly replicationAgent: Agent;

  constructor(config: ServerConfig, clock: Clock = systemClock, log: Logger = createLogger(config.logLevel)) {
    super(config, clock, log);
    // Metrics read the rest of the context only when scraped, so they can be made first.
    this.metrics = new Metrics(metricsSources(this));
    const cas = trustedCas(config);
    const r = config.resolver;
    this.resolver = r
      ? createResolver({
          trustAnchors: r.anchors,
          rootServers: r.rootServers,
          forwarders: r.forwarders,
          discovery: r.discovery ?? false,
          webfinger: r.webfinger,
          allowPrivate: r.allowPrivate,
          ...(r.witnesses ? { witnesses: r.witnesses } : {}),
          cache: r.cache,
          limits: r.limits,
          clock,
          ...(cas ? { ca: cas } : {}),
          onBackgroundError: (err) => this.log.warn('background resolution failed', { err }),
          events: {
            upstream: (seconds, ok) => this.metrics.upstream.observe({ outcome: ok ? 'ok' : 'error' }, seconds),
            cache: (result) => this.metrics.cache.inc({ result }),
          },
        })
      : null;
    this.authNonces = new NonceStore(clock, MAX_AUTH_SKEW);
    this.replicationAgent = outboundAgent(cas, 8);
    this.witness = new Witness(this.store, this.zones, () => witnessKeyOf(config.dataDir), clock, this.log, this.replicationAgent);
    this.replicator = new Replicator(this.store, this.zones, this.credentials, clock, this.log, this.replicationAgent, {
      ...DEFAULT_TRANSFER_LIMITS,
      maxBytes: config.transfers.maxBytes,
      maxMs: config.transfers.maxSeconds * 1000,
      signatureChecks: config.transfers.signatureChecks,
    });
    this.peers = new PeerLog(clock);
    this.notifier = new Notifier(this.zones, this.credentials, clock, this.log, this.replicationAgent, (zone, target, ok, detail) =>
      this.peers.notified(zone, target, ok, detail),
    );
    this.fencer = new Fencer(this.zones, clock, this.log, this.replicationAgent);
    this.rollovers = new KeyRollovers(this.store, this.zones, clock, this.log, this.replicationAgent, config.resign.batchSize);
    this.delegationFollower = new DelegationFollower(this.zones, clock, this.log, this.replicationAgent);
    this.store.onZoneChanged((zone) => {
      this.notifier.zoneChanged(zone);
      // Whenever it notifies, a primary also asks whether another server took its place (at most every 10 s).
      this.fencer.checkSoon(zone);
    });
    this.housekeeper = new Housekeeper(this.store, clock, this.log, config.journal);
    this.cosignatures = new CosignatureCollector(this.store, this.zones, clock, this.log, this.replicationAgent, config.witnessing.recosignMs, (zone) =>
      this.notifier.zoneChanged(zone),
    );
  }

  /** Starts the background work of a serving process: re-signing, replication, notifies, upkeep. */
  startBackground(): void {
    this.resigner.start(this.config.resign.intervalMs, (err) => this.log.error('re-signing failed', { err }));
    this.replicator.start();
    this.notifier.start();
    // At start-up: a primary back from an outage must learn of a promotion before it signs anything.
    void this.fencer.checkAll().catch((err: unknown) => this.log.error('fencing check failed', { err }));
    this.housekeeper.start(this.config.housekeepingIntervalMs);
    // Versions another process signed (the CLI on this data directory) are announced as this one's are.
    this.changesTimer = timersFor(this.clock).setInterval(() => this.store.noticeChangesElsewhere(), 1000);
    this.keyTimer = timersFor(this.clock).setInterval(() => {
      this.rollovers.runOnce().catch((err: unknown) => this.log.error('key rollover failed', { err }));
      this.delegationFollower.runOnce().catch((err: unknown) => this.log.error('following a child delegation failed', { err }));
    }, this.config.rollover.intervalMs);
    this.answerFiles?.start(this.zones.list());
    this.cosignatures.start();
  }

  protected override async stopRoles(): Promise<void> {
    this.fencer.stop();
    this.cosignatures.stop();
    if (this.keyTimer !== null) timersFor(this.clock).clearInterval(this.keyTimer);
    if (this.changesTimer !== null) timersFor(this.clock).clearInterval(this.changesTimer);
    this.notifier.stop();
    this.housekeeper.stop();
    await this.replicator.stop();
    await this.resolver?.close();
    await this.replicationAgent.close();
  }
}

/** What the metrics read of a server, when scraped: bounded work per zone (one index seek for a primary's earliest expiry). */
function metricsSources(ctx: AppContext): MetricsSources {
  return {
    now: () => ctx.clock.now(),
    *zones(): Iterable<ZoneFacts> {
      for (const row of ctx.zones.list()) {
        yield { name: row.name, role: row.role, serial: row.record !== '' ? serialOf(row.version) : null, refreshedAt: row.refreshedAt };
      }
    },
    *signatureExpiry() {
      for (const row of ctx.zones.list()) {
        if (row.record === '') continue;
        // A copy's records keep no expiry column (it is 0): only its zone record's expiry is known here.
        const records = row.role === 'primary' ? ctx.store.records.earliestExp(row.content) : null;
        yield { zone: row.name, exp: Math.min(row.recordExp, records ?? Infinity) };
      }
    },
    replication: () => ctx.replicator.statuses(),
    notifies: () => ({ sent: ctx.notifier.sent, gaveUp: ctx.notifier.failed }),
    answerFiles: () => ctx.answerFiles?.status() ?? [],
    zoneLogTrees: () => ctx.zoneLogs.held(),
    resolverCache: () => (ctx.resolver ? { entries: ctx.resolver.cacheSize, bytes: ctx.resolver.cacheBytes } : null),
    resolverZoneForks: () => (ctx.resolver ? ctx.resolver.zoneForks().length + ctx.resolver.checkpointForks().length : 0),
    witnessForks: () => ctx.store.witness.forks().length,
    *rollovers() {
      for (const row of ctx.zones.list()) {
        const r = row.role === 'primary' ? ctx.zones.settings(row).rollover : undefined;
        if (r !== undefined) yield { zone: row.name, phase: r.phase, since: r.since };
      }
    },
  };
}
