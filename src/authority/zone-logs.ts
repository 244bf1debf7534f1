import { IdnsError } from '../errors.js';
import type { Store } from '../store/store.js';
import type { ZoneRow } from '../store/zones.js';
import { consistencyProof, inclusionProof } from '../transparency/merkle.js';
import { checkpointSize } from '../transparency/zone-log.js';
import { parseNote } from '../transparency/note.js';
import type { PublicJwk } from '../records/keys.js';
import { serialOf } from '../records/serial.js';
import { historyKey } from '../records/history-key.js';
import type { ZoneReader } from './zone-reader.js';
import type { AuthoritativeAnswer } from './authority.js';
import { decodePayload } from './editor.js';

/** An inclusion proof as served (docs/protocol.md §13.4): the leaf's hash and the path to the root of the tree of `size` leaves. */
export interface InclusionAnswer {
  leaf: number;
  size: number;
  hash: string;
  proof: string[];
}

/**
 * What binds an authoritative answer to the zone's log (docs/protocol.md §13.5, `?log=1`): the
 * checkpoint of the version answered from (with its cosignatures and the keys of their witnesses), the
 * inclusion proof of the answer's zone record as the tree's last leaf, and for a handle the inclusion
 * proof of the history entry its record names.
 */
export interface AnswerLog {
  checkpoint: string;
  witnesses: Record<string, PublicJwk>;
  zoneRecord: string[];
  entry?: { leaf: number; proof: string[] };
}

/** A consistency proof as served: the tree of `from` leaves is a prefix of the tree of `to`. */
export interface ConsistencyAnswer {
  from: number;
  to: number;
  proof: string[];
}

/**
 * What every server of a zone answers about its log (docs/protocol.md §13): the checkpoint of the version
 * it holds, and proofs against that tree or any earlier size of it, computed from the stored subtrees.
 */
export class ZoneLogs {
  /** Per zone, the inclusion proof of its zone record in the tree of the version held (by content and size). */
  private readonly zoneProofs = new Map<string, { version: string; proof: string[] }>();

  constructor(
    private readonly store: Store,
    private readonly zones: ZoneReader,
  ) {}

  /** The checkpoint of the zone's log at the version held here (a C2SP signed note). */
  checkpoint(name: string): string {
    return this.logged(name).checkpoint;
  }

  /** The inclusion proof of leaf `leaf` in the zone's tree of `size` leaves (at most the size of its checkpoint). */
  inclusion(name: string, leaf: number, size: number): InclusionAnswer {
    const row = this.logged(name);
    this.assureSize(row, size);
    if (leaf >= size) throw new IdnsError('invalid_request', `leaf ${leaf} is not in a tree of ${size} leaves`);
    const subtrees = this.store.logs.subtrees(row.content, String(row.createdAt));
    return { leaf, size, hash: subtrees(0, leaf).toString('base64'), proof: inclusionProof(subtrees, leaf, size).map(b64) };
  }

  /** The consistency proof between the zone's trees of `from` and `to` leaves (1 ≤ from ≤ to ≤ the size of its checkpoint). */
  consistency(name: string, from: number, to: number): ConsistencyAnswer {
    const row = this.logged(name);
    this.assureSize(row, to);
    if (from < 1 || from > to) throw new IdnsError('invalid_request', `a consistency proof goes from a tree of 1 to ${to} leaves, not ${from}`);
    return { from, to, proof: consistencyProof(this.store.logs.subtrees(row.content, String(row.createdAt)), from, to).map(b64) };
  }

  /** The keys of the witnesses whose cosignatures a checkpoint carries, by name, as far as they are known here. */
  witnessKeys(checkpoint: string): Record<string, PublicJwk> {
    const keys: Record<string, PublicJwk> = {};
    for (const { name } of parseNote(checkpoint).signatures) {
      const key = this.store.witness.keyOf(name);
      if (key !== undefined) keys[name] = key;
    }
    return keys;
  }

  /** The log binding of an answer given from the version of `answer.zone` held now (the caller reads both in one turn). */
  bind(answer: Pick<AuthoritativeAnswer, 'zone' | 'serial' | 'status' | 'record' | 'history'>): AnswerLog {
    const row = this.logged(answer.zone);
    if (serialOf(row.version) !== answer.serial) throw new IdnsError('zone_unavailable', `zone ${answer.zone} changed while answering; ask again`);
    const size = checkpointSize(row.checkpoint);
    const subtrees = this.store.logs.subtrees(row.content, String(row.createdAt));
    // The zone record's proof is the same for every answer of a version: made once per version.
    const version = `${row.content}\n${size}`;
    let zoneProof = this.zoneProofs.get(answer.zone);
    if (zoneProof?.version !== version) {
      zoneProof = { version, proof: inclusionProof(subtrees, size - 1, size).map(b64) };
      this.zoneProofs.set(answer.zone, zoneProof);
    }
    const log: AnswerLog = {
      checkpoint: row.checkpoint,
      witnesses: this.witnessKeys(row.checkpoint),
      zoneRecord: zoneProof.proof,
    };
    const last = answer.history?.at(-1);
    if (answer.status === 'answer' && last !== undefined) {
      const handle = decodePayload(answer.record).handle as string;
      const leaf = this.store.records.leafOf(row.content, historyKey(handle, last[0]));
      if (typeof leaf !== 'number') throw new IdnsError('internal', `zone ${answer.zone}: the history entry ${handle}#${last[0]} has no leaf in the log`);
      log.entry = { leaf, proof: inclusionProof(subtrees, leaf, size).map(b64) };
    }
    return log;
  }

  private logged(name: string): ZoneRow {
    const row = this.zones.require(name);
    const unavailable = this.zones.unavailable(row);
    if (unavailable) throw new IdnsError('zone_unavailable', unavailable);
    if (row.checkpoint === '')
      throw new IdnsError('zone_unavailable', `zone ${name} has no log here yet (a copy made by an older idns, until its next full transfer)`);
    return row;
  }

  private assureSize(row: ZoneRow, size: number): void {
    const held = checkpointSize(row.checkpoint);
    if (size < 1 || size > held) throw new IdnsError('invalid_request', `zone ${row.name}'s log holds ${held} leaves here; ask about a tree of 1 to ${held}`);
  }
}

function b64(hash: Buffer): string {
  return hash.toString('base64');
}
