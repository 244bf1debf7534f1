import type { Dispatcher } from 'undici';
import type { Clock } from '../clock.js';
import { thumbprint } from '../records/keys.js';
import { readFollowedZone } from './witness-follows.js';
import type { FollowedZone } from '../store/witness.js';
import { IdnsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ZoneReader } from '../authority/zone-reader.js';
import type { Store } from '../store/store.js';
import { cosigner } from '../transparency/checkpoint.js';
import { ed25519NoteVerifier, type NoteSigner, type NoteVerifier } from '../transparency/note.js';
import { addCheckpoint, parseAddCheckpoint, type AddCheckpoint, type AddCheckpointOutcome } from '../transparency/witness.js';
import type { WitnessKey } from '../transparency/witness-key.js';
import { zoneOfLogOrigin } from '../transparency/zone-log.js';

/** Least time between two reads of a followed zone's record prompted by checkpoints signed by keys unknown here, ms. */
const FOLLOW_REFRESH_MS = 60_000;

/** What an add-checkpoint request got: the cosignature lines, or the size this witness holds (C2SP: 409 with text/x.tlog.size). */
export type WitnessAnswer = { cosignatures: string } | { heldSize: number };

/**
 * This server as a witness (docs/protocol.md §14) of the zones it copies: a zone's primary pushes each
 * new checkpoint of the zone's log (C2SP tlog-witness `add-checkpoint`), and the witness cosigns it only
 * when the zone's key signed it and it extends the checkpoint cosigned before. A checkpoint that does not
 * is kept with the one before as evidence of a fork, and nothing more of that zone is cosigned.
 */
export class Witness {
  private signer: NoteSigner | null = null;

  constructor(
    private readonly store: Store,
    private readonly zones: ZoneReader,
    /** The witness key, read (or made) at the first request: a server no primary pushes to never makes one. */
    private readonly key: () => WitnessKey,
    private readonly clock: Clock,
    private readonly log: Logger,
    /** Reaches the servers of zones followed without a copy. */
    private readonly dispatcher: Dispatcher | undefined = undefined,
  ) {}

  /**
   * Decides an add-checkpoint request; throws a typed error for every refusal but a size conflict. For a
   * zone followed without a copy, a checkpoint signed by a key it does not know yet (a key rollover) makes
   * it read the zone record again first, at most once a minute.
   */
  async addCheckpoint(body: string): Promise<WitnessAnswer> {
    const request = parseAddCheckpoint(body);
    const zone = zoneOfLogOrigin(request.note.slice(0, Math.max(0, request.note.indexOf('\n'))));
    const followed = zone === null ? undefined : this.store.witness.followed(zone);
    // A followed zone's record is read again once its TTL has passed, so that the witness learns of a key
    // rollover's new key while the old one still signs (the rollover publishes it for at least that TTL).
    if (followed !== undefined && this.clock.now() - followed.checkedAt >= followed.ttl * 1000) await this.refreshFollowed(followed);
    try {
      return this.decide(request);
    } catch (err) {
      const again = followed === undefined ? undefined : this.store.witness.followed(followed.zone);
      if (!(err instanceof IdnsError) || err.code !== 'checkpoint_unsigned' || again === undefined || !(await this.refreshFollowed(again))) throw err;
      return this.decide(request);
    }
  }

  /**
   * Reads a followed zone's record again (at most once a minute, however many checkpoints ask), trusting
   * the keys of the one read before; true when it did.
   */
  private async refreshFollowed(followed: FollowedZone): Promise<boolean> {
    if (this.clock.now() - followed.checkedAt < FOLLOW_REFRESH_MS) return false;
    // Marked as read first: concurrent requests do not each start a round.
    this.store.write(() => this.store.witness.follow({ ...followed, checkedAt: this.clock.now() }));
    try {
      const fresh = await readFollowedZone(
        followed.zone,
        followed.servers,
        followed.keys.map((k) => thumbprint(k)),
        this.clock,
        this.dispatcher,
        followed.serial,
      );
      this.store.write(() => this.store.witness.follow(fresh));
      return true;
    } catch (err) {
      if (!(err instanceof IdnsError)) throw err;
      this.log.warn("could not read a followed zone's record again", { zone: followed.zone, err });
      return false;
    }
  }

  private decide(request: AddCheckpoint): WitnessAnswer {
    const outcome = this.store.write((): AddCheckpointOutcome => {
      // Checked and stored in one transaction: two requests never both extend the same held checkpoint.
      const decided = addCheckpoint(
        request,
        (origin) => this.verifiers(origin),
        (origin) => this.store.witness.held(origin),
        (origin) => this.store.witness.forked(origin),
        this.cosigner(),
      );
      if (decided.status === 200) this.store.witness.setHeld(decided.held);
      if (decided.status !== 200 && decided.evidence) this.store.witness.addFork(decided.evidence, this.clock.now());
      return decided;
    });
    if (outcome.status === 200) return { cosignatures: outcome.cosignatures };
    if (outcome.evidence) {
      this.log.warn('a zone showed this witness two checkpoints that do not extend one another: evidence kept, nothing more of it cosigned', {
        origin: outcome.evidence.origin,
        why: outcome.evidence.why,
      });
    }
    if (outcome.heldSize !== undefined) return { heldSize: outcome.heldSize };
    const code = ({ 400: 'invalid_request', 403: 'checkpoint_unsigned', 404: 'unknown_log', 409: 'log_forked', 422: 'invalid_proof' } as const)[outcome.status];
    throw new IdnsError(code, outcome.message);
  }

  /**
   * The note verifiers of a log witnessed here: the keys the zone record of a zone copied here lists, or of
   * a zone followed without a copy, the keys its newest zone record read lists.
   */
  private verifiers(origin: string): NoteVerifier[] | undefined {
    const zone = zoneOfLogOrigin(origin);
    if (zone === null) return undefined;
    const row = this.zones.get(zone);
    const keys =
      row !== undefined && row.role === 'secondary'
        ? this.zones.zoneRecord(row)?.keys
        : row === undefined
          ? this.store.witness.followed(zone)?.keys
          : undefined;
    return keys?.map((k) => ed25519NoteVerifier(origin, k));
  }

  private cosigner(): NoteSigner {
    if (this.signer === null) {
      const { name, key } = this.key();
      this.signer = cosigner(name, key.privateKey, key.publicJwk, () => Math.floor(this.clock.now() / 1000));
    }
    return this.signer;
  }
}
