import { randomBytes } from 'node:crypto';
import type { Dispatcher } from 'undici';
import { request } from '../client/undici.js';
import { serialLess, serialOf } from '../records/serial.js';
import type { ZoneReader } from '../authority/zone-reader.js';
import { epochSeconds, type Clock } from '../clock.js';
import { errorFromBody, jsonRequest } from '../client/http.js';
import { IdnsError } from '../errors.js';
import { ZoneDigest } from '../records/digest.js';
import { MAX_JWS_LENGTH } from '../records/jws.js';
import type { ZoneRecord } from '../records/types.js';
import { verifyZoneRecord } from '../records/verify.js';
import type { LoadedRecord, StoredType } from '../store/records.js';
import type { JournaledType } from '../store/journal.js';
import type { Store } from '../store/store.js';
import type { ZoneRow } from '../store/zones.js';
import { authorization, type Credential } from './credentials.js';
import { ndjsonBatches } from './ndjson.js';
import { DigestWorkers } from './digest-workers.js';
import type { ContentCheckSpec } from './content-checks.js';
import { compactItems } from './compact.js';
import { LINE_OVERHEAD, TransferBounds } from './transfer-bounds.js';
import { contentTotals, elementSize } from '../authority/editor.js';
import { TRANSFER_CONTENT_TYPES } from './transfer-source.js';
import type { Checkpoint } from '../transparency/checkpoint.js';
import { applyToMap, LogLoader, MapLoader, transferCheckpoint } from './transfer-log.js';
import { leanHeap } from '../lean-heap.js';
import { changeLeafHash, checkpointMapRoot, checkpointSize } from '../transparency/zone-log.js';
import { ZoneLog } from '../transparency/zone-log-writer.js';

/** Limits on what a transfer peer can make us do. */
export interface TransferLimits {
  /** Time limit for the response headers and between body chunks, ms. */
  timeoutMs: number;
  /** Longest line of a transfer stream, bytes. */
  maxLineBytes: number;
  /** Most entries of an incremental transfer held in memory; a longer one is abandoned for a full one. */
  maxIncrementalEntries: number;
  /**
   * Records written per transaction while loading a full transfer. Small, because the rows wait here
   * until written: at 2,000 (about 2 MB) most lived through two scavenges of the young generation (V8
   * runs them while this thread waits for the digest workers) and were copied to the old one, which grew
   * the heap by ~100 MB between full collections and cost ~1 s of GC in a 200,000-record transfer. The
   * transactions are not synced; at 250 SQLite's share of the time measured the same.
   */
  batchRows: number;
  /** Worker threads hashing the records of a transfer (full, or a large incremental one) beside the main thread. */
  digestWorkers: number;
  /**
   * Signatures verified per full transfer, at random among its records (every record of a zone this
   * small or smaller); every record's structure, schema and position are checked whatever the size, and
   * every signature of an incremental transfer, or of a full one whose zone record does not state its
   * `count` (else a source could sign such a record to lower the share). docs/security.md, "What a
   * secondary checks".
   */
  signatureChecks: number;
  /** Most bytes one transfer may bring; a full transfer whose zone record states its `count` and `size` gets less. */
  maxBytes: number;
  /** Most time one transfer may take, ms. */
  maxMs: number;
}

export const DEFAULT_TRANSFER_LIMITS: TransferLimits = {
  timeoutMs: 10_000,
  maxLineBytes: 128 * 1024,
  maxIncrementalEntries: 200_000,
  batchRows: 250,
  digestWorkers: 1,
  signatureChecks: 2_000,
  maxBytes: 4 * 2 ** 30,
  maxMs: 600_000,
};

const TYPES = new Set<StoredType>(['handle', 'delegation', 'denial', 'op']);

/** Where to copy from, with what to trust. */
export interface Source {
  server: string;
  zone: string;
  /** Thumbprints of the keys the zone record must be signed by. */
  trusted: readonly string[];
  credential: Credential | null;
}

/**
 * The secondary's side of zone transfer: fetches the zone record, then a full or incremental transfer,
 * and applies it only once the digest of the result equals the digest in the zone record the stream was
 * signed with. Nothing is served from a transfer before that check.
 */
export class TransferClient {
  /** Content ids being loaded right now: listed as retired (for crash safety) but not to be cleaned. */
  static readonly loading = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly zones: ZoneReader,
    private readonly clock: Clock,
    private readonly dispatcher: Dispatcher,
    private readonly limits: TransferLimits = DEFAULT_TRANSFER_LIMITS,
  ) {}

  /** The primary's current zone record, verified, with the checkpoint of its log the source serves (unverified). */
  async zoneRecord(src: Source): Promise<{ record: ZoneRecord; jws: string; checkpoint: unknown; witnesses: unknown }> {
    const path = `/v1/zones/${pathZone(src.zone)}`;
    const res = await jsonRequest(`${base(src.server)}${path}`, { timeoutMs: this.limits.timeoutMs, maxBytes: 64 * 1024, dispatcher: this.dispatcher });
    const err = errorFromBody(res.body);
    if (err) throw new IdnsError('transfer_failed', `${src.server}: ${err.code}: ${err.message}`);
    const jws = (res.body as { record?: unknown } | null)?.record;
    const zone = verifyZoneRecord(jws, src.zone, epochSeconds(this.clock), src.trusted);
    const { checkpoint, witnesses } = res.body as { checkpoint?: unknown; witnesses?: unknown };
    return { record: zone.record, jws: jws as string, checkpoint, witnesses };
  }

  /** Copies the whole zone and switches to the copy; returns the new serial. With `again`, a copy of the serial held already is taken too (idns ctl retransfer). */
  async full(src: Source, again = false): Promise<number> {
    const before = this.zones.require(src.zone);
    const opened = await this.open(src, null, 'compact');
    const bounds = new TransferBounds(opened.body, this.limits.maxBytes, this.limits.maxMs);
    const content = `${src.zone}#${randomBytes(6).toString('hex')}`;
    // Listed as retired until it is complete and checked: a crash mid-transfer leaves it for the cleaner.
    this.store.write(() => this.store.records.retire(content, this.clock.now()));
    const releaseHeap = leanHeap.hold();
    TransferClient.loading.add(content);
    // Hashing and checking each record are the largest costs of a transfer: they run in worker threads
    // while this thread parses and stores. They start with the start line, which says what to check against.
    let hashing: DigestWorkers | null = null;
    let start: { record: ZoneRecord; jws: string } | null = null;
    let checkpoint = '';
    let log: LogLoader | null = null;
    let map: MapLoader | null = null;
    // History entries whose leaf is compared with the log's, at the rate signatures are verified.
    let entryCheckRate = 1;
    let ended = false;
    let count = 0;
    let size = 0;
    let rows: LoadedRecord[] = [];
    // Unsynced: these rows are not live until the switch below, whose synced commit makes them durable.
    const flush = () => {
      const batch = rows;
      rows = [];
      this.store.writeUnsynced(() => this.store.records.insertLoaded(content, batch));
    };
    /** Takes a JSON line: the start line first, then the end line; true once the stream is complete. */
    const jsonLine = (value: unknown): boolean => {
      if (ended) throw afterEnd();
      const line = asLine(value);
      if (start === null) {
        start = this.checkStart(line, src, before, 'full', again);
        const { count: signedCount, size: signedSize } = start.record;
        if (signedCount !== undefined && signedSize !== undefined) {
          bounds.limit(signedSize + signedCount * LINE_OVERHEAD + 2 * this.limits.maxLineBytes, "more than its signed zone record's count and size allow");
        }
        const opened = transferCheckpoint(src.zone, start, line.checkpoint);
        checkpoint = opened.note;
        log = new LogLoader(this.store, content, opened);
        map = new MapLoader(this.store, content, opened);
        entryCheckRate = start.record.count === undefined ? 1 : this.limits.signatureChecks / Math.max(1, start.record.count);
        hashing = new DigestWorkers(this.limits.digestWorkers, {
          expected: start.record.count,
          checks: this.checks(src, start, entryCheckRate),
        });
        return false;
      }
      if (line.kind === 'log' || line.kind === 'leaves') {
        if (count > 0) throw new IdnsError('transfer_failed', `a ${line.kind} line after the records; transfer refused`);
        log!.line(line);
        return false;
      }
      if (line.kind !== 'end') throw new IdnsError('transfer_failed', `unexpected line kind ${String(line.kind)} in a full transfer`);
      this.endLine(line, start.jws, count, checkpoint);
      return (ended = true);
    };
    const records = (loaded: LoadedRecord[]) => {
      if (loaded.length === 0) return;
      if (start === null) throw new IdnsError('transfer_failed', `the stream does not start with the full transfer of ${src.zone}`);
      if (count === 0) log!.beginRecords();
      count += loaded.length;
      for (const r of loaded) {
        if (r.type === 'op') r.leaf = log!.entryLeaf(r.key, r.jws, Math.random() < entryCheckRate);
        else map!.add(r.type, r.key, r.jws);
        rows.push(r);
        size += elementSize(r.type, r.key, r.jws);
      }
      // The signed zone record says how many records of what size the zone holds: not one more is taken.
      const { count: signedCount, size: signedSize } = start.record;
      if ((signedCount !== undefined && count > signedCount) || (signedSize !== undefined && size > signedSize)) {
        throw new IdnsError(
          'transfer_failed',
          `the transfer carries more than the ${String(signedCount)} records (${String(signedSize)} bytes) its signed zone record states; transfer refused`,
        );
      }
      if (rows.length >= this.limits.batchRows) flush();
    };
    try {
      if (opened.compact) {
        const items = compactItems(bounds.chunks(), this.limits.maxLineBytes);
        // Read to the end of the body, not just the end line: data after it is refused, and a response
        // read whole leaves its connection reusable.
        for await (const item of items) {
          if (item.kind === 'json') {
            jsonLine(item.value);
          } else {
            if (ended) throw afterEnd();
            const h = hashing as DigestWorkers | null;
            if (h === null) throw new IdnsError('transfer_failed', `the stream does not start with the full transfer of ${src.zone}`);
            h.addElements(item.bytes, item.ranges);
            records(item.rows);
          }
        }
      } else {
        for await (const batch of ndjsonBatches(bounds.chunks(), this.limits.maxLineBytes)) {
          const loaded: LoadedRecord[] = [];
          for (const value of batch) {
            const line = asLine(value);
            if (start === null || ended || line.kind !== 'record') {
              records(loaded.splice(0));
              jsonLine(line);
              continue;
            }
            const r = recordLine(line);
            hashing!.add(r.type, r.key, r.jws);
            loaded.push(r);
          }
          records(loaded);
        }
      }
      if (start === null || !ended) throw new IdnsError('transfer_failed', 'the transfer stream stopped before its end line');
      if (rows.length > 0) flush();
      const digest = await hashing!.finish();
      const first: { record: ZoneRecord; jws: string } = start;
      if (digest.value() !== first.record.digest) {
        throw new IdnsError('transfer_failed', `the transferred content does not match the digest of serial ${first.record.serial}; transfer refused`);
      }
      checkTotals(first.record, { count, size });
      log!.finish(first.jws);
      map!.finish();
      this.store.write(() => {
        const current = this.zones.require(src.zone);
        const version = current.record === '' ? first.record.serial : current.version + ((first.record.serial - serialOf(current.version) + 2 ** 32) % 2 ** 32);
        this.store.zones.replaceCopy({
          name: src.zone,
          version,
          digestState: digest.state(),
          record: first.jws,
          recordExp: first.record.exp,
          salt: first.record.denial.salt,
          content,
          journalFloor: version,
          refreshedAt: this.clock.now(),
          checkpoint,
        });
        this.store.journal.clear(src.zone);
        this.store.records.unretire(content);
        if (current.content !== content) this.store.records.retire(current.content, this.clock.now());
        this.store.markChanged(src.zone);
      });
      return first.record.serial;
    } catch (err) {
      // A repeated (type, key) breaks the table's key: a bad stream like any other.
      if ((err as { code?: unknown }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY')
        throw new IdnsError('transfer_failed', 'the transfer repeats a record; transfer refused', { cause: err });
      throw err;
    } finally {
      TransferClient.loading.delete(content);
      releaseHeap();
      bounds.close();
      (map as MapLoader | null)?.close();
      await (hashing as DigestWorkers | null)?.close();
      // Ends the response body if the loops above stopped before it did.
      opened.body.destroy();
    }
  }

  /**
   * Applies the changes after our serial in one transaction. Returns false when the source's journal no
   * longer reaches back (take a full transfer), or when the change set is too large to hold.
   */
  async incremental(src: Source): Promise<number | false> {
    const before = this.zones.require(src.zone);
    // A copy without a log (made by an older idns) has no tree to append to: a full transfer brings one.
    if (before.checkpoint === '') return false;
    const since = serialOf(before.version);
    let body: Dispatcher.ResponseData['body'];
    try {
      body = (await this.open(src, since)).body;
    } catch (err) {
      if (err instanceof IdnsError && err.code === 'journal_too_old') return false;
      throw err;
    }
    const bounds = new TransferBounds(body, this.limits.maxBytes, this.limits.maxMs);
    // The records put are hashed and checked (every signature: an incremental transfer is small) while the
    // stream arrives, in a worker when there are many; what they replace is only known once the changes
    // meet the copy, in the transaction below. The hashing starts with the start line.
    let added: DigestWorkers | null = null;
    try {
      let start: { record: ZoneRecord; jws: string } | null = null;
      let ended = false;
      let checkpoint = '';
      const changes: Change[] = [];
      let serial = -1;
      // Versions as offsets from our serial (RFC 1982): each must lie in (since, the new serial], rising.
      const serialOffset = (s: number) => (s - since + 2 ** 32) % 2 ** 32;
      const endOffset = (first: { record: ZoneRecord }) => serialOffset(first.record.serial);
      let lastOffset = 0;
      let versionCount = 0;
      for await (const batch of ndjsonBatches(bounds.chunks(), this.limits.maxLineBytes)) {
        for (const value of batch) {
          if (ended) throw afterEnd();
          const line = asLine(value);
          if (start === null) {
            start = this.checkStart(line, src, before, 'incremental');
            added = new DigestWorkers(this.limits.digestWorkers, { checks: this.checks(src, start, 1) });
            continue;
          }
          if (line.kind === 'end') {
            if (serial !== -1 && versionCount === 0) throw new IdnsError('transfer_failed', `version ${serial} of the incremental transfer carries no change`);
            if (typeof line.checkpoint !== 'string')
              throw new IdnsError('transfer_failed', 'the incremental transfer ends without a checkpoint; transfer refused');
            checkpoint = line.checkpoint;
            this.endLine(line, start.jws, changes.length, checkpoint);
            ended = true;
            continue;
          }
          if (line.kind === 'version') {
            // Serial lines are not signed: only their order and range are checked here, and each record
            // put must carry its version's serial in its own signed payload (below), so a stream cannot
            // journal a change under another serial than the one the source signed it at.
            if (serial !== -1 && versionCount === 0) throw new IdnsError('transfer_failed', `version ${serial} of the incremental transfer carries no change`);
            const next = line.serial;
            if (typeof next !== 'number' || !Number.isInteger(next) || next < 0 || next > 0xffffffff)
              throw new IdnsError('transfer_failed', 'a version line without a valid serial');
            const offset = serialOffset(next);
            if (offset <= lastOffset || offset > endOffset(start)) {
              throw new IdnsError(
                'transfer_failed',
                `version ${next} is not after version ${serial === -1 ? since : serial} and at most serial ${start.record.serial}: the versions of an incremental transfer must rise strictly from ${since} to ${start.record.serial}`,
              );
            }
            serial = next;
            lastOffset = offset;
            versionCount = 0;
            continue;
          }
          if (serial === -1) throw new IdnsError('transfer_failed', 'a change before any version line');
          if (changes.length >= this.limits.maxIncrementalEntries) return false;
          versionCount += 1;
          if (line.kind === 'put' && line.type === 'zone') {
            // A version's zone record: a leaf of the log only (the copy keeps the newest, from the start line).
            const jws = zoneLine(line);
            if (signedSerial(jws) !== serial)
              throw new IdnsError('transfer_failed', `a zone record sent as a change of version ${serial} was not signed at it`);
            changes.push({ serial, action: 'put', type: 'zone', key: '', jws });
          } else if (line.kind === 'put') {
            const r = recordLine(line);
            // A history entry is its owner's request: it has no serial of its own (and is never replaced, below).
            const signedAt = r.type === 'op' ? serial : signedSerial(r.jws);
            if (signedAt !== serial)
              throw new IdnsError(
                'transfer_failed',
                `the ${r.type} record ${r.key} was signed at serial ${String(signedAt)} but is sent as a change of version ${serial}`,
              );
            added!.add(r.type, r.key, r.jws);
            changes.push({ serial, action: 'put', type: r.type, key: r.key, jws: r.jws });
          } else if (line.kind === 'del') {
            const { type, key } = keyOf(line);
            changes.push({ serial, action: 'del', type, key, jws: null });
          } else {
            throw new IdnsError('transfer_failed', `unexpected line kind ${String(line.kind)} in an incremental transfer`);
          }
        }
      }
      if (start === null || !ended) throw new IdnsError('transfer_failed', 'the transfer stream stopped before its end line');
      const puts = await added!.finish();
      const first: { record: ZoneRecord; jws: string } = start;
      this.store.write(() => {
        const row = this.zones.require(src.zone);
        if (row.version !== before.version) throw new IdnsError('transfer_failed', 'the zone changed during the transfer');
        const digest = ZoneDigest.fromState(row.digestState);
        digest.merge(puts.state());
        const localVersion = (s: number) => row.version + ((s - serialOf(row.version) + 2 ** 32) % 2 ** 32);
        const totals = this.applyChanges(
          row.content,
          digest,
          changes.filter((c): c is RecordChange => c.type !== 'zone'),
          localVersion,
        );
        const signed = this.appendToLog(src.zone, row, changes, first, checkpoint);
        applyToMap(this.store, row.content, checkpointMapRoot(row.checkpoint), changes, signed);
        const now = this.clock.now();
        this.store.journal.dropAfter(src.zone, row.version);
        let idx = 0;
        let last = -1;
        for (const c of changes) {
          const version = localVersion(c.serial);
          if (version !== last) {
            idx = 0;
            last = version;
          }
          this.store.journal.append(src.zone, { version, idx: idx++, action: c.action, type: c.type, key: c.key, jws: c.jws }, now);
        }
        // Checked inside the transaction: a mismatch rolls every change back and the old copy stays.
        if (digest.value() !== first.record.digest) {
          throw new IdnsError('transfer_failed', `the changes do not produce the digest of serial ${first.record.serial}; transfer refused`);
        }
        if (first.record.count !== undefined) {
          const held = contentTotals(row.record) ?? this.store.records.totals(row.content);
          checkTotals(first.record, { count: held.count + totals.count, size: held.size + totals.size });
        }
        this.store.zones.updateState(src.zone, localVersion(first.record.serial), digest.state(), first.jws, first.record.exp);
        this.store.zones.setCheckpoint(src.zone, checkpoint);
        this.store.zones.setRefreshed(src.zone, this.clock.now());
        this.store.markChanged(src.zone);
      });
      return first.record.serial;
    } catch (err) {
      // The journal's key is (zone, version, idx): a clash means stored state disagrees with the stream,
      // which the caller heals with a full transfer (that starts a new journal).
      if (String((err as { code?: unknown }).code).startsWith('SQLITE_CONSTRAINT'))
        throw new IdnsError('transfer_failed', 'the incremental transfer clashes with the journal held here; transfer refused', { cause: err });
      throw err;
    } finally {
      bounds.close();
      await (added as DigestWorkers | null)?.close();
      body.destroy();
    }
  }

  /**
   * Appends the leaves of the changes to the copy's log, in their order, as the source's editor did, and
   * gives each history entry its leaf; the tree must then be the one the source's checkpoint signs, and
   * end with the new zone record.
   */
  private appendToLog(
    zone: string,
    row: ZoneRow,
    changes: readonly Change[],
    start: { record: ZoneRecord; jws: string },
    checkpoint: string,
  ): Checkpoint & { note: string } {
    const signed = transferCheckpoint(zone, start, checkpoint);
    const log = ZoneLog.at(this.store.logs, row.content, checkpointSize(row.checkpoint));
    for (const c of changes) {
      const hash = changeLeafHash(c.action, c.type, c.key, c.jws);
      if (hash === null) continue;
      const leaf = log.append(hash);
      if (c.type === 'op') this.store.records.setLeaf(row.content, c.key, leaf);
    }
    const last = changes.at(-1);
    if (last !== undefined && (last.type !== 'zone' || last.jws !== start.jws)) {
      throw new IdnsError('transfer_failed', 'the incremental transfer does not end with the zone record it started with; transfer refused');
    }
    if (log.size !== signed.size || !log.root().equals(signed.root)) {
      throw new IdnsError('transfer_failed', `the changes do not make the tree of ${signed.size} leaves the checkpoint signs; transfer refused`);
    }
    return signed;
  }

  /**
   * Applies a change set to a copy's records and to its digest, which already holds every value the set
   * puts: the effect is that of applying the changes one by one in order, but each record is touched
   * once. Per (type, key) the first state is read and subtracted, the last is written, and every value
   * put but not left standing is subtracted again. Records are visited in key order, so neighbouring
   * changes share the pages they touch.
   */
  private applyChanges(
    content: string,
    digest: ZoneDigest,
    changes: readonly RecordChange[],
    localVersion: (serial: number) => number,
  ): { count: number; size: number } {
    const delta = { count: 0, size: 0 };
    const byKey = new Map<string, RecordChange[]>();
    for (const c of changes) {
      const id = `${c.type}\n${c.key}`;
      const ops = byKey.get(id);
      if (ops) ops.push(c);
      else byKey.set(id, [c]);
    }
    for (const id of [...byKey.keys()].sort()) {
      const ops = byKey.get(id)!;
      const { type, key } = ops[0]!;
      const old = this.store.records.get(content, type, key);
      if (type === 'op' && (old !== undefined || ops.length > 1 || ops[0]!.action !== 'put'))
        throw new IdnsError('transfer_failed', `the transfer changes history entry ${key}: a handle's history is only ever appended to`);
      let exists = old !== undefined;
      for (const c of ops) {
        if (c.action === 'del' && !exists) throw new IdnsError('transfer_failed', `the transfer deletes ${type} ${key}, which this copy does not hold`);
        exists = c.action === 'put';
      }
      if (old) {
        // What a change replaces or deletes was signed before it: a change of a record placed at or before
        // the version that wrote the copy's record is not this source's history.
        const heldAt = signedSerial(old.jws);
        if (heldAt === null || !serialLess(heldAt, ops[0]!.serial)) {
          throw new IdnsError(
            'transfer_failed',
            `the transfer changes ${type} ${key} at serial ${ops[0]!.serial}, which is not after the serial ${String(heldAt)} it was signed at`,
          );
        }
        digest.remove(type, key, old.jws);
        delta.count -= 1;
        delta.size -= elementSize(type, key, old.jws);
      }
      const final = ops[ops.length - 1]!;
      for (const c of ops) if (c.action === 'put' && c !== final) digest.remove(type, key, c.jws!);
      if (final.action === 'put') {
        delta.count += 1;
        delta.size += elementSize(type, key, final.jws!);
        this.store.records.putLoaded(content, type, key, localVersion(final.serial), final.jws!);
      } else if (old) {
        this.store.records.delete(content, type, key);
      }
    }
    return delta;
  }

  private async open(
    src: Source,
    since: number | null,
    format: 'ndjson' | 'compact' = 'ndjson',
  ): Promise<{ body: Dispatcher.ResponseData['body']; compact: boolean }> {
    const query = since === null ? (format === 'compact' ? '?format=compact' : '') : `?since=${since}`;
    const path = `/v1/zones/${pathZone(src.zone)}/transfer${query}`;
    const headers: Record<string, string> = { accept: 'application/x-ndjson' };
    // Read once per request: a source's credential may be looked up afresh each time (Replicator), and each header has its own nonce.
    const credential = src.credential;
    if (credential) headers.authorization = authorization(credential, 'GET', path, '', epochSeconds(this.clock));
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${base(src.server)}${path}`, {
        headers,
        dispatcher: this.dispatcher,
        headersTimeout: this.limits.timeoutMs,
        bodyTimeout: this.limits.timeoutMs,
      });
    } catch (cause) {
      throw new IdnsError('network_error', `${src.server}: ${(cause as Error).message}`, { cause });
    }
    if (res.statusCode !== 200) {
      const text = (await res.body.text()).slice(0, 4096);
      let code = String(res.statusCode);
      try {
        code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? code;
      } catch {
        // Not JSON: the status is all there is to report.
      }
      if (code === 'journal_too_old') throw new IdnsError('journal_too_old', `${src.server}: the journal does not reach back to serial ${since}`);
      // Its own code, apart from transfer_failed: a source that refuses the request (credentials, a zone it
      // no longer serves) sent no stream to refuse, so a full transfer would fare no better.
      throw new IdnsError('transfer_refused', `${src.server} refused the transfer: ${code} (status ${res.statusCode})`, {
        details: { status: res.statusCode, code },
      });
    }
    // A source that does not know the compact format answers NDJSON; the content type says which it sent.
    const type = String(res.headers['content-type'] ?? '')
      .split(';')[0]!
      .trim()
      .toLowerCase();
    return { body: res.body, compact: type === TRANSFER_CONTENT_TYPES.compact };
  }

  /** What to check of each record of a transfer that started with `start` (content-checks.ts). */
  private checks(src: Source, start: { record: ZoneRecord; jws: string }, signatureRate: number): ContentCheckSpec {
    return { zone: src.zone, zoneRecord: start.jws, record: start.record, nowSeconds: epochSeconds(this.clock), signatureRate: Math.min(1, signatureRate) };
  }

  private checkStart(line: Line, src: Source, before: ZoneRow, mode: 'full' | 'incremental', again = false): { record: ZoneRecord; jws: string } {
    if (line.kind !== 'start' || line.mode !== mode || line.zone !== src.zone) {
      throw new IdnsError('transfer_failed', `the stream does not start with the ${mode} transfer of ${src.zone}`);
    }
    const zone = verifyZoneRecord(line.record, src.zone, epochSeconds(this.clock), src.trusted);
    if (before.record !== '') {
      const ours = serialOf(before.version);
      // A serial going backwards is a replay of an older zone, or a broken primary: never take it. The same
      // serial again only when the operator asked for it (idns ctl retransfer: a copy to be made anew).
      if (serialLess(zone.record.serial, ours) || (mode === 'full' && zone.record.serial === ours && !again)) {
        throw new IdnsError('transfer_failed', `the source offers serial ${zone.record.serial}, not newer than ours (${ours})`);
      }
    }
    return { record: zone.record, jws: line.record as string };
  }

  private endLine(line: Line, startJws: string, count: number, checkpoint: string): void {
    if (line.record !== startJws) throw new IdnsError('transfer_failed', 'the stream ends with another zone record than it started with');
    if (line.checkpoint !== checkpoint) throw new IdnsError('transfer_failed', 'the stream ends with another checkpoint than it started with');
    if (line.count !== count) throw new IdnsError('transfer_failed', `the stream announced ${String(line.count)} entries and carried ${count}`);
  }
}

type Line = Record<string, unknown>;

/** One entry of an incremental transfer, with the serial of its version. */
interface Change {
  serial: number;
  action: 'put' | 'del';
  type: JournaledType;
  key: string;
  jws: string | null;
}

/** A change of the zone's records (not a version's zone record). */
type RecordChange = Change & { type: StoredType };

function asLine(value: unknown): Line {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new IdnsError('transfer_failed', 'a transfer line is not an object');
  return value as Line;
}

/** The `serial` of a record's payload, read without verifying the signature; null when there is none. */
function signedSerial(jws: string): number | null {
  try {
    const payload = JSON.parse(Buffer.from(jws.slice(jws.indexOf('.') + 1, jws.lastIndexOf('.')), 'base64url').toString('utf8')) as { serial?: unknown };
    return typeof payload?.serial === 'number' ? payload.serial : null;
  } catch {
    // Not a JWS with a JSON payload: it has no serial, which the caller refuses.
    return null;
  }
}

/** Refuses content whose record count or size differs from what its signed zone record states (when it states them). */
function checkTotals(record: ZoneRecord, held: { count: number; size: number }): void {
  if ((record.count !== undefined && record.count !== held.count) || (record.size !== undefined && record.size !== held.size)) {
    throw new IdnsError(
      'transfer_failed',
      `the zone record of serial ${record.serial} states ${String(record.count)} records of ${String(record.size)} bytes, the content holds ${held.count} of ${held.size}; transfer refused`,
    );
  }
}

function keyOf(line: Line): { type: StoredType; key: string } {
  if (!TYPES.has(line.type as StoredType) || typeof line.key !== 'string' || line.key.length > 400) {
    throw new IdnsError('transfer_failed', 'a transfer line has a bad type or key');
  }
  return { type: line.type as StoredType, key: line.key };
}

/** The zone record of an incremental transfer's `put` of type `zone` (key ""). */
function zoneLine(line: Line): string {
  if (line.key !== '' || typeof line.record !== 'string' || line.record.length > MAX_JWS_LENGTH)
    throw new IdnsError('transfer_failed', 'a zone line has a bad key or record');
  return line.record;
}

function recordLine(line: Line): LoadedRecord {
  const { type, key } = keyOf(line);
  if (typeof line.record !== 'string' || line.record.length > MAX_JWS_LENGTH) throw new IdnsError('transfer_failed', 'a transfer line has a bad record');
  // The version and expiry columns stay 0 on a copy: answers read `exp` from the signed payload, and a
  // promoted copy is re-signed from the oldest (all of it, soon after promotion).
  return { type, key, jws: line.record };
}

function base(url: string): string {
  return url.replace(/\/+$/, '');
}

/** A zone name as a URL path segment (the root is `_root`). */
export function pathZone(zone: string): string {
  return zone === '.' ? '_root' : encodeURIComponent(zone);
}

function afterEnd(): IdnsError {
  return new IdnsError('transfer_failed', 'the transfer stream goes on after its end line; transfer refused');
}
