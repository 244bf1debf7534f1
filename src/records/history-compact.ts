import { requestId } from './change-request.js';
import type { NumberedEntry } from './history-chain.js';
import { decodeCompact, OPERATION_TYP } from './jws.js';
import { thumbprint, type PublicJwk } from './keys.js';

/**
 * The compact form of a handle's whole history (docs/protocol.md §6.5), as an authority gives it: the
 * history less the updates a resolver does not need to see, in order with their numbers. An update may be
 * left out when it keeps the key set (the keys and recovery keys of the state before it) and names the
 * entry before it as `prev` (it is no recovery), unless it is the last entry, or it lies within a
 * recovery's reach (from the entry a recovery went back to, up to that recovery). The entry after a run
 * left out is then signed by a key of the state before the run, with proofs for any key it adds
 * relative to it, exactly as it is relative to the entry it follows: it verifies after the gap.
 *
 * `entries` are the authority's own, checked when they were accepted (or copied): this reads them
 * without verifying signatures again.
 */
export function compactHistory(entries: readonly NumberedEntry[]): NumberedEntry[] {
  return compactFrom(entries, 0)!;
}

/**
 * The entries from `entries[first]` on that the compact form of the whole history keeps, where `entries`
 * is a run of the history ending with its newest entry and `first` ≥ 1 (or 0 when the run starts at entry
 * 1): an entry's fate depends only on the entry before it and on the recoveries after it. Null when a
 * recovery after `entries[first]` went back to an entry before the run (its reach is not in view; that
 * of `entries[first]` itself was in view when it was the newest). This is how a stored compact form is
 * extended when entries are added (src/store/compact-histories.ts).
 */
export function compactFrom(entries: readonly NumberedEntry[], first: number): NumberedEntry[] | null {
  const facts = entries.map((e) => factsOf(e[1]));
  const keep = facts.map((f, i) => i === 0 || i === facts.length - 1 || !keepsKeysOf(f, facts[i - 1]!));
  // A recovery's reach: the entry it went back to and every one after it, so the verifier sees the state
  // the recovery restores and the changes it undoes (it allows no recovery across a gap).
  const at = new Map(facts.map((f, i) => [f.id, i]));
  for (let i = 1; i < facts.length; i++) {
    const f = facts[i]!;
    if (!f.update || follows(f, facts[i - 1]!)) continue;
    const target = at.get(f.prev!);
    if (target === undefined && i > first && entries[0]![0] !== 1) return null;
    for (let j = target ?? 0; j < i; j++) keep[j] = true;
  }
  const kept: NumberedEntry[] = [];
  for (let i = first; i < entries.length; i++) if (keep[i]) kept.push(entries[i]!);
  return kept;
}

/** What compaction reads of an entry: its id, what it names as `prev`, and the keys (and recovery keys) of the state it leaves. */
interface EntryFacts {
  id: string;
  /** An owner's update (a recovery is one too). */
  update: boolean;
  prev: string | null;
  /** The id an upgraded import line had (an operator entry's `legacyOp`), which the next entry may name as `prev`. */
  legacyOp: string | null;
  /** The thumbprints of the keys and recovery keys of the state it leaves, sorted and joined; null when it leaves none (a delete, a takedown). */
  held: string | null;
}

/**
 * An entry's facts, read straight from its payload: the entries are the authority's own, each parsed and
 * checked in full when it was accepted or copied, so the schema is not run again (a long history's
 * compact form is made on a cache miss of the read path, ~10 µs an entry this way against ~20 with the
 * full parse).
 */
function factsOf(jws: string): EntryFacts {
  const id = requestId(jws);
  const { header, payload } = decodeCompact(jws);
  const p = payload as { action?: unknown; prev?: unknown; legacyOp?: unknown; keys?: unknown; recovery?: unknown };
  const owner = header.typ === OPERATION_TYP;
  const leavesNone = owner ? p.action === 'delete' : p.action === 'takedown';
  const keys = [...(Array.isArray(p.keys) ? p.keys : []), ...(owner && Array.isArray(p.recovery) ? p.recovery : [])] as PublicJwk[];
  return {
    id,
    update: owner && p.action === 'update',
    prev: typeof p.prev === 'string' ? p.prev : null,
    legacyOp: !owner && typeof p.legacyOp === 'string' ? p.legacyOp : null,
    held: leavesNone || !Array.isArray(p.keys) ? null : heldText(keys.map(thumbprint)),
  };
}

/** True for an update that names `before` as its `prev` and keeps the key set `before` leaves. */
function keepsKeysOf(f: EntryFacts, before: EntryFacts): boolean {
  return f.update && follows(f, before) && before.held !== null && f.held === before.held;
}

function follows(f: EntryFacts, before: EntryFacts): boolean {
  return f.prev === before.id || (before.legacyOp !== null && f.prev === before.legacyOp);
}

function heldText(ids: readonly string[]): string {
  return [...ids].sort().join(' ');
}
