import type { Clock } from '../clock.js';
import { epochSeconds } from '../clock.js';
import { IdnsError, isIdnsError } from '../errors.js';
import type { HandleFields } from '../records/types.js';
import type { Store } from '../store/store.js';
import type { ZoneEditor } from './editor.js';
import { decodePayload } from './editor.js';
import { normaliseHandle } from '../names/handle.js';
import { parseChangeRequest, type ChangeRequest } from './requests.js';
import { verify as verifyAsync } from 'node:crypto';
import { publicKeyObject, thumbprint, type PublicJwk } from '../records/keys.js';
import { assureValidChange } from './rules.js';
import { serialOf } from './serial.js';
import { inviteHash, type ZoneService } from './zones.js';

/** What an accepted change returns. */
export interface ChangeResult {
  handle: string;
  zone: string;
  serial: number;
  action: ChangeRequest['action'];
  /** The accepted request's id: the `prev` of the next change. */
  op: string;
  /** The new signed handle record (null after delete). */
  record: string | null;
}

/** How a change was submitted. */
export interface SubmitOptions {
  /** The operator, through the CLI on the data directory: registration policy does not apply. */
  operator?: boolean;
  /** The action the caller's endpoint takes (PUT is update, DELETE is delete). */
  expectAction?: ChangeRequest['action'];
  /** The handle the caller's URL names; the request must be for it. */
  expectHandle?: string;
}

function parseExpected(jws: unknown, options: SubmitOptions): ChangeRequest {
  const req = parseChangeRequest(jws);
  if (options.expectAction !== undefined && req.action !== options.expectAction) {
    throw new IdnsError('invalid_request', `this endpoint takes a ${options.expectAction} request, not ${req.action}`);
  }
  if (options.expectHandle !== undefined && normaliseHandle(options.expectHandle) !== req.handle) {
    throw new IdnsError('handle_mismatch', `the request is for ${req.handle}, not ${options.expectHandle}`);
  }
  return req;
}

/** Limits applied to changes (rate limits), kept out of the protocol rules. */
export interface ChangeGuard {
  /** Called for each well-formed request before it is queued; throws to refuse it. */
  before(req: ChangeRequest, zone: string): void;
  /** Called when a registration in `zone` failed on its invite code. */
  inviteFailed(zone: string): void;
}

/** Hook for tests and metrics: runs after every committed batch. */
export type BatchListener = (results: { zone: string; version: number }[]) => void;

interface Pending {
  req: ChangeRequest;
  /**
   * Set when the request's signature was verified before queueing: 'register' (with the key it carries),
   * or the `op` of the handle state whose key it was verified with (valid only if that is still current).
   */
  verified?: string;
  zone: string;
  operator: boolean;
  resolve: (r: ChangeResult) => void;
  reject: (e: unknown) => void;
}

/**
 * Applies handle changes with group commit: requests that arrive while a transaction runs wait and go
 * into the next one together, so one fsync acknowledges many writes. Each accepted change is still its
 * own zone version with its own journal entries; a refused change writes nothing and fails alone.
 */
export class ChangeProcessor {
  private queue: Pending[] = [];
  private scheduled = false;
  private readonly listeners: BatchListener[] = [];

  constructor(
    private readonly store: Store,
    private readonly zones: ZoneService,
    private readonly clock: Clock,
    private readonly maxBatch = 512,
    private readonly guard?: ChangeGuard,
  ) {}

  /**
   * Validates a change request's form, checks its signature on the thread pool (so that the main thread
   * stays free for the transaction), and queues it; resolves once it is durable.
   */
  async submit(jws: unknown, options: SubmitOptions = {}): Promise<ChangeResult> {
    const req = parseExpected(jws, options);
    const zone = this.zoneFor(req.host);
    if (!options.operator) this.guard?.before(req, zone);
    const verified = await this.verifyAhead(req, zone);
    return new Promise<ChangeResult>((resolve, reject) => {
      this.queue.push({ req, zone, operator: options.operator ?? false, resolve, reject, ...(verified !== undefined ? { verified } : {}) });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Verifies the signature with the key the request names, as the handle stands now; a bad signature is
   * refused here. Returns what it was verified against, or undefined when the state decides (no such
   * handle, unknown kid): the transaction then checks everything itself.
   */
  private async verifyAhead(req: ChangeRequest, zone: string): Promise<string | undefined> {
    let key: PublicJwk | undefined;
    let against: string;
    if (req.action === 'register') {
      key = req.headerKey!;
      against = 'register';
    } else {
      const row = this.zones.cachedZone(zone);
      const stored = row ? this.store.records.get(row.content, 'handle', req.handle) : undefined;
      if (!stored) return undefined;
      const current = decodePayload(stored.jws) as unknown as HandleFields;
      key = current.keys.find((k) => thumbprint(k) === req.kid);
      if (!key) return undefined;
      against = current.op;
    }
    const ok = await new Promise<boolean>((resolve, reject) =>
      verifyAsync(null, Buffer.from(req.decoded.signingInput), publicKeyObject(key!), req.decoded.signature, (err, result) => (err ? reject(err) : resolve(result))),
    ).catch((cause: unknown) => {
      throw new IdnsError('invalid_signature', 'the signature could not be checked', { cause });
    });
    if (!ok) throw new IdnsError('invalid_signature', 'the JWS signature does not verify');
    return against;
  }

  /** Applies one change at once, synchronously (the CLI's operator path). */
  applyNow(jws: unknown, options: SubmitOptions = {}): ChangeResult {
    const req = parseExpected(jws, options);
    const zone = this.zoneFor(req.host);
    let outcome: { ok: true; value: ChangeResult } | { ok: false; error: unknown } | undefined;
    this.runBatch([
      {
        req,
        zone,
        operator: options.operator ?? false,
        resolve: (value) => (outcome = { ok: true, value }),
        reject: (error) => (outcome = { ok: false, error }),
      },
    ]);
    if (!outcome) throw new IdnsError('internal', 'the change produced no outcome');
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  /** Registers a listener called after each committed batch. */
  onBatch(listener: BatchListener): void {
    this.listeners.push(listener);
  }

  /** Waits until every queued change has been applied or refused. */
  async drain(): Promise<void> {
    while (this.queue.length > 0 || this.scheduled) await new Promise((r) => setImmediate(r));
  }

  /** The zone a host's changes go to: the closest zone held here, which must be a primary. */
  private zoneFor(host: string): string {
    const row = this.zones.closestHosted(host);
    if (!row) throw new IdnsError('not_authoritative', `this server holds no zone for ${host}`);
    if (this.zones.cutFor(row, host)) throw new IdnsError('not_authoritative', `${host} is delegated away from zone ${row.name}; register with the child zone's servers`);
    if (row.role !== 'primary') {
      const primary = this.zones.zoneRecord(row)?.primary;
      throw new IdnsError('not_primary', `zone ${row.name} is a secondary here; send changes to its primary${primary ? ` ${primary}` : ''}`, {
        details: { zone: row.name, ...(primary ? { primary } : {}) },
      });
    }
    return row.name;
  }

  private flush(): void {
    this.scheduled = false;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.runBatch(batch);
    }
  }

  private runBatch(batch: Pending[]): void {
    const outcomes: ({ ok: true; value: ChangeResult } | { ok: false; error: unknown })[] = [];
    let committed: { zone: string; version: number }[] = [];
    try {
      this.store.write(() => {
        const editors = new Map<string, ZoneEditor>();
        const now = epochSeconds(this.clock);
        for (const item of batch) {
          try {
            let editor = editors.get(item.zone);
            if (!editor) {
              editor = this.zones.editor(item.zone);
              editors.set(item.zone, editor);
            }
            outcomes.push({ ok: true, value: this.apply(item, editor, now) });
          } catch (error) {
            // A refused change has written nothing (checks precede writes), so the rest of the batch goes on.
            if (!isIdnsError(error)) throw error;
            outcomes.push({ ok: false, error });
          }
        }
        committed = [];
        for (const editor of editors.values()) {
          if (editor.dirty) committed.push({ zone: editor.zone.name, version: editor.commit().version });
        }
      });
    } catch (error) {
      // The transaction rolled back: nothing in this batch was applied, so nobody may hear "accepted".
      for (const item of batch) item.reject(error);
      return;
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
    if (committed.length > 0) for (const listener of this.listeners) listener(committed);
  }

  private apply(item: Pending, editor: ZoneEditor, now: number): ChangeResult {
    const { req } = item;
    const zone = editor.zone.name;
    if (this.store.operations.exists(req.cid)) throw new IdnsError('replayed', 'this exact request was already accepted');
    // Checked again here: a delegation may have been made since the request was queued.
    if (this.zones.cutFor(editor.zone, req.host)) throw new IdnsError('not_authoritative', `${req.host} is delegated away from zone ${zone}`);
    const stored = this.store.records.get(editor.zone.content, 'handle', req.handle);
    const current = stored ? (decodePayload(stored.jws) as unknown as HandleFields) : null;
    // A signature checked before queueing stands if it was checked against the key set in force now.
    const checked = item.verified !== undefined && (item.verified === 'register' ? req.action === 'register' : current?.op === item.verified);
    assureValidChange(req, current, now, editor.settings, checked);
    if (req.action === 'register' && !item.operator) this.assurePolicy(req, editor);

    const version = editor.beginChange();
    let record: string | null = null;
    if (req.action === 'delete') {
      editor.remove('handle', req.handle);
      editor.removeName(req.handle);
    } else {
      record = editor.put('handle', req.handle, {
        handle: req.handle,
        endpoint: req.endpoint!,
        keys: req.keys!,
        ttl: editor.settings.handleTtl,
        op: req.cid,
      });
      if (req.action === 'register') editor.addName(req.handle);
    }
    this.store.operations.insert({
      cid: req.cid,
      zone,
      handle: req.handle,
      action: req.action,
      version,
      jws: req.jws,
      receivedAt: this.clock.now(),
    });
    return { handle: req.handle, zone, serial: serialOf(version), action: req.action, op: req.cid, record };
  }

  private assurePolicy(req: ChangeRequest, editor: ZoneEditor): void {
    const policy = editor.zone.policy;
    if (policy === 'closed') throw new IdnsError('registration_closed', `zone ${editor.zone.name} is closed to registration; ask its operator`);
    if (policy === 'invite') {
      if (req.invite === null) throw new IdnsError('invite_required', `zone ${editor.zone.name} needs an invite code to register`);
      // Looked up by hash: the comparison never touches the secret byte by byte.
      if (!this.store.invites.consume(inviteHash(req.invite), editor.zone.name, req.handle, this.clock.now())) {
        this.guard?.inviteFailed(editor.zone.name);
        throw new IdnsError('invite_invalid', 'the invite code is unknown, expired or already used');
      }
    }
  }
}
