import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { ThreadPool, workerFile } from '../threads/pool.js';
import { AnswerFile, AnswerFileInvalid, type AnswerFileMeta, type FileRecordSpan } from '../store/answer-file.js';
import type { Store } from '../store/store.js';
import type { ZoneRow } from '../store/zones.js';

/** What a build thread is asked to do. */
export interface BuildJob {
  dbPath: string;
  zone: string;
  path: string;
  minHandles: number;
}

/** A build thread's answer: the file it wrote, or why it wrote none. */
export type BuildReply = { kind: 'built'; meta: AnswerFileMeta } | { kind: 'small'; meta: AnswerFileMeta } | { kind: 'gone' };

/** Settings of the answer files (configuration `answerFiles`). */
export interface AnswerFilesOptions {
  /** Directory of the files (`answers/` in the data directory). */
  dir: string;
  /** The database, which each build reads through its own read-only connection. */
  dbPath: string;
  /** Zones with fewer handles are answered from the database alone. */
  minHandles: number;
  /** A file is rebuilt once this many of its handles (and at least a quarter of them) have changed since it was built. */
  rebuildAfter: number;
  /** Longest a build may run before it is stopped (a stuck build would hold up every later one). */
  buildTimeoutMs?: number;
}

/** A file in use, and the handles changed since the version it holds, which it must not answer for. */
interface Installed {
  file: AnswerFile;
  /** The zone version `changed` has been brought up to. */
  through: number;
  changed: Set<string>;
}

interface ZoneState {
  installed: Installed | null;
  /** The last build found the zone below minHandles, at this version. */
  small: AnswerFileMeta | null;
  /** A build is queued or running. */
  pending: boolean;
  /** When the last build failed (ms); the next waits RETRY_AFTER_MS. */
  failedAt: number | null;
}

/** The share of a file's entries that must have changed before it is rebuilt (as well as options.rebuildAfter). */
const REBUILD_SHARE = 0.25;
const RETRY_AFTER_MS = 10 * 60_000;
const SUFFIX = '.answers';
const BUILD_YOUNG_GENERATION_MB = 4;
/** A million handles take 4–9 s: this leaves room for zones a hundred times larger on a slow disk. */
const BUILD_TIMEOUT_MS = 30 * 60_000;

/**
 * Answer files: per large zone, a flat file of every handle's signed record with an open-addressing
 * index (store/answer-file.ts), read with one pread (two above 4M handles) where a SQLite point read of
 * a zone too large for any cache costs a B-tree descent and a 16 KiB leaf. The database stays the one source of truth: a
 * file holds the zone as of one version, built on a background thread, and the handles the journal
 * shows changed since then are answered from the database until the next build. A file that can no
 * longer be brought up to date that way (another copy of the zone, a journal trimmed past it, a bulk
 * import) is dropped at once; nothing in it is used after that.
 */
export class AnswerFiles {
  private readonly zones = new Map<string, ZoneState>();
  private readonly queue: string[] = [];
  /** The thread of the build running now (one at a time). */
  private builder: ThreadPool<BuildJob, BuildReply> | null = null;
  /** start() has run: until then (and after close()) nothing is built or read. */
  private started = false;
  private closed = false;
  /** Builds that ended (built, small, gone or failed), for tests and operators. */
  builds = 0;

  constructor(
    private readonly store: Store,
    private readonly options: AnswerFilesOptions,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  /**
   * Takes up the files a previous run left whose zones have not changed since (deleting the rest and
   * any half-written one), then starts building for the zones that have none.
   */
  start(rows: readonly ZoneRow[]): void {
    if (this.started || this.closed) return;
    this.started = true;
    mkdirSync(this.options.dir, { recursive: true, mode: 0o700 });
    const byName = new Map(rows.map((r) => [r.name, r]));
    for (const name of readdirSync(this.options.dir)) {
      const path = join(this.options.dir, name);
      if (!name.endsWith(SUFFIX)) {
        if (name.endsWith(`${SUFFIX}.tmp`)) rmSync(path, { force: true });
        continue;
      }
      let file: AnswerFile;
      try {
        file = AnswerFile.open(path);
      } catch (err) {
        // Damaged, or unreadable (then the delete may fail too): either way the zone gets a new file.
        this.log.warn(err instanceof AnswerFileInvalid ? 'answer file damaged; deleting it' : 'answer file unreadable; deleting it', { path, err });
        try {
          rmSync(path, { force: true });
        } catch (cause) {
          this.log.warn('could not delete an answer file', { path, err: cause });
        }
        continue;
      }
      // Only a zone exactly as the file holds it: the same version and signed zone record, whose digest
      // covers every record. Catching up through the journal is safe while one server sees every change;
      // across a stop the database may have been restored from a backup and changed again, reaching the
      // file's version by another history.
      const row = byName.get(file.meta.zone);
      const state = row && this.state(row.name);
      if (!row || !state || state.installed !== null || !sameZone(row, file.meta) || row.version !== file.meta.version || row.record !== file.meta.zoneRecord) {
        discard(file);
        continue;
      }
      state.installed = { file, through: file.meta.version, changed: new Set() };
    }
    for (const row of rows) if (this.state(row.name).installed === null) this.consider(row, this.state(row.name));
    // Without waiting for a query: a zone that grows past the threshold gets its file, and a file of a
    // replaced copy (or a deleted zone) goes, with the disk space it holds.
    this.store.onZoneChanged((zone) => {
      if (this.closed) return;
      const row = this.store.zones.cached(zone);
      const state = this.zones.get(zone) ?? (row ? this.state(zone) : undefined);
      if (state === undefined) return;
      if (!row) return this.drop(state, 'the zone is gone');
      if (state.installed !== null && !sameZone(row, state.installed.file.meta)) this.drop(state, 'the zone has another copy');
      if (state.installed === null) this.consider(row, state);
    });
  }

  /**
   * The record of `handle` in `zone` (the zone row the caller read) when a file can answer for it, where
   * the file's read buffer holds it (valid until the next read of a file), else undefined: the caller then
   * asks the database, which is always right.
   */
  record(zone: ZoneRow, handle: string): FileRecordSpan | undefined {
    const state = this.zones.get(zone.name);
    const installed = state?.installed;
    if (installed == null) {
      if (this.started && !this.closed) this.consider(zone, state ?? this.state(zone.name));
      return undefined;
    }
    const meta = installed.file.meta;
    if (zone.content !== meta.content || zone.createdAt !== meta.createdAt) {
      this.drop(state!, 'the zone has another copy');
      this.consider(zone, state!);
      return undefined;
    }
    if (zone.version !== installed.through && !this.catchUp(zone, state!, installed)) return undefined;
    if (installed.changed.has(handle)) return undefined;
    try {
      return installed.file.span(handle);
    } catch (err) {
      // A file cut short or unreadable under the server (a disk error, an operator's mistake): the
      // database answers, and a new file is built.
      this.log.warn('answer file unreadable; the zone is answered from the database', { zone: zone.name, path: installed.file.path, err });
      this.drop(state!, 'it could not be read');
      this.consider(zone, state!);
      return undefined;
    }
  }

  /** Per zone with a file: its entries, and the handles changed since it was built (answered from the database). */
  status(): { zone: string; version: number; entries: number; changed: number }[] {
    const out = [];
    for (const [zone, s] of this.zones) {
      if (s.installed) out.push({ zone, version: s.installed.file.meta.version, entries: s.installed.file.meta.entries, changed: s.installed.changed.size });
    }
    return out;
  }

  /** How many builds are queued or running. */
  get building(): number {
    return this.queue.length + (this.builder === null ? 0 : 1);
  }

  /** Stops building and closes the files (they stay on disk for the next start). */
  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    const builder = this.builder;
    this.builder = null;
    await builder?.close();
    for (const s of this.zones.values()) {
      s.installed?.file.close();
      s.installed = null;
    }
  }

  private state(zone: string): ZoneState {
    let s = this.zones.get(zone);
    if (s === undefined) {
      s = { installed: null, small: null, pending: false, failedAt: null };
      this.zones.set(zone, s);
    }
    return s;
  }

  /**
   * Adds the handles changed up to the zone's version to the file's set; false when the file cannot
   * answer now: the row is older than the file (a cached row, caught up shortly), or the journal no
   * longer reaches back to the file (then the file is dropped).
   */
  private catchUp(zone: ZoneRow, state: ZoneState, installed: Installed): boolean {
    if (zone.version < installed.through) return false;
    if (zone.journalFloor > installed.through) {
      this.drop(state, 'the journal no longer reaches back to it');
      this.consider(zone, state);
      return false;
    }
    for (const key of this.store.journal.handlesChanged(zone.name, installed.through, zone.version)) installed.changed.add(key);
    installed.through = zone.version;
    if (installed.changed.size >= this.rebuildThreshold(installed.file)) this.request(zone.name, state);
    return true;
  }

  /** How many changed handles make a file worth building again. */
  private rebuildThreshold(file: AnswerFile): number {
    return Math.max(this.options.rebuildAfter, file.meta.entries * REBUILD_SHARE);
  }

  /** Starts a build for a zone without a file, unless one is under way, failed lately, or the zone is still too small. */
  private consider(zone: ZoneRow, state: ZoneState): void {
    if (state.pending || zone.record === '') return;
    const small = state.small;
    // Without a bulk change (a new copy, an import, which moves the journal floor), each version adds at
    // most one handle: the zone cannot have reached the threshold before this many versions.
    if (small && sameZone(zone, small) && zone.journalFloor <= small.version && zone.version - small.version < this.options.minHandles - small.entries) return;
    this.request(zone.name, state);
  }

  private request(zone: string, state: ZoneState): void {
    if (state.pending || this.closed) return;
    if (state.failedAt !== null && this.clock.now() - state.failedAt < RETRY_AFTER_MS) return;
    state.pending = true;
    this.queue.push(zone);
    this.next();
  }

  /** Runs the next queued build: one at a time, so that building never takes both cores. */
  private next(): void {
    if (this.builder !== null || this.closed) return;
    const zone = this.queue.shift();
    if (zone === undefined) return;
    const state = this.state(zone);
    const path = join(this.options.dir, `${zone === '.' ? '_root' : zone}.${randomBytes(6).toString('hex')}${SUFFIX}`);
    const job: BuildJob = { dbPath: this.options.dbPath, zone, path, minHandles: this.options.minHandles };
    const started = this.clock.now();
    // A thread of its own for each build, stopped once it answers, with a small young generation: the
    // build streams a million short-lived rows, and the default (16 MB semi-spaces) would add ~30 MB to
    // the process's peak memory for no gain in speed.
    const builder = new ThreadPool<BuildJob, BuildReply>(workerFile(import.meta.url, 'answer-file-worker'), {
      name: 'answer-file',
      size: 1,
      resourceLimits: { maxYoungGenerationSizeMb: BUILD_YOUNG_GENERATION_MB },
    });
    this.builder = builder;
    const timeoutMs = this.options.buildTimeoutMs ?? BUILD_TIMEOUT_MS;
    let timedOut = false;
    // Real time, not the clock's: a deadline on work, like one on I/O (clock.ts).
    const timer = setTimeout(() => {
      timedOut = true;
      void builder.close();
    }, timeoutMs);
    timer.unref();
    const built = builder.run(job).then(
      (reply) => reply,
      (err: unknown) => {
        if (this.closed) return null;
        state.failedAt = this.clock.now();
        if (timedOut) this.log.warn('building an answer file took too long and was stopped; the zone is answered from the database', { zone, ms: timeoutMs });
        else this.log.warn('building an answer file failed; the zone is answered from the database', { zone, err });
        return null;
      },
    );
    void built.then(async (reply) => {
      clearTimeout(timer);
      await builder.close();
      if (this.builder === builder) this.builder = null;
      state.pending = false;
      this.builds += 1;
      if (reply !== null && !this.closed) this.finish(zone, state, path, reply, this.clock.now() - started);
      else rmSync(path, { force: true });
      // A thread stopped part-way (close(), the time limit) leaves its temporary file.
      rmSync(`${path}.tmp`, { force: true });
      this.next();
    });
  }

  private finish(zone: string, state: ZoneState, path: string, reply: BuildReply, ms: number): void {
    if (reply.kind !== 'built') {
      // A zone that shrank below the threshold (or went) keeps no file: tracking its changes would only
      // ask for builds that write none.
      state.small = reply.kind === 'small' ? reply.meta : null;
      this.drop(state, reply.kind === 'small' ? `the zone has fewer than ${this.options.minHandles} handles` : 'the zone is gone');
      // The build read a snapshot: changes committed while it ran asked for nothing (it was pending), so
      // the zone as it is now may already be past the threshold. consider() skips it when it cannot be.
      const row = this.store.zones.cached(zone);
      if (row && reply.kind === 'small' && !this.closed) this.consider(row, state);
      return;
    }
    let file: AnswerFile;
    try {
      file = AnswerFile.open(path);
    } catch (err) {
      state.failedAt = this.clock.now();
      this.log.warn('a new answer file could not be opened; the zone is answered from the database', { zone, path, err });
      rmSync(path, { force: true });
      return;
    }
    state.small = null;
    state.failedAt = null;
    this.drop(state, null);
    state.installed = { file, through: file.meta.version, changed: new Set() };
    this.log.info('answer file ready', { zone, version: file.meta.version, entries: file.meta.entries, ms });
  }

  /** Stops using a zone's file and deletes it. */
  private drop(state: ZoneState, why: string | null): void {
    const installed = state.installed;
    if (installed === null) return;
    state.installed = null;
    if (why !== null) this.log.info('answer file dropped', { zone: installed.file.meta.zone, why });
    discard(installed.file);
  }
}

function sameZone(row: ZoneRow, meta: AnswerFileMeta): boolean {
  return row.content === meta.content && row.createdAt === meta.createdAt;
}

function discard(file: AnswerFile): void {
  file.close();
  rmSync(file.path, { force: true });
}
