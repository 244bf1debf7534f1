// The server's Ed25519 (libsodium), installed before anything signs or verifies.
import { ZoneLogs } from './authority/zone-logs.js';
import './records/ed25519-sodium.js';
import { join } from 'node:path';
import { Authority } from './authority/authority.js';
import { AnswerFiles } from './authority/answer-files.js';
import { ChangeProcessor, type ChangeGuard } from './authority/changes.js';
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
import { CredentialStore } from './replication/credentials.js';

/**
 * A data directory's own services: storage, keys, zones, changes, answers, re-signing, transfer
 * credentials. What an operator command (`idns zone`, `idns handle --data`) works with; the serving
 * roles (resolver, replication, notifies, metrics) are in AppContext, which extends this, so that
 * these commands do not load undici, the resolver's discovery or prom-client (a third of their start-up).
 */
export class LocalContext {
  readonly store: Store;
  readonly keys: KeyRing;
  readonly zones: ZoneService;
  /** The zones' logs: checkpoints and proofs (docs/protocol.md §13). */
  readonly zoneLogs: ZoneLogs;
  readonly changes: ChangeProcessor;
  readonly authority: Authority;
  /** Answer files of large zones for the read path, when enabled. */
  readonly answerFiles: AnswerFiles | null;
  readonly resigner: Resigner;
  readonly credentials: CredentialStore;
  readonly rateLimits: RateLimits;

  constructor(
    readonly config: ServerConfig,
    readonly clock: Clock = systemClock,
    readonly log: Logger = createLogger(config.logLevel),
  ) {
    this.store = Store.open(config.dataDir, config.limits.maxDatabaseBytes);
    this.keys = new KeyRing(join(config.dataDir, 'keys'));
    this.zones = new ZoneService(this.store, this.keys, clock);
    this.zoneLogs = new ZoneLogs(this.store, this.zones);
    // After the upgrade to schema 3, each primary signs its migrated history into its digest before it serves.
    for (const { zone, reason } of this.zones.addMigratedHistories()) {
      this.log.warn('the history moved into this zone by the schema upgrade is not in its digest yet; its next change adds it', { zone, reason });
    }
    this.rateLimits = new RateLimits(config.rateLimits, clock);
    const writer = new ChangeWriter({ dataDir: config.dataDir, maxDatabaseBytes: config.limits.maxDatabaseBytes });
    this.changes = new ChangeProcessor(this.store, this.zones, clock, 512, config.rateLimits.enabled ? changeGuard(this.rateLimits) : undefined, writer);
    const af = config.answerFiles;
    this.answerFiles = af.enabled
      ? new AnswerFiles(
          this.store,
          { dir: join(config.dataDir, 'answers'), dbPath: this.store.path, minHandles: af.minHandles, rebuildAfter: af.rebuildAfter },
          clock,
          this.log,
        )
      : null;
    this.authority = new Authority(this.store, this.zones, clock, this.answerFiles);
    this.resigner = new Resigner(this.store, this.zones, clock, config.resign.batchSize);
    this.credentials = new CredentialStore(join(config.dataDir, 'keys'));
  }

  /** Stops background work and closes the database. */
  async close(): Promise<void> {
    await this.changes.close();
    await this.answerFiles?.close();
    this.resigner.stop();
    await this.stopRoles();
    this.zoneLogs.close();
    this.store.close();
  }

  /** Stops what a subclass added, after the changes are drained and before the database closes. */
  protected async stopRoles(): Promise<void> {}
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
