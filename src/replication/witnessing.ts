import type { Clock } from '../clock.js';
import { IdnsError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ZoneReader } from '../authority/zone-reader.js';
import type { Store } from '../store/store.js';
import { cosigner } from '../transparency/checkpoint.js';
import { ed25519NoteVerifier, type NoteSigner, type NoteVerifier } from '../transparency/note.js';
import { addCheckpoint, parseAddCheckpoint, type AddCheckpointOutcome } from '../transparency/witness.js';
import type { WitnessKey } from '../transparency/witness-key.js';
import { logOrigin } from '../transparency/zone-log.js';

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
    private readonly onFork: () => void = () => {},
  ) {}

  /** Decides an add-checkpoint request; throws a typed error for every refusal but a size conflict. */
  addCheckpoint(body: string): WitnessAnswer {
    const request = parseAddCheckpoint(body);
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
      this.onFork();
    }
    if (outcome.heldSize !== undefined) return { heldSize: outcome.heldSize };
    const code = ({ 400: 'invalid_request', 403: 'checkpoint_unsigned', 404: 'unknown_log', 409: 'log_forked', 422: 'invalid_proof' } as const)[outcome.status];
    throw new IdnsError(code, outcome.message);
  }

  /** The note verifiers of a log witnessed here: the keys the zone record of a zone copied here lists. */
  private verifiers(origin: string): NoteVerifier[] | undefined {
    const zone = origin.endsWith('/idns-log') ? origin.slice(0, -'/idns-log'.length) : null;
    if (zone === null || logOrigin(zone) !== origin) return undefined;
    const row = this.zones.get(zone);
    if (row === undefined || row.role !== 'secondary') return undefined;
    const record = this.zones.zoneRecord(row);
    return record === null ? undefined : record.keys.map((k) => ed25519NoteVerifier(origin, k));
  }

  private cosigner(): NoteSigner {
    if (this.signer === null) {
      const { name, key } = this.key();
      this.signer = cosigner(name, key.privateKey, key.publicJwk, () => Math.floor(this.clock.now() / 1000));
    }
    return this.signer;
  }
}
