import type { Clock } from '../clock.js';
import { thumbprint, type PublicJwk } from '../records/keys.js';
import { historyZoneOf } from '../records/history-entries.js';
import { verifiedZoneOf } from '../records/verify-core.js';
import { emptyHistory, verifyHistory, type VerifiedHistory } from '../records/history-chain.js';
import { MAX_HISTORY_ENTRIES } from '../records/history-key.js';
import { epochSeconds } from '../clock.js';
import { IdnsError, isIdnsError } from '../errors.js';
import type { HandleFields } from '../records/types.js';
import type { Store } from '../store/store.js';
import type { ZoneEditor } from './editor.js';
import { decodePayload } from './editor.js';
import type { ChangeRequest } from '../records/change-request.js';
import { assureValidChange, linksOf } from './rules.js';
import { serialOf } from '../records/serial.js';
import { inviteHash, type ZoneService } from './zones.js';

/** History entries read at a time when looking for a replayed request. */
const REPLAY_PAGE = 256;

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

/** A change ready for the transaction: parsed, routed to its zone, its signature perhaps checked already. */
export interface QueuedChange {
  req: ChangeRequest;
  /**
   * Set when the request's signature was verified before queueing: 'register' (with the key it carries),
   * or the `op` of the handle state whose key it was verified with (valid only if that is still current).
   */
  verified?: string;
  zone: string;
  operator: boolean;
}

/** What became of one change of a batch. */
export type ChangeOutcome = { ok: true; value: ChangeResult } | { ok: false; error: unknown };

/** What a committed batch did: an outcome per change, in order, and each zone's new version. */
export interface BatchResult {
  outcomes: ChangeOutcome[];
  committed: { zone: string; version: number }[];
  /** Zones where a registration failed on its invite code (one entry per failure), for the rate limit. */
  inviteFailures: string[];
}

/**
 * Runs batches somewhere other than the calling thread (src/authority/change-writer.ts: a writer thread
 * with its own database connection). Rejects when the batch's transaction did not commit.
 */
export interface BatchRunner {
  /** Runs the batch at time `now`; resolves once it is committed and durable. */
  run(batch: QueuedChange[], now: number): Promise<BatchResult>;
  close(): Promise<void>;
}

/**
 * Applies a batch of changes in one write transaction on its store's connection: each accepted change is
 * its own zone version with its own journal entries, a refused change writes nothing and fails alone, and
 * one commit (one fsync) makes the whole batch durable. Runs on the main thread or on the writer thread.
 */
export class ChangeApplier {
  private inviteFailures: string[] = [];

  constructor(
    private readonly store: Store,
    private readonly zones: ZoneService,
    private readonly clock: Clock,
  ) {}

  /** Applies the batch and commits it; throws (nothing applied) when the transaction does not commit. */
  applyBatch(batch: readonly QueuedChange[]): BatchResult {
    const outcomes: ChangeOutcome[] = [];
    let committed: { zone: string; version: number }[] = [];
    this.inviteFailures = [];
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
    return { outcomes, committed, inviteFailures: this.inviteFailures };
  }

  private apply(item: QueuedChange, editor: ZoneEditor, now: number): ChangeResult {
    const { req } = item;
    const zone = editor.zone.name;
    // Checked again here: a delegation may have been made since the request was queued.
    if (this.zones.cutFor(editor.zone, req.host)) throw new IdnsError('not_authoritative', `${req.host} is delegated away from zone ${zone}`);
    const stored = this.store.records.get(editor.zone.content, 'handle', req.handle);
    const current = stored ? (decodePayload(stored.jws) as unknown as HandleFields) : null;
    this.assureNotReplayed(req, current, editor);
    // An update naming an earlier entry than the current state's may be a recovery (docs/protocol.md §6.6).
    const recovered = req.action === 'update' && req.prev !== null && req.prev !== current?.op ? this.recovery(req, editor) : null;
    // A signature checked before queueing stands if it was checked against the key set in force now.
    const checked = item.verified !== undefined && (item.verified === 'register' ? req.action === 'register' : current?.op === item.verified);
    assureValidChange(req, current, now, editor.settings, checked, recovered !== null);
    if (req.action === 'register') this.assureNotReserved(req, editor, now);
    const seq = editor.nextHistorySeq(req.handle, req.jws.length);
    // Last of the checks: a valid invite is spent by it.
    if (req.action === 'register' && !item.operator) this.assurePolicy(req, editor);

    const version = editor.beginChange();
    let record: string | null = null;
    if (req.action === 'delete') {
      editor.remove('handle', req.handle);
      editor.removeName(req.handle);
    } else {
      const { handle: _handle, ...links } = linksOf(req);
      record = editor.put('handle', req.handle, {
        handle: req.handle,
        endpoint: req.endpoint!,
        keys: req.keys!,
        ttl: editor.settings.handleTtl,
        op: req.cid,
        // A register begins a registration; an update continues the current one, a recovery the one it goes back to.
        genesis: req.action === 'register' ? req.cid : (recovered?.genesis ?? current!.genesis),
        seq,
        ...links,
        ...(req.recovery !== null ? { recovery: req.recovery } : {}),
      });
      // A recovery may bring back a handle that a stolen key deleted.
      if (req.action === 'register' || current === null) editor.addName(req.handle);
    }
    editor.appendHistory(req.handle, req.jws, seq);
    return { handle: req.handle, zone, serial: serialOf(version), action: req.action, op: req.cid, record };
  }

  /**
   * The handle's history with `req` after it, verified as a resolver verifies it, when `req` is a
   * recovery: an update naming as `prev` an earlier state that a recovery may still go back to, signed by
   * a recovery key of that state. Null when it is not (the usual checks then refuse it: stale_prev);
   * recovery_refused when it is, and breaks a rule of recovery (too late, going back beyond a later one).
   */
  private recovery(req: ChangeRequest, editor: ZoneEditor): VerifiedHistory | null {
    const zone = this.zones.zoneRecord(editor.zone);
    if (zone === null) return null;
    // The zone as its signed record states it (keys, recovery window): the authority judges as resolvers do.
    const historyZone = historyZoneOf(verifiedZoneOf(zone, editor.zone.record));
    const entries = this.store.records.history(editor.zone.content, req.handle, 0, MAX_HISTORY_ENTRIES);
    // Only a request signed by a key that some state named as a recovery key can be one (most stale
    // updates are not): looked for in the payloads before any signature is checked.
    const named = (jws: string) => ((decodePayload(jws).recovery ?? []) as PublicJwk[]).some((k) => thumbprint(k) === req.kid);
    if (!entries.some((e) => named(e[1]))) return null;
    const point = verifyHistory(emptyHistory(req.handle), entries, historyZone);
    const target = point.recoverable.find((p) => p.op === req.prev);
    if (target === undefined || !target.state.recovery.some((k) => thumbprint(k) === req.kid)) return null;
    try {
      return verifyHistory(point, [[point.seq + 1, req.jws]], historyZone);
    } catch (err) {
      if (!isIdnsError(err, 'verification_failed')) throw err;
      throw new IdnsError('recovery_refused', err.message.replace(/^the history of .* does not verify at entry \d+: /, 'the recovery is refused: '));
    }
  }

  /**
   * Refuses a request already accepted (a client's retry, or someone replaying it), as the history shows:
   * the request that made the current record, or, when the request does not follow the current record
   * (a register of a handle with a history, an update naming another `prev`), any entry of the handle's
   * history. The 300 s `iat` window bounds how old a replay can be anyway.
   */
  private assureNotReplayed(req: ChangeRequest, current: HandleFields | null, editor: ZoneEditor): void {
    if (current?.op === req.cid) throw new IdnsError('replayed', 'this exact request was already accepted');
    if (current !== null && req.prev === current.op) return;
    for (let after = 0; ;) {
      const page = this.store.records.history(editor.zone.content, req.handle, after, REPLAY_PAGE);
      if (page.some((e) => e[1] === req.jws)) throw new IdnsError('replayed', 'this exact request was already accepted');
      if (page.length < REPLAY_PAGE) return;
      after = page[page.length - 1]![0];
    }
  }

  /**
   * A deleted handle stays its last owner's for the zone's tombstone cool-down (counted from the delete
   * request's `iat`): until then only a key the handle had before the delete may register it again, so
   * nobody else can take over a name its owner deleted by mistake or to rotate away from a lost device.
   */
  private assureNotReserved(req: ChangeRequest, editor: ZoneEditor, now: number): void {
    const [last, before] = this.store.records.latestHistory(editor.zone.content, req.handle, 2);
    if (last === undefined || before === undefined) return;
    const deletion = decodePayload(last[1]);
    if ((deletion.action !== 'delete' && deletion.action !== 'takedown') || typeof deletion.iat !== 'number') return;
    const until = deletion.iat + editor.settings.tombstoneCooldown;
    if (now >= until) return;
    const at = (s: number) => new Date(s * 1000).toISOString();
    // A takedown is the operator's: its former keys get no head start.
    if (deletion.action === 'takedown') {
      throw new IdnsError(
        'handle_reserved',
        `${req.handle} was taken down by the zone's operator at ${at(deletion.iat)}; nobody may register it before ${at(until)}`,
        {
          details: { until: at(until) },
        },
      );
    }
    const held = ((decodePayload(before[1]).keys ?? []) as PublicJwk[]).map(thumbprint);
    if (held.includes(thumbprint(req.headerKey!))) return;
    throw new IdnsError(
      'handle_reserved',
      `${req.handle} was deleted at ${at(deletion.iat)}; until ${at(until)} only a key it had then may register it again`,
      { details: { until: at(until) } },
    );
  }

  private assurePolicy(req: ChangeRequest, editor: ZoneEditor): void {
    const policy = editor.zone.policy;
    if (policy === 'closed') throw new IdnsError('registration_closed', `zone ${editor.zone.name} is closed to registration; ask its operator`);
    if (policy === 'invite') {
      if (req.invite === null) throw new IdnsError('invite_required', `zone ${editor.zone.name} needs an invite code to register`);
      // Looked up by hash: the comparison never touches the secret byte by byte.
      if (!this.store.invites.consume(inviteHash(req.invite), editor.zone.name, req.handle, this.clock.now())) {
        this.inviteFailures.push(editor.zone.name);
        throw new IdnsError('invite_invalid', 'the invite code is unknown, expired or already used');
      }
    }
  }
}
