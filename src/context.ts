import { join } from 'node:path';
import { Authority } from './authority/answers.js';
import { ChangeProcessor } from './authority/changes.js';
import { KeyRing } from './authority/keyring.js';
import { Resigner } from './authority/resigner.js';
import { ZoneService } from './authority/zones.js';
import { systemClock, type Clock } from './clock.js';
import type { ServerConfig } from './config.js';
import { createLogger, type Logger } from './log.js';
import { Store } from './store/store.js';
import { createResolver, type Resolver } from './resolver/resolver.js';

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
  readonly resigner: Resigner;
  /** The resolver role, when configured. */
  readonly resolver: Resolver | null;

  constructor(
    readonly config: ServerConfig,
    readonly clock: Clock = systemClock,
    readonly log: Logger = createLogger(config.logLevel),
  ) {
    this.store = Store.open(config.dataDir);
    this.keys = new KeyRing(join(config.dataDir, 'keys'));
    this.zones = new ZoneService(this.store, this.keys, clock);
    this.changes = new ChangeProcessor(this.store, this.zones, clock);
    this.authority = new Authority(this.store, this.zones, clock);
    this.resigner = new Resigner(this.store, this.zones, clock, config.resign.batchSize);
    const r = config.resolver;
    this.resolver = r
      ? createResolver({
          trustAnchors: r.anchors,
          rootServers: r.rootServers,
          forwarders: r.forwarders,
          allowPrivate: r.allowPrivate,
          cache: r.cache,
          limits: r.limits,
          clock,
          onBackgroundError: (err) => this.log.warn('background resolution failed', { err }),
        })
      : null;
  }

  /** Stops background work and closes the database. */
  close(): void {
    this.resigner.stop();
    void this.resolver?.close();
    this.store.close();
  }
}
