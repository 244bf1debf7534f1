import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  EMPTY_MAP,
  mapPath,
  mapKey,
  mapLeafHash,
  mapRootOf,
  mapValue,
  MapEntries,
  byPath,
  verifyMapMembership,
  ZoneMap,
  type MapNode,
  type MapNodes,
} from '../src/transparency/zone-map.js';
import { errorCode } from './support/errors.js';

// The zone map (docs/protocol.md §13.6): a Merkle prefix tree over the zone's current records. The root
// of a set is computed here straight from the definition, independently of the module's code, and the
// module's incremental map (set and remove, node by node) and bottom-up build must both give it, for
// any order of changes; its proofs verify, and nothing else does.

const sha = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
interface MapEntry {
  key: Buffer;
  value: Buffer;
}
const bit = (key: Buffer, d: number): number => (key[Math.floor(d / 8)]! >> (7 - (d % 8))) & 1;

/** The definition: empty → 32 zero bytes; one key → its leaf; more → 0x01 || left || right split on bit d. */
function definedRoot(entries: readonly MapEntry[], depth = 0): Buffer {
  if (entries.length === 0) return Buffer.alloc(32);
  if (entries.length === 1) return sha(Buffer.from([0]), entries[0]!.key, entries[0]!.value);
  const left = entries.filter((e) => bit(e.key, depth) === 0);
  const right = entries.filter((e) => bit(e.key, depth) === 1);
  return sha(Buffer.from([1]), definedRoot(left, depth + 1), definedRoot(right, depth + 1));
}

class MemoryNodes implements MapNodes {
  readonly rows = new Map<string, MapNode>();
  get(path: Buffer): MapNode | undefined {
    return this.rows.get(path.toString('hex'));
  }
  put(path: Buffer, node: MapNode): void {
    this.rows.set(path.toString('hex'), node);
  }
  delete(path: Buffer): void {
    this.rows.delete(path.toString('hex'));
  }
}

/** Keys from a small alphabet of names, some sharing long prefixes on purpose (hand-made keys). */
const keyArb = fc.oneof(
  fc.string({ minLength: 1, maxLength: 6 }).map((s) => mapKey('handle', s)),
  // Keys equal but for their last bits: deep paths, long chains of interior nodes with one empty side.
  fc.integer({ min: 0, max: 7 }).map((n) => Buffer.concat([Buffer.alloc(31, 0xab), Buffer.from([n])])),
);
const opArb = fc.record({ key: keyArb, value: fc.option(fc.string({ maxLength: 4 }), { nil: null }) });

describe('zone map', () => {
  it('keeps the root the definition gives, through any sequence of sets and removes (its root taken now and then, as commits do), and proves each key it holds', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), fc.integer({ min: 1, max: 10 }), (ops, every) => {
        const nodes = new MemoryNodes();
        const map = new ZoneMap(nodes);
        const state = new Map<string, MapEntry>();
        for (const [i, op] of ops.entries()) {
          if (i % every === 0) expect(map.root().equals(definedRoot([...state.values()]))).toBe(true);
          const id = op.key.toString('hex');
          if (op.value === null) {
            expect(map.remove(op.key)).toBe(state.delete(id));
          } else {
            const value = mapValue(op.value);
            map.set(op.key, value);
            state.set(id, { key: op.key, value });
          }
        }
        const entries = [...state.values()];
        const root = definedRoot(entries);
        expect(map.root().equals(root)).toBe(true);
        const packed = new MapEntries();
        for (const e of entries) packed.add(e.key, e.value);
        const built = new MemoryNodes();
        expect(packed.build(byPath((p, n) => built.put(p, n))).equals(root)).toBe(true);
        // The same nodes, whichever way the map was made: the shape is the set's.
        expect([...nodes.rows.keys()].sort()).toEqual([...built.rows.keys()].sort());
        for (const e of entries) {
          const proof = map.proof(e.key)!;
          verifyMapMembership(e.key, e.value, proof, root);
          expect(errorCode(() => verifyMapMembership(e.key, mapValue('another'), proof, root))).toBe('verification_failed');
        }
      }),
      { numRuns: 300 },
    );
  });

  it('has no proof for a key it does not hold, and an old value is refused once replaced', () => {
    const map = new ZoneMap(new MemoryNodes());
    const alice = mapKey('handle', 'alice@example.com');
    map.set(mapKey('handle', 'bob@example.com'), mapValue('b'));
    map.set(alice, mapValue('old'));
    const oldProof = map.proof(alice)!;
    const oldRoot = map.root();
    verifyMapMembership(alice, mapValue('old'), oldProof, oldRoot);
    map.set(alice, mapValue('new'));
    expect(errorCode(() => verifyMapMembership(alice, mapValue('old'), oldProof, map.root()))).toBe('verification_failed');
    expect(errorCode(() => verifyMapMembership(alice, mapValue('old'), map.proof(alice)!, map.root()))).toBe('verification_failed');
    expect(map.proof(mapKey('handle', 'carol@example.com'))).toBeNull();
    map.remove(alice);
    expect(map.proof(alice)).toBeNull();
    map.remove(mapKey('handle', 'bob@example.com'));
    expect(map.root().equals(EMPTY_MAP)).toBe(true);
  });

  it('refuses a proof longer than a key has bits, and hashes that are not 32 bytes', () => {
    const key = mapKey('handle', 'a@b');
    const value = mapValue('x');
    const root = mapLeafHash(key, value);
    verifyMapMembership(key, value, [], root);
    expect(
      errorCode(() =>
        verifyMapMembership(
          key,
          value,
          Array.from({ length: 257 }, () => EMPTY_MAP),
          root,
        ),
      ),
    ).toBe('verification_failed');
    expect(errorCode(() => verifyMapMembership(key, value, [Buffer.alloc(31)], root))).toBe('verification_failed');
  });

  it('reads the root from one checkpoint extension line, refusing a malformed or repeated one', () => {
    const root = sha(Buffer.from('r'));
    expect(mapRootOf([])).toBeNull();
    expect(mapRootOf(['other line', `idns-map ${root.toString('base64')}`])!.equals(root)).toBe(true);
    expect(errorCode(() => mapRootOf(['idns-map AAAA']))).toBe('verification_failed');
    expect(errorCode(() => mapRootOf([`idns-map ${root.toString('base64')}`, `idns-map ${root.toString('base64')}`]))).toBe('verification_failed');
  });
});

describe('zone map in the store', () => {
  it('keeps upper nodes in memory only for the root named: a change made through another connection is never read stale, nor one rolled back', async () => {
    const { Store } = await import('../src/store/store.js');
    const { tempDir } = await import('./support/server.js');
    const dir = tempDir('idns-map-store-');
    const writer = Store.open(dir.dir);
    const reader = Store.open(dir.dir);
    try {
      const keys = Array.from({ length: 300 }, (_, i) => mapKey('handle', `h${i}@example`));
      // Written through one connection, as the writer thread does; `committed` names the new root.
      const change = (at: Buffer | null, edit: (map: ZoneMap) => void): Buffer =>
        writer.write(() => {
          const nodes = writer.maps.nodes('c', at);
          const map = new ZoneMap(nodes);
          edit(map);
          writer.maps.committed('c', map.commit());
          return map.root();
        });
      let root = change(null, (map) => keys.forEach((k, i) => map.set(k, mapValue(`v${i}`))));
      // Both ways a reader proves: through the nodes kept for the named root, and the proofs for answers,
      // whose nodes outlive a change and are checked.
      const proofAt = (r: Buffer, key: Buffer) => {
        const kept = new ZoneMap(reader.maps.nodes('c', r)).proof(key)!;
        expect(reader.maps.proof('c', r, key)).toEqual(kept);
        return kept;
      };
      verifyMapMembership(keys[7]!, mapValue('v7'), proofAt(root, keys[7]!), root);
      // Changed through the writer: the reader, asked for the new root, reads it afresh.
      root = change(root, (map) => map.set(keys[7]!, mapValue('changed')));
      verifyMapMembership(keys[7]!, mapValue('changed'), proofAt(root, keys[7]!), root);
      // A change rolled back leaves the writer's memory of nodes unused: the next change starts from the stored map.
      expect(() =>
        writer.write(() => {
          const map = new ZoneMap(writer.maps.nodes('c', root));
          map.set(keys[8]!, mapValue('lost'));
          map.commit();
          throw new Error('rolled back');
        }),
      ).toThrow('rolled back');
      const after = change(root, (map) => map.set(keys[9]!, mapValue('kept')));
      const entries = new MapEntries();
      keys.forEach((k, i) => entries.add(k, mapValue(i === 7 ? 'changed' : i === 9 ? 'kept' : `v${i}`)));
      expect(after.equals(entries.build())).toBe(true);
      verifyMapMembership(keys[8]!, mapValue('v8'), proofAt(after, keys[8]!), after);
      // Every key proven under one root, then each again after a change elsewhere: the proofs kept from
      // before are checked, and the stale ones read again.
      for (const k of keys) reader.maps.proof('c', after, k);
      const last = change(after, (map) => {
        map.remove(keys[3]!);
        map.set(keys[200]!, mapValue('moved'));
      });
      expect(reader.maps.proof('c', last, keys[3]!)).toBeNull();
      keys.forEach((k, i) => {
        if (i === 3) return;
        const value = mapValue(i === 7 ? 'changed' : i === 9 ? 'kept' : i === 200 ? 'moved' : `v${i}`);
        verifyMapMembership(k, value, reader.maps.proof('c', last, k)!, last);
      });
    } finally {
      writer.close();
      reader.close();
      dir.remove();
    }
  });

  it('below the levels kept in memory, reads and changes nodes a tile at a time: keys that share up to 255 bits, changed over several commits, keep the defined root, and each proof given between commits holds (a node kept on one key’s path is not taken as another’s sibling unchecked)', async () => {
    const { Store } = await import('../src/store/store.js');
    const { tempDir } = await import('./support/server.js');
    const dir = tempDir('idns-map-tiles-');
    const writer = Store.open(dir.dir);
    const reader = Store.open(dir.dir);
    try {
      // One key, and that key with bit p flipped: the pair parts at depth p + 1, so the paths run through
      // every tile below the 15 levels kept (tiles of 5 levels: 16–20, 21–25, …), and end on either side
      // of tiles' edges.
      const base = createHash('sha256').update('base').digest();
      const flipped = (p: number) => {
        const key = Buffer.from(base);
        key[p >> 3] = key[p >> 3]! ^ (0x80 >> (p & 7));
        return key;
      };
      const keys = [
        base,
        ...[13, 14, 15, 16, 19, 20, 24, 25, 30, 31, 47, 100, 200, 254, 255].map(flipped),
        ...Array.from({ length: 50 }, (_, i) => mapKey('handle', `t${i}`)),
      ];
      const state = new Map<string, MapEntry>();
      let root: Buffer | null = null;
      const commit = (edit: (map: ZoneMap) => void): void => {
        root = writer.write(() => {
          const nodes = writer.maps.nodes('c', root);
          const map = new ZoneMap(nodes);
          edit(map);
          writer.maps.committed('c', map.commit());
          return map.root();
        });
      };
      const set = (map: ZoneMap, key: Buffer, v: string) => {
        map.set(key, mapValue(v));
        state.set(key.toString('hex'), { key, value: mapValue(v) });
      };
      const check = () => {
        expect(root!.equals(definedRoot([...state.values()]))).toBe(true);
        keys.forEach((k, i) => {
          // As bound answers carry it: the same hashes, in base64, written from the rows in place; every
          // other key asks that first (the first proof after a commit is the one checked against the root).
          let written = i % 2 === 0 ? reader.maps.proofBase64('c', root!, k) : null;
          const proof = reader.maps.proof('c', root!, k);
          const entry = state.get(k.toString('hex'));
          if (i % 2 === 1) written = reader.maps.proofBase64('c', root!, k);
          if (entry === undefined) {
            expect(proof).toBeNull();
            expect(written).toBeNull();
          } else {
            verifyMapMembership(k, entry.value, proof!, root!);
            expect(written!.toString('latin1')).toBe(proof!.map((h) => h.toString('base64')).join(''));
          }
        });
      };
      commit((map) => keys.forEach((k, i) => set(map, k, `v${i}`)));
      check();
      // The deepest pairs lose a key (the other rises through the tiles), others change value.
      commit((map) => {
        for (const p of [255, 100, 24]) {
          map.remove(flipped(p));
          state.delete(flipped(p).toString('hex'));
        }
        set(map, flipped(200), 'changed');
        set(map, base, 'changed');
      });
      check();
      commit((map) => {
        map.remove(base);
        state.delete(base.toString('hex'));
        set(map, flipped(255), 'back');
        // Keys new to the map whose places near the root the reader keeps as another key's leaf or as
        // empty: kept under the earlier root, they are read again, not taken to deny the key.
        for (let i = 0; i < 8; i++) {
          const late = mapKey('handle', `late${i}`);
          keys.push(late);
          set(map, late, `late${i}`);
        }
      });
      check();
      // Built whole from the same entries, bottom-up: the very same tiles, byte for byte.
      const entries = new MapEntries();
      for (const e of state.values()) entries.add(e.key, e.value);
      expect(writer.write(() => writer.maps.build('d', entries)).equals(root!)).toBe(true);
      const { default: Database } = await import('better-sqlite3');
      const db = new Database(`${dir.dir}/idns.sqlite`, { readonly: true });
      const tiles = (content: string) => db.prepare('SELECT tile, nodes FROM map_tiles WHERE content = ? ORDER BY tile').all(content);
      expect(tiles('c').length).toBeGreaterThan(10);
      expect(tiles('d')).toEqual(tiles('c'));
      db.close();
    } finally {
      writer.close();
      reader.close();
      dir.remove();
    }
  });
});

describe('map entries built whole', () => {
  it('a spill the file system has no room for (here a file size limit, EFBIG; a full disk is ENOSPC) is storage_full, and leaves nothing in the directory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'idns-spill-full-'));
    try {
      // In a child process under a 64 KiB file size limit (prlimit, util-linux; Node ignores SIGXFSZ, so
      // the write fails with EFBIG): keys of one bucket, whose full chunks of 8 KiB spill at once.
      const zoneMap = fileURLToPath(new URL('../dist/transparency/zone-map.js', import.meta.url));
      const script = `
        import { MapEntries } from ${JSON.stringify(zoneMap)};
        import { randomBytes } from 'node:crypto';
        const entries = new MapEntries(${JSON.stringify(dir)});
        try {
          for (let i = 0; i < 5000; i++) {
            const e = randomBytes(64);
            e[0] = 0;
            e[1] = 0;
            entries.add(e.subarray(0, 32), e.subarray(32));
          }
          console.log(JSON.stringify({ code: 'none' }));
        } catch (err) {
          console.log(JSON.stringify({ code: err.code, message: err.message }));
        } finally {
          entries.close();
        }`;
      const run = spawnSync('prlimit', ['--fsize=65536', process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
      expect(run.error).toBeUndefined();
      expect(JSON.parse(run.stdout) as { code: string; message: string }).toMatchObject({ code: 'storage_full', message: expect.stringContaining('EFBIG') });
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stored whole (MapStore.build), the same tiles byte for byte as the same records set one by one, for random sets from one key to thousands (every bucket, tiles of every level down to the leaves)', async () => {
    const { Store } = await import('../src/store/store.js');
    const { tempDir } = await import('./support/server.js');
    const dir = tempDir('idns-map-build-');
    const store = Store.open(dir.dir);
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(`${dir.dir}/idns.sqlite`, { readonly: true });
    const tiles = (content: string) => db.prepare('SELECT tile, nodes FROM map_tiles WHERE content = ? ORDER BY tile').all(content);
    try {
      for (const [n, seed] of [
        [1, 1],
        [2, 2],
        [37, 3],
        [1500, 4],
        [6000, 5],
      ] as const) {
        const entries = Array.from({ length: n }, (_, i) => ({
          key: createHash('sha256').update(`k${seed}/${i}`).digest(),
          value: createHash('sha256').update(`v${seed}/${i}`).digest(),
        }));
        const set = store.write(() => {
          const map = new ZoneMap(store.maps.nodes(`set${n}`, null));
          for (const e of entries) map.set(e.key, e.value);
          return map.commit();
        });
        const packed = store.maps.entries();
        for (const e of entries) packed.add(e.key, e.value);
        try {
          expect(store.write(() => store.maps.build(`built${n}`, packed)).equals(set)).toBe(true);
        } finally {
          packed.close();
        }
        expect(set.equals(definedRoot(entries))).toBe(true);
        expect(tiles(`built${n}`)).toEqual(tiles(`set${n}`));
      }
    } finally {
      db.close();
      store.close();
      dir.remove();
    }
  });

  it('build the map the definition gives, kept in memory or spilled to a file, however the keys fall into buckets', () => {
    const dir = mkdtempSync(join(tmpdir(), 'idns-map-entries-'));
    try {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 1500 }), fc.integer({ min: 0, max: 2000 }), fc.integer(), (spread, crowded, seed) => {
          // Keys spread over every bucket, and keys crowded into one (their first 10 bits alike), enough
          // to fill several of its chunks, and some alone in theirs (a leaf above the buckets' depth).
          const entries = Array.from({ length: spread + crowded }, (_, i) => {
            const key = createHash('sha256').update(`k${seed}/${i}`).digest();
            if (i >= spread) key.writeUInt16BE((0x2a5 << 6) | (key.readUInt16BE(0) & 0x3f), 0);
            return { key, value: createHash('sha256').update(`v${i}`).digest() };
          });
          const root = definedRoot(entries);
          const nodes = (spill?: string) => {
            const packed = new MapEntries(spill);
            for (const e of entries) packed.add(e.key, e.value);
            const order = new Map<string, { at: number; hash: string }>();
            try {
              expect(packed.build(byPath((p, n) => order.set(p.toString('hex'), { at: order.size, hash: n.hash.toString('hex') }))).equals(root)).toBe(true);
            } finally {
              packed.close();
            }
            return order;
          };
          const inMemory = nodes();
          expect(nodes(dir)).toEqual(inMemory);
          // Each node after the nodes below it (a store writes a tile once the nodes below are all in).
          for (const [path, { at }] of inMemory) {
            const parent = Buffer.from(path, 'hex');
            const depth = parent.readUInt16BE(0);
            const bits = Buffer.alloc(32);
            parent.copy(bits, 0, 2);
            for (const side of [0, 1]) {
              if (side === 1) bits[depth >> 3]! |= 0x80 >> (depth & 7);
              const child = inMemory.get(mapPath(bits, depth + 1).toString('hex'));
              if (child !== undefined) expect(child.at).toBeLessThan(at);
            }
          }
        }),
        {
          numRuns: 20,
          examples: [
            [0, 0, 1],
            [1, 0, 2],
            [0, 1, 3],
            [300, 1000, 4],
          ],
        },
      );
      // The spilled entries' file is gone from the directory from the start.
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a key added twice', () => {
    const packed = new MapEntries();
    const key = createHash('sha256').update('k').digest();
    packed.add(key, mapValue('a'));
    packed.add(Buffer.from(createHash('sha256').update('other').digest()), mapValue('b'));
    packed.add(key, mapValue('c'));
    expect(() => packed.build()).toThrow('each once');
  });
});
