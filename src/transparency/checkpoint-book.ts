import { IdnsError } from '../errors.js';
import { verifyConsistency } from './merkle.js';

/** A zone's checkpoint as a resolver keeps it: the tree's size and root, and the signed note that stated them. */
export interface SeenCheckpoint {
  size: number;
  root: Buffer;
  note: string;
}

/** Two checkpoints of one zone that cannot both be true: evidence that the zone showed different histories. */
export interface CheckpointFork {
  zone: string;
  seen: string;
  offered: string;
  why: string;
}

/**
 * What a resolver remembers of each zone's log (issue 18, docs/security.md): the largest checkpoint it has
 * accepted. It never accepts an older one (a rollback: yesterday's answers replayed), keeps two that cannot
 * both be true (one size, two roots; or a proof that fails) as evidence of a fork, and refuses the second.
 * Bounded: the least recently seen zones are forgotten first, and at most MAX_FORKS forks are kept.
 */
export class CheckpointBook {
  private readonly zones = new Map<string, SeenCheckpoint>();
  private readonly kept: CheckpointFork[] = [];

  constructor(private readonly maxZones: number) {}

  /** The largest checkpoint accepted for `zone`, or undefined. */
  latest(zone: string): SeenCheckpoint | undefined {
    return this.zones.get(zone);
  }

  /**
   * Accepts a checkpoint of `zone` (its signature already verified) unless it is older than the one held
   * or cannot extend it. With `consistency`, a proof from the held size to this one, a larger checkpoint
   * must verify against the held one. Throws verification_failed saying why.
   */
  accept(zone: string, offered: SeenCheckpoint, consistency?: readonly Buffer[]): void {
    const held = this.zones.get(zone);
    if (held !== undefined) {
      if (offered.size < held.size) {
        throw new IdnsError(
          'verification_failed',
          `zone ${zone}'s checkpoint of size ${offered.size} is older than the one of size ${held.size} seen before (a rollback)`,
        );
      }
      if (offered.size === held.size && !offered.root.equals(held.root)) {
        this.fork(zone, held, offered, `two checkpoints of size ${held.size} with different roots`);
      }
      if (offered.size > held.size && consistency !== undefined) {
        try {
          verifyConsistency(held.size, offered.size, consistency, held.root, offered.root);
        } catch (err) {
          if (!(err instanceof IdnsError)) throw err;
          this.fork(zone, held, offered, err.message);
        }
      }
      this.zones.delete(zone);
    }
    // Re-inserted: the map's order is the order zones were last seen in.
    this.zones.set(zone, offered);
    while (this.zones.size > this.maxZones) this.zones.delete(this.zones.keys().next().value!);
  }

  /** The forks met, oldest first. */
  forks(): readonly CheckpointFork[] {
    return this.kept;
  }

  private fork(zone: string, held: SeenCheckpoint, offered: SeenCheckpoint, why: string): never {
    if (this.kept.length >= MAX_FORKS) this.kept.shift();
    this.kept.push({ zone, seen: held.note, offered: offered.note, why });
    throw new IdnsError('verification_failed', `zone ${zone} shows a history that does not extend the one seen before (kept as evidence of a fork): ${why}`);
  }
}

/** Forks kept as evidence; each is two notes of at most 64 KiB. */
export const MAX_FORKS = 100;
