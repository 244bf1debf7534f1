import { IdnsError } from '../errors.js';
import type { ZoneRecord } from '../records/types.js';
import type { LogNode } from '../store/log-nodes.js';
import type { Store } from '../store/store.js';
import { HASH_BYTES, MerkleFrontier } from '../transparency/merkle.js';
import { changeLeafHash, openCheckpoint, zoneRecordLeafHash } from '../transparency/zone-log.js';
import type { Checkpoint } from '../transparency/checkpoint.js';
import { isMapped, type MapEntries, mapKey, mapRootOf, mapValue, ZoneMap } from '../transparency/zone-map.js';

/** Nodes buffered before they are written (a transaction of their own, not synced: the switch syncs). */
const NODES_PER_WRITE = 4096;

/**
 * The checkpoint a transfer's start line carries (docs/protocol.md §11.1): signed by a key of the zone
 * record the stream starts with, for the tree that ends with that zone record. A transfer without one
 * comes from a server whose copy has no log (an older idns): refused.
 */
export function transferCheckpoint(zone: string, start: { record: ZoneRecord; jws: string }, checkpoint: unknown): Checkpoint & { note: string } {
  if (checkpoint === undefined)
    throw new IdnsError('transfer_failed', `the source sends no checkpoint of zone ${zone}'s log (an older idns?); transfer refused`);
  try {
    const opened = openCheckpoint(zone, checkpoint, start.record.keys);
    if (opened.size === 0) throw new IdnsError('verification_failed', 'a checkpoint of an empty log: the log ends with the zone record');
    return opened;
  } catch (err) {
    if (err instanceof IdnsError && err.code === 'verification_failed')
      throw new IdnsError('transfer_failed', `the transfer's checkpoint: ${err.message}`, { cause: err });
    throw err;
  }
}

/**
 * The log section of a full transfer being loaded beside the current copy: the leaf hashes (`log` lines)
 * rebuilt into the tree and stored under the new content id, checked against the signed checkpoint; then
 * the leaf of each history entry (`leaves` lines), handed to the entries as they arrive.
 */
export class LogLoader {
  private readonly frontier = new MerkleFrontier();
  private nodes: LogNode[] = [];
  private lastLeaf: Buffer | null = null;
  private readonly entryLeaves: number[] = [];
  private nextEntry = 0;
  private phase: 'hashes' | 'leaves' | 'records' = 'hashes';

  constructor(
    private readonly store: Store,
    private readonly content: string,
    private readonly checkpoint: Checkpoint,
  ) {}

  /** Takes a `log` or `leaves` line; they come after the start line and before the first record. */
  line(line: Record<string, unknown>): void {
    if (line.kind === 'log') {
      if (this.phase !== 'hashes') throw refused('a log line after the leaves of the history entries or a record');
      this.hashes(line.hashes);
    } else {
      if (this.phase === 'records') throw refused('a leaves line after a record');
      this.sealHashes();
      this.phase = 'leaves';
      const leaves = line.leaves;
      if (!Array.isArray(leaves) || leaves.length === 0) throw refused('a leaves line without leaves');
      for (const leaf of leaves) {
        if (!Number.isSafeInteger(leaf) || (leaf as number) < 0 || (leaf as number) >= this.checkpoint.size) {
          throw refused(`a history entry's leaf ${JSON.stringify(leaf)} is not in the log of ${this.checkpoint.size} leaves`);
        }
        this.entryLeaves.push(leaf as number);
      }
    }
  }

  /** The records begin: nothing of the log section may follow, and the leaf hashes must make the checkpoint's tree. */
  beginRecords(): void {
    this.sealHashes();
    this.phase = 'records';
  }

  /**
   * The leaf of the next history entry of the stream (entries come in key order, as their leaves did).
   * `check`: also compares the entry with the leaf stored there (a transfer checks a sample, as it does
   * signatures: docs/security.md).
   */
  entryLeaf(key: string, jws: string, check: boolean): number {
    const leaf = this.entryLeaves[this.nextEntry++];
    if (leaf === undefined) throw refused('more history entries than the leaves line listed');
    if (check) {
      this.flush();
      const stored = this.store.logs.subtrees(this.content)(0, leaf);
      if (!stored.equals(changeLeafHash('put', 'op', key, jws)!)) throw refused(`history entry ${key} is not the leaf ${leaf} of the log`);
    }
    return leaf;
  }

  /** Checks, once every record is in, that each entry got its leaf and the log ends with the zone record; writes what is left. */
  finish(zoneRecord: string): void {
    this.sealHashes();
    if (this.nextEntry !== this.entryLeaves.length)
      throw refused(`the leaves line listed ${this.entryLeaves.length} history entries, the transfer carried ${this.nextEntry}`);
    if (this.lastLeaf === null || !this.lastLeaf.equals(zoneRecordLeafHash(zoneRecord))) throw refused("the log does not end with the transfer's zone record");
    this.flush();
  }

  private hashes(value: unknown): void {
    if (typeof value !== 'string' || value.length === 0) throw refused('a log line without hashes');
    const bytes = Buffer.from(value, 'base64');
    if (bytes.length % HASH_BYTES !== 0 || bytes.toString('base64') !== value) throw refused('a log line whose hashes are not base64 of 32-byte hashes');
    if (this.frontier.size + bytes.length / HASH_BYTES > this.checkpoint.size) throw refused(`more leaves than the checkpoint's ${this.checkpoint.size}`);
    for (let at = 0; at < bytes.length; at += HASH_BYTES) {
      const leaf = bytes.subarray(at, at + HASH_BYTES);
      for (const node of this.frontier.append(leaf)) this.nodes.push(node);
      this.lastLeaf = leaf;
    }
    if (this.nodes.length >= NODES_PER_WRITE) this.flush();
  }

  /** The leaf hashes are all in: their tree must be the checkpoint's. */
  private sealHashes(): void {
    if (this.phase !== 'hashes') return;
    this.phase = 'leaves';
    if (this.frontier.size !== this.checkpoint.size || !this.frontier.root().equals(this.checkpoint.root)) {
      throw refused(`the log's ${this.frontier.size} leaves do not make the checkpoint's tree of ${this.checkpoint.size}`);
    }
  }

  private flush(): void {
    if (this.nodes.length === 0) return;
    const nodes = this.nodes;
    this.nodes = [];
    this.store.writeUnsynced(() => this.store.logs.keepMany(this.content, nodes));
  }
}

/**
 * The map a full transfer's records make (docs/protocol.md §13.6), built once they are all in and stored
 * under the new content id: its root must be the one the checkpoint names. A checkpoint that names none
 * (a primary of an older idns) leaves the copy without a map until one that does arrives.
 */
export class MapLoader {
  private readonly entries: MapEntries | null;
  private readonly named: Buffer | null;

  constructor(
    private readonly store: Store,
    private readonly content: string,
    checkpoint: Checkpoint,
  ) {
    this.named = namedMapRoot(checkpoint);
    this.entries = this.named === null ? null : store.maps.entries();
  }

  /** Takes a record of the stream. */
  add(type: string, key: string, jws: string): void {
    if (this.entries !== null && isMapped(type)) this.entries.add(mapKey(type, key), mapValue(jws));
  }

  /** Builds and stores the map, and checks its root against the checkpoint's. */
  finish(): void {
    if (this.entries === null) return;
    const entries = this.entries;
    const root = this.store.writeUnsynced(() => this.store.maps.build(this.content, entries));
    if (!root.equals(this.named!)) throw refused('the records do not make the map the checkpoint names');
  }

  /** Lets go of the entries gathered (their temporary file), whether or not the map was built. */
  close(): void {
    this.entries?.close();
  }
}

/**
 * Applies an incremental transfer's changes to a copy's map, inside the transaction that applies them to
 * its records, and checks the new checkpoint's map root. A copy whose map is not the one its last
 * checkpoint named (none kept yet: an upgraded secondary, or a primary that begins naming a map) has
 * its map built from its records, which hold the changes by then.
 */
export function applyToMap(
  store: Store,
  content: string,
  heldRoot: Buffer | null,
  changes: readonly { action: 'put' | 'del'; type: string; key: string; jws: string | null }[],
  checkpoint: Checkpoint,
): void {
  const named = namedMapRoot(checkpoint);
  if (named === null) return;
  // As the primary's editor does: the changes in memory, each tile written once.
  const nodes = store.maps.nodes(content, heldRoot);
  const map = new ZoneMap(nodes);
  let root: Buffer;
  if (heldRoot !== null && map.root().equals(heldRoot)) {
    for (const c of changes) {
      if (!isMapped(c.type)) continue;
      if (c.action === 'put') map.set(mapKey(c.type, c.key), mapValue(c.jws!));
      else map.remove(mapKey(c.type, c.key));
    }
    root = map.commit();
  } else {
    root = store.maps.rebuild(content);
  }
  if (!root.equals(named)) throw refused(`the changes do not make the map the checkpoint names`);
  store.maps.committed(content, root);
}

/** The map root a transfer's checkpoint names; a malformed map line refuses the transfer. */
function namedMapRoot(checkpoint: Checkpoint): Buffer | null {
  try {
    return mapRootOf(checkpoint.extensions);
  } catch (err) {
    if (err instanceof IdnsError) throw refused(`the transfer's checkpoint: ${err.message}`);
    throw err;
  }
}

function refused(why: string): IdnsError {
  return new IdnsError('transfer_failed', `${why}; transfer refused`);
}
