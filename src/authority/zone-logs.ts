import { IdnsError } from '../errors.js';
import type { Store } from '../store/store.js';
import type { ZoneRow } from '../store/zones.js';
import { consistencyProof, inclusionProof, type SubtreeHashes } from '../transparency/merkle.js';
import { BASE64_HASH, hashesBase64, MemoryTree } from '../transparency/memory-tree.js';
import { checkpointMapRoot, checkpointSize } from '../transparency/zone-log.js';
import { mapKey, storedKeyOf, type MappedType } from '../transparency/zone-map.js';
import { parseNote } from '../transparency/note.js';
import type { PublicJwk } from '../records/keys.js';
import { serialOf } from '../records/serial.js';
import { historyKey } from '../records/history-key.js';
import type { ZoneReader } from './zone-reader.js';
import type { AuthoritativeAnswer } from './authority.js';
import { decodePayload } from './editor.js';
import { fnv1a } from '../records/encoding.js';

/** An inclusion proof as served (docs/protocol.md §13.4): the leaf's hash and the path to the root of the tree of `size` leaves. */
export interface InclusionAnswer {
  leaf: number;
  size: number;
  hash: string;
  proof: string[];
}

/** A consistency proof as served: the tree of `from` leaves is a prefix of the tree of `to`. */
export interface ConsistencyAnswer {
  from: number;
  to: number;
  proof: string[];
}

/**
 * Leaves of all zones' trees held in memory together (about 64 bytes each: 256 MB): past it, the trees
 * asked least lately are let go, and proofs of their zones are computed from the stored subtrees; a
 * zone whose tree alone is larger is never held.
 */
export const MAX_LEAVES_HELD = 4 * 1024 * 1024;
/**
 * Leaves read and hashed into a tree per turn of the event loop while it is filled, and most caught up
 * within one answer: about 5 ms of the thread (a million leaves fill in about 6 s at full load).
 */
const FILL_SLICE = 1024;

/** One copy of a zone: the zone row's content id and creation time (another copy has another tree). */
interface Copy {
  content: string;
  createdAt: number;
}

/** A zone's tree in memory: the copy it was read from, and whether a fill is under way. */
interface HeldTree extends Copy {
  tree: MemoryTree;
  filling: boolean;
}

/** What every answer of one version binds to: its checkpoint, and the JSON text of the binding up to the entry. */
interface VersionBinding extends Copy {
  checkpoint: string;
  /** The checkpoint's tree size. */
  size: number;
  /** The witness keys recorded when it was made (store/witness.ts keysRecorded): a key learnt later is served too. */
  keys: number;
  /** `,"log":{"checkpoint":…,"witnesses":…,"zoneRecord":[…]`: the log member up to `entry`, UTF-8. */
  head: Buffer;
  /** The root of the map of the zone's records the checkpoint names (one of an older idns names none: null), whose proofs answers carry. */
  mapRoot: Buffer | null;
  /** What names the checkpoint in the ETag of an answer bound to it (BoundLog.tag). */
  tag: string;
}

/**
 * What every server of a zone answers about its log (docs/protocol.md §13): the checkpoint of the version
 * it holds, and proofs against that tree or any earlier size of it. Proofs come from the stored subtrees,
 * or, once a zone's answers have been asked for bound to its log (`?log=1`, which every witnessed
 * resolver asks), from the zone's tree held in memory: filled from the stored leaves a slice per turn
 * of the event loop, then kept up to the version held as it grows.
 */
export class ZoneLogs {
  /** Per zone, the binding of the version held (by checkpoint). */
  private readonly bindings = new Map<string, VersionBinding>();
  /** Per zone, its tree in memory; in the order last asked (the first goes first past maxLeavesHeld). */
  private readonly trees = new Map<string, HeldTree>();
  /** The zones' versions read in the read batch `batch` (mapMember): one snapshot, one version. */
  private readonly versionsRead = { batch: -1, versions: new Map<string, number>() };
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly zones: ZoneReader,
    /** Leaves of all trees held together (MAX_LEAVES_HELD; tests make it small). */
    private readonly maxLeavesHeld = MAX_LEAVES_HELD,
  ) {
    // A zone replaced by another copy lets go of its tree at once, not when next asked (a zone deleted, when
    // the next tree is made: letGo).
    store.onZoneChanged((zone) => {
      const held = this.trees.get(zone);
      const row = held && this.store.zones.cached(zone);
      if (held !== undefined && (row === undefined || !sameCopy(held, row))) this.trees.delete(zone);
    });
  }

  /** The checkpoint of the zone's log at the version held here (a C2SP signed note). */
  checkpoint(name: string): string {
    return this.logged(name).checkpoint;
  }

  /** The inclusion proof of leaf `leaf` in the zone's tree of `size` leaves (at most the size of its checkpoint). */
  inclusion(name: string, leaf: number, size: number): InclusionAnswer {
    const row = this.logged(name);
    this.assureSize(row, size);
    if (leaf >= size) throw new IdnsError('invalid_request', `leaf ${leaf} is not in a tree of ${size} leaves`);
    const subtrees = this.subtrees(row);
    return { leaf, size, hash: subtrees(0, leaf).toString('base64'), proof: inclusionProof(subtrees, leaf, size).map(b64) };
  }

  /** The consistency proof between the zone's trees of `from` and `to` leaves (1 ≤ from ≤ to ≤ the size of its checkpoint). */
  consistency(name: string, from: number, to: number): ConsistencyAnswer {
    const row = this.logged(name);
    this.assureSize(row, to);
    if (from < 1 || from > to) throw new IdnsError('invalid_request', `a consistency proof goes from a tree of 1 to ${to} leaves, not ${from}`);
    return { from, to, proof: consistencyProof(this.subtrees(row), from, to).map(b64) };
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

  /**
   * The log binding of an answer given from the version of `answer.zone` held now, for its history's
   * last entry; see bindLeaf.
   */
  bind(answer: Pick<AuthoritativeAnswer, 'zone' | 'serial' | 'status' | 'record' | 'history' | 'noCut'>): BoundLog {
    const last = answer.history?.at(-1);
    const mapped = mappedOf(answer);
    if (answer.status !== 'answer' || last === undefined) return this.bindLeaf(answer.zone, answer.serial, undefined, mapped);
    const content = this.logged(answer.zone, this.zones.cachedZone(answer.zone)).content;
    return this.bindLeaf(answer.zone, answer.serial, this.store.records.leafOf(content, historyKey(mapped[0]!.key, last[0])) ?? null, mapped);
  }

  /**
   * The log binding of an answer given from the version of `zone` held now (the caller reads both in one
   * turn), as the bytes of the answer's `log` member (docs/protocol.md §13.5; its shape is witnessed.ts's
   * StepLog with an EntryProof `entry`): the
   * checkpoint with its witnesses' keys, the zone record's inclusion proof as the tree's last leaf, and
   * for an answer the inclusion proof of `leaf`, its history entry (undefined: a denial or a referral,
   * which name none; null: an entry the log does not hold, an error); and the map proof of each of
   * `mapped`, the answer's records (its `record`, then its `noCut`), when the checkpoint names a map.
   */
  bindLeaf(zone: string, serial: number, leaf: number | null | undefined, mapped: readonly MappedRecord[]): BoundLog {
    // The read path's cached row, as the answer was read from (and no query per answer).
    const row = this.logged(zone, this.zones.cachedZone(zone));
    if (serialOf(row.version) !== serial) throw new IdnsError('zone_unavailable', `zone ${zone} changed while answering; ask again`);
    let binding = this.bindings.get(zone);
    const keys = this.store.witness.keysRecorded;
    const fresh = binding !== undefined && binding.checkpoint === row.checkpoint && binding.keys === keys && sameCopy(binding, row);
    const size = fresh ? binding!.size : checkpointSize(row.checkpoint);
    const tree = this.heldTree(row, size, true);
    const stored = tree === null ? this.store.logs.subtrees(row.content, String(row.createdAt)) : null;
    const proof = (index: number): Buffer[] => (tree !== null ? tree.inclusion(index, size) : inclusionProof(stored!, index, size));
    if (!fresh) {
      // The same for every answer of a version (and its cosignatures): made once.
      const log = JSON.stringify({ checkpoint: row.checkpoint, witnesses: this.witnessKeys(row.checkpoint), zoneRecord: proof(size - 1).map(b64) });
      const head = Buffer.from(`,"log":${log.slice(0, -1)}`);
      binding = {
        content: row.content,
        createdAt: row.createdAt,
        checkpoint: row.checkpoint,
        size,
        keys,
        head,
        mapRoot: checkpointMapRoot(row.checkpoint),
        tag: fnv1a(row.checkpoint).toString(36),
      };
      this.bindings.set(zone, binding);
    }
    const b = binding!;
    const tail = b.mapRoot !== null ? this.mapMember(row, b.mapRoot, mapped) : CLOSE_BARE;
    if (leaf === undefined) return { member: Buffer.concat([b.head, tail]), checkpoint: row.checkpoint, tag: b.tag };
    if (leaf === null || !(leaf >= 0 && leaf < size - 1))
      throw new IdnsError('internal', `zone ${zone}: the answer's history entry has no leaf in the tree of ${size} leaves`);
    // The entry's proof as base64, from the tree held (whose upper nodes are encoded once) or the stored subtrees.
    const entry = tree !== null ? tree.inclusionBase64(leaf, size) : hashesBase64(inclusionProof(stored!, leaf, size));
    return { member: withEntry(b.head, leaf, entry, tail), checkpoint: row.checkpoint, tag: b.tag };
  }

  /**
   * `,"map":[…]}}`: the map proof of each record, read from the stored map in one snapshot with the
   * zone's version, which must still be the one the answer binds to (a version committed since the
   * answer was read changed the map: the answer is asked again). `root` is the map's root its
   * checkpoint names.
   */
  private mapMember(row: ZoneRow, root: Buffer, mapped: readonly MappedRecord[]): Buffer {
    this.store.batchReads();
    // The map changes only with a version (cosignatures change the note, not the map); one snapshot (read
    // batch) holds one version, read once.
    const batch = this.store.openReadBatch;
    const seen = this.versionsRead;
    let version = batch !== null && seen.batch === batch ? seen.versions.get(row.name) : undefined;
    if (version === undefined) {
      version = this.store.zones.versionOf(row.name);
      if (batch !== null) {
        if (seen.batch !== batch) {
          seen.batch = batch;
          seen.versions.clear();
        }
        if (version !== undefined) seen.versions.set(row.name, version);
      }
    }
    if (version !== row.version) {
      // A version committed through another connection that the cached rows do not show yet: they are
      // read again by the next question (routes/resolve.ts resolveBound asks it at once).
      this.store.zones.invalidate();
      throw new IdnsError('zone_unavailable', `zone ${row.name} changed while answering; ask again`);
    }
    const proofs: Buffer[] = [];
    let size = MAP_OPEN.length + CLOSE_MAP.length + Math.max(0, mapped.length - 1);
    for (const m of mapped) {
      const proof = this.store.maps.proofBase64(row.content, root, mapKey(m.type, m.key));
      if (proof === null) throw new IdnsError('internal', `zone ${row.name}: its map does not hold the ${m.type} record ${m.key}`);
      proofs.push(proof);
      size += 2 + listBytes(proof);
    }
    const out = Buffer.allocUnsafe(size);
    let at = MAP_OPEN.copy(out, 0);
    for (let i = 0; i < proofs.length; i++) {
      if (i > 0) out[at++] = 0x2c;
      out[at++] = 0x5b;
      at = writeList(out, at, proofs[i]!);
      out[at++] = 0x5d;
    }
    at += CLOSE_MAP.copy(out, at);
    if (at !== size) throw new IdnsError('internal', `a map member of ${at} bytes where ${size} were counted`);
    return out;
  }

  /** The zones' trees held in memory: leaves, bytes, and whether they are still being filled. */
  held(): { zone: string; leaves: number; bytes: number; filling: boolean }[] {
    return [...this.trees].map(([zone, h]) => ({ zone, leaves: h.tree.size, bytes: h.tree.bytes, filling: h.filling }));
  }

  /** Stops filling trees (the database is about to close). */
  close(): void {
    this.closed = true;
    this.trees.clear();
  }

  /** The subtrees of the zone's tree: from memory when its tree there is complete, else from the store. */
  private subtrees(row: ZoneRow): SubtreeHashes {
    return this.heldTree(row, checkpointSize(row.checkpoint), false)?.subtree ?? this.store.logs.subtrees(row.content, String(row.createdAt));
  }

  /**
   * The zone's tree in memory when it holds the version's leaves, else null. `fill` (a bound answer was
   * asked for) starts or continues holding it there.
   */
  private heldTree(row: ZoneRow, size: number, fill: boolean): MemoryTree | null {
    let held = this.trees.get(row.name);
    if (held !== undefined && !sameCopy(held, row)) {
      this.trees.delete(row.name);
      held = undefined;
    }
    if (fill && !this.closed) {
      if (held === undefined) {
        // Too large to hold at all: filling it would only have it let go again, over and over.
        if (size > this.maxLeavesHeld) return null;
        held = { content: row.content, createdAt: row.createdAt, tree: new MemoryTree(), filling: false };
        this.trees.set(row.name, held);
        this.letGo();
      } else {
        // Asked again: last to be let go.
        this.trees.delete(row.name);
        this.trees.set(row.name, held);
      }
      // A few leaves behind (the versions since the last answer): caught up at once; more, in the background.
      const behind = size - held.tree.size;
      if (behind > FILL_SLICE) this.fillLater(row.name, held);
      else if (behind > 0) {
        this.extend(row, held.tree, size);
        this.letGo();
      }
    }
    return held !== undefined && held.tree.size >= size ? held.tree : null;
  }

  /** Appends the stored leaves from the tree's size up to `size`. */
  private extend(row: ZoneRow, tree: MemoryTree, size: number): void {
    for (const leaf of this.store.logs.leaves(row.content, tree.size, size)) tree.append(leaf);
    if (tree.size !== size) throw new IdnsError('internal', `zone ${row.name}: its log holds ${tree.size} of the ${size} leaves its checkpoint counts`);
  }

  /**
   * Fills a zone's tree FILL_SLICE leaves per turn of the event loop (setImmediate, not a timer: it yields
   * to the requests waiting, it does not wait for time), up to the version held when each slice runs;
   * stops when the zone or its copy changes (the tree is dropped) or the logs close.
   */
  private fillLater(zone: string, held: HeldTree): void {
    if (held.filling) return;
    held.filling = true;
    const step = (): void => {
      held.filling = false;
      if (this.closed || this.trees.get(zone) !== held) return;
      const row = this.zones.cachedZone(zone);
      if (row === undefined || !sameCopy(held, row) || row.checkpoint === '') {
        this.trees.delete(zone);
        return;
      }
      const size = checkpointSize(row.checkpoint);
      this.extend(row, held.tree, Math.min(size, held.tree.size + FILL_SLICE));
      if (held.tree.size < size) {
        held.filling = true;
        setImmediate(step);
      } else this.letGo();
    };
    setImmediate(step);
  }

  /** Lets go of the trees of zones gone or replaced, then of those asked least lately while the trees held have more than maxLeavesHeld leaves. */
  private letGo(): void {
    let leaves = 0;
    for (const [zone, held] of this.trees) {
      const row = this.zones.cachedZone(zone);
      if (row === undefined || !sameCopy(held, row)) this.trees.delete(zone);
      else leaves += held.tree.size;
    }
    for (const [zone, held] of this.trees) {
      if (leaves <= this.maxLeavesHeld) return;
      this.trees.delete(zone);
      leaves -= held.tree.size;
    }
  }

  /** The zone's row (`row`, when the caller read it already) if its log can be served, else the error to answer. */
  private logged(name: string, row: ZoneRow | undefined = this.zones.get(name)): ZoneRow {
    if (row === undefined) throw new IdnsError('zone_not_found', `zone ${name} is not held by this server`);
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

/** An answer's log binding as served, and the checkpoint in it (which names the ETag). */
export interface BoundLog {
  /**
   * What takes the place of the answer body's closing brace: `,"log":{…}}`, the binding as the last
   * member, as JSON.stringify writes `{ ...answer, log }` (docs/protocol.md §13.5).
   */
  member: Buffer;
  checkpoint: string;
  /** A hash of the checkpoint (FNV-1a, base 36), which names it in the answer's ETag. */
  tag: string;
}

const CLOSE_BARE = Buffer.from('}}');
const ENTRY_LEAF = Buffer.from(',"entry":{"leaf":');
const ENTRY_PROOF = Buffer.from(',"proof":[');
const CLOSE_ENTRY = Buffer.from(']}');
const MAP_OPEN = Buffer.from(',"map":[');
const CLOSE_MAP = Buffer.from(']}}');

/** A record of an answer whose map proof the binding carries: its type and the key it is stored under. */
export interface MappedRecord {
  type: MappedType;
  key: string;
}

/** The records of an answer the map proves current: its `record`, then each of its `noCut` denials, under the keys their payloads give. */
export function mappedOf(answer: Pick<AuthoritativeAnswer, 'status' | 'record' | 'noCut'>): MappedRecord[] {
  const type: MappedType = answer.status === 'answer' ? 'handle' : answer.status === 'denial' ? 'denial' : 'delegation';
  return [answer.record, ...(answer.noCut ?? [])].map((jws) => ({ type, key: storedKeyOf(type, decodePayload(jws)) }));
}

/**
 * The log member `head` continued with the entry's leaf and proof (its hashes in base64, one after the
 * other) and `tail` (the map member and the closing braces), written into one buffer as JSON.stringify
 * would write them (base64 needs no escaping): every answer bound to the log makes one, so no string is
 * built for it.
 */
function withEntry(head: Buffer, leaf: number, proof: Buffer, tail: Buffer): Buffer {
  const digits = String(leaf);
  const size = head.length + ENTRY_LEAF.length + digits.length + ENTRY_PROOF.length + listBytes(proof) + CLOSE_ENTRY.length + tail.length;
  const out = Buffer.allocUnsafe(size);
  let at = head.copy(out, 0);
  at += ENTRY_LEAF.copy(out, at);
  at += out.write(digits, at, 'latin1');
  at += ENTRY_PROOF.copy(out, at);
  at = writeList(out, at, proof);
  at += CLOSE_ENTRY.copy(out, at);
  at += tail.copy(out, at);
  if (at !== size) throw new IdnsError('internal', `a log binding of ${at} bytes where ${size} were counted`);
  return out;
}

/** The bytes of writeList's JSON strings for hashes in base64 one after the other. */
function listBytes(base64: Buffer): number {
  const hashes = base64.length / BASE64_HASH;
  return hashes * (BASE64_HASH + 3) - (hashes > 0 ? 1 : 0);
}

/** Writes each hash of `base64` (BASE64_HASH bytes each) as a JSON string, comma-separated, at `at`; returns the offset after. */
function writeList(out: Buffer, at: number, base64: Buffer): number {
  for (let from = 0; from < base64.length; from += BASE64_HASH) {
    if (from > 0) out[at++] = 0x2c;
    out[at++] = 0x22;
    // Byte by byte: a copy call costs more than 44 bytes.
    for (let j = from; j < from + BASE64_HASH; j++) out[at++] = base64[j]!;
    out[at++] = 0x22;
  }
  return at;
}

function sameCopy(copy: Copy, row: ZoneRow): boolean {
  return copy.content === row.content && copy.createdAt === row.createdAt;
}

function b64(hash: Buffer): string {
  return hash.toString('base64');
}
