// The server's Ed25519 (libsodium), installed before anything signs or verifies.
import './records/ed25519-sodium.js';
import { join } from 'node:path';
import { Authority } from './authority/authority.js';
import { AnswerFiles } from './authority/answer-files.js';
import { ChangeProcessor } from './authority/changes.js';
import { ChangeWriter } from './authority/change-writer.js';
import { KeyRing } from './authority/keyring.js';
import { Resigner } from './authority/resigner.js';
import { ZoneService } from './authority/zones.js';
import { systemClock, type Clock } from './clock.js';
import { IdnsError } from './errors.js';
import type { ServerConfig } from './config.js';
import { createLogger, type Logger } from './log.js';
import { Store } from './store/store.js';
import { RateLimits } from './http/rate-limits.js';
import { Metrics, type MetricsSources, type ZoneFacts } from './http/metrics.js';
import { serialOf } from './authority/serial.js';
import type { ChangeGuard } from './authority/changes.js';
import { createResolver, type Resolver } from './resolver/resolver.js';
import type { Agent } from 'undici';
import { outboundAgent, trustedCas } from './tls.js';
import { CredentialStore, MAX_AUTH_SKEW } from './replication/credentials.js';
import { NonceStore } from './replication/nonces.js';
import { Housekeeper } from './replication/housekeeping.js';
import { Notifier } from './replication/notifier.js';
import { Replicator } from './replication/secondary.js';
import { DEFAULT_TRANSFER_LIMITS } from './replication/transfer-client.js';

/**
 * Everything a server process owns, built once at start-up in a straight line: storage, keys, the
 * authority's services. HTTP routes receive this; nothing else reads configuration or the environment.
 */
export class AppContext {
  readonly store: Store;
  readonly keys: KeyRing;
  readonly zones: ZoneService;
  readonly changes: ChangeProcessor;
  readonly authority: Authority;
  /** Answer files of large zones for the read path, when enabled. */
  readonly answerFiles: AnswerFiles | null;
  readonly resigner: Resigner;
  /** The resolver role, when configured. */
  readonly resolver: Resolver | null;
  readonly credentials: CredentialStore;
  /** Nonces of the transfer credentials accepted within their time window (each is good once). */
  readonly authNonces: NonceStore;
  readonly replicator: Replicator;
  readonly notifier: Notifier;
  readonly housekeeper: Housekeeper;
  readonly rateLimits: RateLimits;
  readonly metrics: Metrics;
  /** Outbound connections of replication (transfers, notifies) to operator-configured servers. */
  private readonly replicationAgent: Agent;

  constructor(
    readonly config: ServerConfig,
    readonly clock: Clock = systemClock,
    readonly log: Logger = createLogger(config.logLevel),
  ) {
    this.store = Store.open(config.dataDir, config.limits.maxDatabaseBytes);
    // Metrics read the rest of the context only when scraped, so they can be made first.
    this.metrics = new Metrics(metricsSources(this));
    this.keys = new KeyRing(join(config.dataDir, 'keys'));
    this.zones = new ZoneService(this.store, this.keys, clock);
    this.rateLimits = new RateLimits(config.rateLimits, clock);
    const writer = new ChangeWriter({ dataDir: config.dataDir, maxDatabaseBytes: config.limits.maxDatabaseBytes });
    this.changes = new ChangeProcessor(this.store, this.zones, clock, 512, config.rateLimits.enabled ? changeGuard(this.rateLimits) : undefined, writer);
    const af = config.answerFiles;
    this.answerFiles = af.enabled ? new AnswerFiles(this.store, { dir: join(config.dataDir, 'answers'), dbPath: this.store.path, minHandles: af.minHandles, rebuildAfter: af.rebuildAfter }, clock, this.log) : null;
    this.authority = new Authority(this.store, this.zones, clock, this.answerFiles);
    this.resigner = new Resigner(this.store, this.zones, clock, config.resign.batchSize);
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
    this.credentials = new CredentialStore(join(config.dataDir, 'keys'));
    this.authNonces = new NonceStore(clock, MAX_AUTH_SKEW);
    this.replicationAgent = outboundAgent(cas, 8);
    this.replicator = new Replicator(this.store, this.zones, this.credentials, clock, this.log, this.replicationAgent, {
      ...DEFAULT_TRANSFER_LIMITS,
      maxBytes: config.transfers.maxBytes,
      maxMs: config.transfers.maxSeconds * 1000,
      signatureChecks: config.transfers.signatureChecks,
    });
    this.notifier = new Notifier(this.zones, this.credentials, clock, this.log, this.replicationAgent);
    this.store.onZoneChanged((zone) => this.notifier.zoneChanged(zone));
    this.housekeeper = new Housekeeper(this.store, clock, this.log, config.journal);
  }

  /** Starts the background work of a serving process: re-signing, replication, notifies, upkeep. */
  startBackground(): void {
    this.resigner.start(this.config.resign.intervalMs, (err) => this.log.error('re-signing failed', { err }));
    this.replicator.start();
    this.notifier.start();
    this.housekeeper.start(this.config.housekeepingIntervalMs);
    this.answerFiles?.start(this.zones.list());
  }

  /** Stops background work and closes the database. */
  async close(): Promise<void> {
    await this.changes.close();
    await this.answerFiles?.close();
    this.resigner.stop();
    this.notifier.stop();
    this.housekeeper.stop();
    await this.replicator.stop();
    await this.resolver?.close();
    await this.replicationAgent.close();
    this.store.close();
  }
}

/** Per-handle and per-zone limits on changes, applied by the change processor. */
function changeGuard(limits: RateLimits): ChangeGuard {
  return {
    before: (req, zone) => {
      limits.changes.take(req.handle);
      const wait = req.invite === null ? 0 : limits.inviteFailures.blocked(zone);
      if (wait > 0) throw new IdnsError('rate_limited', `too many wrong invite codes for zone ${zone}; retry in ${wait} s`, { details: { retryAfter: wait } });
    },
    inviteFailed: (zone) => void limits.inviteFailures.tryTake(zone, 1),
  };
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
    resolverCache: () => (ctx.resolver ? { entries: ctx.resolver.cacheSize, bytes: ctx.resolver.cacheBytes } : null),
  };
}
