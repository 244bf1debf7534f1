import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { generatePrivateJwk, signingKeyFromJwk, type PublicJwk } from '../src/records/keys.js';
import { CheckpointBook } from '../src/transparency/checkpoint-book.js';
import { MemoryTree } from '../src/transparency/memory-tree.js';
import { checkpointText, cosignatureTime, cosignatureVerifier, cosigner, parseCheckpoint } from '../src/transparency/checkpoint.js';
import {
  consistencyProof,
  EMPTY_ROOT,
  inclusionProof,
  leafHash,
  MerkleFrontier,
  nodeHash,
  treeRoot,
  verifyConsistency,
  verifyInclusion,
  type SubtreeHashes,
} from '../src/transparency/merkle.js';
import {
  ed25519NoteSigner,
  ed25519NoteVerifier,
  MAX_NOTE_SIGNATURES,
  NOTE_COSIGNATURE_V1,
  NOTE_ED25519,
  openNote,
  parseNote,
  parseVerifierKey,
  signNote,
  verifierKey,
} from '../src/transparency/note.js';
import { addCheckpoint, formatAddCheckpoint, parseAddCheckpoint, type ForkEvidence, type WitnessedCheckpoint } from '../src/transparency/witness.js';
import { errorCode } from './support/errors.js';

// The transparency primitives of witnessed zones (issue 18): RFC 9162's Merkle tree with its proofs, and
// C2SP's signed notes, checkpoints and cosignatures, checked against the published test vectors (RFC
// 6962's, shared by Certificate Transparency and Go's tlog; golang.org/x/mod's sumdb/note example) and
// against every proof of trees up to a few hundred leaves.

const hex = (s: string) => Buffer.from(s, 'hex');
const LEAVES = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(hex);
const ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
].map(hex);

/** A tree kept in memory as a store keeps it: every complete subtree's hash, by level and index. */
function treeOf(leaves: readonly Buffer[]): { subtree: SubtreeHashes; frontier: MerkleFrontier } {
  const nodes = new Map<string, Buffer>();
  const frontier = new MerkleFrontier();
  for (const leaf of leaves) for (const n of frontier.append(leafHash(leaf))) nodes.set(`${n.level}/${n.index}`, n.hash);
  const subtree: SubtreeHashes = (level, index) => {
    const h = nodes.get(`${level}/${index}`);
    if (h === undefined) throw new Error(`no subtree ${level}/${index}`);
    return h;
  };
  return { subtree, frontier };
}

const code = (fn: () => unknown): string => errorCode(fn, 'ok');

describe('the Merkle tree (RFC 9162 §2.1)', () => {
  it("gives RFC 6962's roots for trees of 0 to 8 leaves, appended one at a time and computed from the stored subtrees", () => {
    expect(EMPTY_ROOT.toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    for (let n = 1; n <= 8; n++) {
      const { subtree, frontier } = treeOf(LEAVES.slice(0, n));
      expect(frontier.root()).toEqual(ROOTS[n - 1]);
      expect(treeRoot(subtree, n)).toEqual(ROOTS[n - 1]);
      // A frontier rebuilt from the store goes on as the one that made it.
      const again = MerkleFrontier.of(subtree, n);
      expect(again.root()).toEqual(ROOTS[n - 1]);
    }
    const { subtree } = treeOf(LEAVES.slice(0, 5));
    const resumed = MerkleFrontier.of(subtree, 5);
    for (const leaf of LEAVES.slice(5)) resumed.append(leafHash(leaf));
    expect(resumed.root()).toEqual(ROOTS[7]);
  });

  it("makes and checks RFC 6962's inclusion and consistency proofs", () => {
    const { subtree } = treeOf(LEAVES);
    const inclusion = inclusionProof(subtree, 5, 8);
    expect(inclusion.map((h) => h.toString('hex'))).toEqual([
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ]);
    verifyInclusion(leafHash(LEAVES[5]!), 5, 8, inclusion, ROOTS[7]!);
    expect(code(() => verifyInclusion(leafHash(LEAVES[5]!), 4, 8, inclusion, ROOTS[7]!))).toBe('verification_failed');
    verifyInclusion(leafHash(LEAVES[2]!), 2, 3, [ROOTS[1]!], ROOTS[2]!);

    const consistency = consistencyProof(subtree, 6, 8);
    expect(consistency.map((h) => h.toString('hex'))).toEqual([
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ]);
    verifyConsistency(6, 8, consistency, ROOTS[5]!, ROOTS[7]!);
    expect(code(() => verifyConsistency(6, 8, consistency, ROOTS[4]!, ROOTS[7]!))).toBe('verification_failed');
    const twoToFive = consistencyProof(treeOf(LEAVES.slice(0, 5)).subtree, 2, 5);
    expect(twoToFive.map((h) => h.toString('hex'))).toEqual([
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ]);
    verifyConsistency(2, 5, twoToFive, ROOTS[1]!, ROOTS[4]!);
  });

  it('proves every leaf of every tree up to 64 leaves, and every prefix; refuses a proof bent in any way', () => {
    const leaves = Array.from({ length: 64 }, (_, i) => Buffer.from(`leaf ${i}`));
    const { subtree } = treeOf(leaves);
    const roots = [EMPTY_ROOT, ...Array.from({ length: 64 }, (_, i) => treeRoot(subtree, i + 1))];
    const other = leafHash(Buffer.from('not a leaf'));
    for (let size = 1; size <= 64; size++) {
      for (let i = 0; i < size; i++) {
        const proof = inclusionProof(subtree, i, size);
        verifyInclusion(leafHash(leaves[i]!), i, size, proof, roots[size]!);
        expect(code(() => verifyInclusion(other, i, size, proof, roots[size]!))).toBe('verification_failed');
        expect(code(() => verifyInclusion(leafHash(leaves[i]!), i, size, [...proof, other], roots[size]!))).toBe('verification_failed');
        if (proof.length > 0) expect(code(() => verifyInclusion(leafHash(leaves[i]!), i, size, proof.slice(1), roots[size]!))).toBe('verification_failed');
      }
      for (let from = 0; from <= size; from++) {
        const proof = consistencyProof(subtree, from, size);
        verifyConsistency(from, size, proof, roots[from]!, roots[size]!);
        if (from > 0 && from < size) {
          // Another history of the first tree (a fork) is refused, and so is a shortened proof.
          expect(code(() => verifyConsistency(from, size, proof, nodeHash(roots[from]!, other), roots[size]!))).toBe('verification_failed');
          expect(code(() => verifyConsistency(from, size, proof.slice(0, -1), roots[from]!, roots[size]!))).toBe('verification_failed');
        }
      }
    }
    expect(code(() => verifyInclusion(other, 3, 3, [], roots[3]!))).toBe('verification_failed');
    expect(code(() => verifyConsistency(5, 4, [], roots[5]!, roots[4]!))).toBe('verification_failed');
  });

  it('a tree held in memory gives the proofs and subtrees of the stored one, for every size up to its own, as it grows', () => {
    const leaves = Array.from({ length: 100 }, (_, i) => Buffer.from(`leaf ${i}`));
    const { subtree } = treeOf(leaves);
    const tree = new MemoryTree();
    for (let n = 0; n < leaves.length; n++) {
      tree.append(leafHash(leaves[n]!));
      // Asked between appends, so that a size's shared suffixes are made again for the next size.
      for (const size of [n + 1, Math.max(1, n - 6), Math.ceil((n + 1) / 2)]) {
        // Every leaf's proof as base64 text, compared once per size (thousands of Buffer comparisons are slow).
        const all = (prove: (i: number) => (Buffer | string)[]) =>
          Array.from({ length: size }, (_, i) =>
            prove(i)
              .map((h) => (typeof h === 'string' ? h : h.toString('base64')))
              .join(' '),
          );
        const expected = all((i) => inclusionProof(subtree, i, size));
        expect(all((i) => tree.inclusion(i, size))).toEqual(expected);
        // The same hashes as base64 one after the other (the upper levels' encodings kept and reused).
        const text = Array.from({ length: size }, (_, i) => tree.inclusionBase64(i, size).toString('latin1').match(/.{44}/g)?.join(' ') ?? '');
        expect(text).toEqual(expected);
        expect(treeRoot(tree.subtree, size)).toEqual(treeRoot(subtree, size));
      }
    }
    expect(tree.size).toBe(100);
    expect(tree.bytes).toBeGreaterThanOrEqual(2 * 100 * 32);
    // Outside the tree: the same refusals as the stored one's.
    expect(code(() => tree.inclusion(100, 100))).toBe('invalid_request');
    expect(code(() => tree.inclusion(3, 101))).toBe('internal');
  });

  it('verification throws only typed errors, whatever the proof (fast-check)', () => {
    const { subtree } = treeOf(Array.from({ length: 40 }, (_, i) => Buffer.from([i])));
    const root = treeRoot(subtree, 40);
    const hash = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((a) => Buffer.from(a));
    fc.assert(
      fc.property(fc.integer({ min: -2, max: 80 }), fc.integer({ min: -2, max: 80 }), fc.array(hash, { maxLength: 10 }), (a, b, proof) => {
        expect(['ok', 'verification_failed']).toContain(code(() => verifyInclusion(leafHash(Buffer.from([a & 0xff])), a, b, proof, root)));
        expect(['ok', 'verification_failed']).toContain(code(() => verifyConsistency(a, b, proof, root, root)));
      }),
      { numRuns: 500 },
    );
  });
});

describe('signed notes (C2SP signed-note)', () => {
  // golang.org/x/mod/sumdb/note's example: Ed25519 is deterministic, so our signature must be its signature.
  const seed = Buffer.from('AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz', 'base64').subarray(1);
  const privateKey = createPrivateKey({ key: Buffer.concat([hex('302e020100300506032b657004220420'), seed]), format: 'der', type: 'pkcs8' });
  const publicJwk = createPublicKey(privateKey).export({ format: 'jwk' }) as unknown as PublicJwk;
  const vkey = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
  const text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
  const signed = `${text}\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;

  it('signs and opens the Go reference note byte for byte; its verifier key is the published one', () => {
    const jwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: publicJwk.x };
    expect(signNote(text, [ed25519NoteSigner('PeterNeumann', privateKey, jwk)])).toBe(signed);
    expect(verifierKey('PeterNeumann', 1, Buffer.from(jwk.x, 'base64url'))).toBe(vkey);
    const parsed = parseVerifierKey(vkey);
    expect(parsed).toMatchObject({ name: 'PeterNeumann', keyId: 0xc74f20a3, type: 1 });
    const verifier = ed25519NoteVerifier('PeterNeumann', jwk);
    expect(openNote(signed, [verifier]).note.text).toBe(text);
  });

  it('refuses a changed text, a known key whose signature fails, a note with no known signature; ignores unknown keys', () => {
    const jwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: publicJwk.x };
    const peter = ed25519NoteVerifier('PeterNeumann', jwk);
    expect(code(() => openNote(signed.replace('cryptography', 'cryptographY'), [peter]))).toBe('verification_failed');
    const stranger = signingKeyFromJwk(generatePrivateJwk());
    const other = ed25519NoteVerifier('someone.example/log', stranger.publicJwk);
    expect(code(() => openNote(signed, [other]))).toBe('verification_failed');
    // A second signature by an unknown key is ignored; the known one decides.
    const both = signNote(text, [
      ed25519NoteSigner('PeterNeumann', privateKey, jwk),
      ed25519NoteSigner('someone.example/log', stranger.privateKey, stranger.publicJwk),
    ]);
    expect(openNote(both, [peter]).verified.map((v) => v.verifier.name)).toEqual(['PeterNeumann']);
    // The same name with another key's ID is another key: ignored, not a failure.
    const impostor = signNote(text, [ed25519NoteSigner('PeterNeumann', stranger.privateKey, stranger.publicJwk)]);
    expect(code(() => openNote(impostor, [peter]))).toBe('verification_failed');
    expect(openNote(`${impostor}${signed.slice(text.length + 1)}`, [peter]).verified).toHaveLength(1);
  });

  it('refuses malformed notes before any signature: no blank line, a bad signature line, control characters, too large', () => {
    for (const bad of [
      text,
      `${text}\n`,
      `${text}\n— PeterNeumann\n`,
      `${text}\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`,
      `${text}\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=`,
      `${text}\n— PeterNeumann AAAA\n`,
      `a\u0000b\n\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`,
      `${'x'.repeat(70_000)}\n\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`,
      42,
    ]) {
      expect(code(() => parseNote(bad))).toBe('verification_failed');
    }
    expect(code(() => parseVerifierKey('PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW'))).toBe('invalid_request');
    // At most MAX_NOTE_SIGNATURES signature lines: one more is refused before any is checked.
    const line = signed.slice(text.length + 1);
    expect(parseNote(`${text}\n${line.repeat(MAX_NOTE_SIGNATURES)}`).signatures).toHaveLength(MAX_NOTE_SIGNATURES);
    expect(code(() => parseNote(`${text}\n${line.repeat(MAX_NOTE_SIGNATURES + 1)}`))).toBe('verification_failed');
  });
});

describe('checkpoints and cosignatures (C2SP tlog-checkpoint, tlog-cosignature)', () => {
  const zone = signingKeyFromJwk(generatePrivateJwk());
  const witness = signingKeyFromJwk(generatePrivateJwk());
  const origin = 'idns.example/zone/example.com';

  it('writes and reads a checkpoint; a witness cosigns it at a time it states; both signatures verify', () => {
    const root = ROOTS[7]!;
    const body = checkpointText({ origin, size: 8, root });
    expect(body).toBe(`${origin}\n8\n${root.toString('base64')}\n`);
    expect(parseCheckpoint(body)).toEqual({ origin, size: 8, root, extensions: [] });
    const note = signNote(body, [
      ed25519NoteSigner(origin, zone.privateKey, zone.publicJwk),
      cosigner('witness.example/w1', witness.privateKey, witness.publicJwk, () => 1_780_000_000),
    ]);
    const opened = openNote(note, [ed25519NoteVerifier(origin, zone.publicJwk), cosignatureVerifier('witness.example/w1', witness.publicJwk)]);
    expect(opened.verified.map((v) => v.verifier.name)).toEqual([origin, 'witness.example/w1']);
    expect(cosignatureTime(opened.verified[1]!.signature)).toBe(1_780_000_000);
    // The cosignature covers its time: another time in its place does not verify.
    const line = note.split('\n').find((l) => l.includes('witness.example/w1'))!;
    const bytes = Buffer.from(line.split(' ').pop()!, 'base64');
    bytes.writeBigUInt64BE(1_780_000_001n, 4);
    const moved = note.replace(line, `— witness.example/w1 ${bytes.toString('base64')}`);
    expect(code(() => openNote(moved, [cosignatureVerifier('witness.example/w1', witness.publicJwk)]))).toBe('verification_failed');
  });

  it("computes a cosigner's key ID as transparency-dev's published type 0x04 verifier key does", () => {
    const published = parseVerifierKey('remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2');
    expect(published.type).toBe(NOTE_COSIGNATURE_V1);
    const jwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: published.publicKey.toString('base64url') };
    expect(cosignatureVerifier('remora.n621.de', jwk).keyId).toBe(0xda77ade7);
  });

  it('refuses malformed checkpoint texts', () => {
    const root = ROOTS[0]!.toString('base64');
    for (const bad of [
      `${origin}\n8\n`,
      `\n8\n${root}\n`,
      `${origin}\n08\n${root}\n`,
      `${origin}\n-1\n${root}\n`,
      `${origin}\n8\nAAAA\n`,
      `${origin}\n8\n${root}\n\n`,
      `${origin}\n8\n${root}`,
    ]) {
      expect(code(() => parseCheckpoint(bad))).toBe('verification_failed');
    }
  });
});

describe('a witness deciding add-checkpoint (C2SP tlog-witness)', () => {
  const zone = signingKeyFromJwk(generatePrivateJwk());
  const witnessKey = signingKeyFromJwk(generatePrivateJwk());
  const origin = 'example.com/idns-log';
  const leaves = Array.from({ length: 20 }, (_, i) => Buffer.from(`change ${i}`));
  const { subtree } = treeOf(leaves);
  const signed = (size: number, root = treeRoot(subtree, size), key = zone) =>
    signNote(checkpointText({ origin, size, root }), [ed25519NoteSigner(origin, key.privateKey, key.publicJwk)]);
  const logs = (o: string) => (o === origin ? [ed25519NoteVerifier(origin, zone.publicJwk)] : undefined);
  const witness = cosigner('witness.example/w1', witnessKey.privateKey, witnessKey.publicJwk, () => 1_780_000_000);

  /** A witness's state as a store would keep it: the checkpoint held per origin, and the forks seen. */
  function witnessState() {
    const held = new Map<string, WitnessedCheckpoint>();
    const forks: ForkEvidence[] = [];
    const add = (body: string) => {
      const out = addCheckpoint(
        parseAddCheckpoint(body),
        logs,
        (o) => held.get(o),
        (o) => forks.some((f) => f.origin === o),
        witness,
      );
      if (out.status === 200) held.set(origin, out.held);
      if (out.status !== 200 && out.evidence) forks.push(out.evidence);
      return out;
    };
    return { add, held, forks };
  }
  const request = (oldSize: number, size: number, note = signed(size), proof = consistencyProof(subtree, oldSize, size)) =>
    formatAddCheckpoint({ oldSize, proof, note });

  it('cosigns the first checkpoint and each consistent successor; the cosignature verifies on the checkpoint', () => {
    const w = witnessState();
    const first = w.add(request(0, 5));
    expect(first.status).toBe(200);
    const next = w.add(request(5, 12));
    expect(next.status).toBe(200);
    if (next.status !== 200) throw new Error('refused');
    const note = signed(12) + next.cosignatures;
    const opened = openNote(note, [ed25519NoteVerifier(origin, zone.publicJwk), cosignatureVerifier('witness.example/w1', witnessKey.publicJwk)]);
    expect(opened.verified.map((v) => v.verifier.name)).toEqual([origin, 'witness.example/w1']);
    expect(w.held.get(origin)!.size).toBe(12);
    // The same checkpoint again: cosigned again (a quiet zone stays fresh).
    expect(w.add(request(12, 12, signed(12), [])).status).toBe(200);
  });

  it('answers 404 for an unknown log, 403 for a checkpoint not signed by its key, 409 with the held size for a stale old size, 400 for an old size past the checkpoint, 422 for a proof from size 0', () => {
    const w = witnessState();
    expect(
      w.add(
        formatAddCheckpoint({
          oldSize: 0,
          proof: [],
          note: signNote(checkpointText({ origin: 'other.example/log', size: 1, root: treeRoot(subtree, 1) }), [
            ed25519NoteSigner('other.example/log', zone.privateKey, zone.publicJwk),
          ]),
        }),
      ).status,
    ).toBe(404);
    const stranger = signingKeyFromJwk(generatePrivateJwk());
    expect(w.add(request(0, 5, signed(5, undefined, stranger))).status).toBe(403);
    expect(w.add(request(0, 5)).status).toBe(200);
    expect(w.add(request(3, 8))).toMatchObject({ status: 409, heldSize: 5 });
    expect(w.add(request(9, 8, signed(8), [])).status).toBe(400);
    const fresh = witnessState();
    expect(fresh.add(request(0, 5, signed(5), consistencyProof(subtree, 2, 5))).status).toBe(422);
    expect(() => parseAddCheckpoint('old 01\n\nx')).toThrow(IdnsError);
    expect(() => parseAddCheckpoint(`old 1\nAAAA\n\n${signed(5)}`)).toThrow(IdnsError);
    // At most 63 consistency proof lines (C2SP tlog-witness).
    const hash = Buffer.alloc(32).toString('base64');
    expect(parseAddCheckpoint(`old 1\n${`${hash}\n`.repeat(63)}\n${signed(5)}`).proof).toHaveLength(63);
    expect(() => parseAddCheckpoint(`old 1\n${`${hash}\n`.repeat(64)}\n${signed(5)}`)).toThrow(/more than 63/);
  });

  it('keeps two checkpoints that do not join as evidence of a fork, and cosigns nothing more of that log', () => {
    const w = witnessState();
    expect(w.add(request(0, 8)).status).toBe(200);
    // A fork: the same key signs a tree whose first 8 leaves differ (another history of one of them).
    const forkLeaves = leaves.map((l, i) => (i === 3 ? Buffer.from('another change 3') : l));
    const forkTree = treeOf(forkLeaves).subtree;
    const forked = w.add(request(8, 12, signed(12, treeRoot(forkTree, 12)), consistencyProof(forkTree, 8, 12)));
    expect(forked).toMatchObject({ status: 409, evidence: { origin } });
    expect(w.forks).toHaveLength(1);
    expect(w.forks[0]!.held).toBe(signed(8));
    // Even the honest successor is not cosigned now: an operator must look at the evidence first.
    expect(w.add(request(8, 12)).status).toBe(409);
    // Two checkpoints of one size with different roots are evidence too.
    const same = witnessState();
    expect(same.add(request(0, 8)).status).toBe(200);
    expect(same.add(request(8, 8, signed(8, treeRoot(forkTree, 8)), []))).toMatchObject({
      status: 409,
      evidence: { why: 'two checkpoints of size 8 with different roots' },
    });
  });
});

describe('interoperability: an independent verifier (test/support/c2sp-verify.mjs, written from the specs)', () => {
  it("verifies a zone's checkpoint and a witness's cosignature as idns makes them, and refuses a changed one", () => {
    const zone = signingKeyFromJwk(generatePrivateJwk());
    const witnessKey = signingKeyFromJwk(generatePrivateJwk());
    const origin = 'example.com/idns-log';
    const { subtree } = treeOf(LEAVES);
    const note = signNote(checkpointText({ origin, size: 8, root: treeRoot(subtree, 8) }), [ed25519NoteSigner(origin, zone.privateKey, zone.publicJwk)]);
    const out = addCheckpoint(
      { oldSize: 0, proof: [], note },
      (o) => (o === origin ? [ed25519NoteVerifier(origin, zone.publicJwk)] : undefined),
      () => undefined,
      () => false,
      cosigner('witness.example/w1', witnessKey.privateKey, witnessKey.publicJwk, () => 1_780_000_123),
    );
    if (out.status !== 200) throw new Error(out.message);
    const dir = mkdtempSync(join(tmpdir(), 'idns-c2sp-'));
    try {
      const vkeys = [
        verifierKey(origin, NOTE_ED25519, Buffer.from(zone.publicJwk.x, 'base64url')),
        verifierKey('witness.example/w1', NOTE_COSIGNATURE_V1, Buffer.from(witnessKey.publicJwk.x, 'base64url')),
      ];
      const run = (text: string) => {
        writeFileSync(join(dir, 'note'), text);
        return spawnSync(process.execPath, [join(import.meta.dirname, 'support', 'c2sp-verify.mjs'), join(dir, 'note'), ...vkeys], { encoding: 'utf8' });
      };
      const ok = run(note + out.cosignatures);
      expect(ok.status, ok.stderr).toBe(0);
      expect(ok.stdout).toBe(`${origin} 1\nwitness.example/w1 4 time 1780000123\n`);
      const changed = run((note + out.cosignatures).replace('\n8\n', '\n9\n'));
      expect(changed.status).toBe(1);
      expect(changed.stderr).toMatch(/does not verify/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a resolver's checkpoints (no rollback, forks kept)", () => {
  const leaves = Array.from({ length: 12 }, (_, i) => Buffer.from(`c${i}`));
  const { subtree } = treeOf(leaves);
  const at = (size: number, root = treeRoot(subtree, size)) => ({ size, root, note: `note of ${size} ${root.toString('hex').slice(0, 8)}` });

  it('accepts growing checkpoints, refuses an older one, and keeps two that cannot both be true', () => {
    const book = new CheckpointBook(10);
    book.accept('example', at(4));
    book.accept('example', at(9), consistencyProof(subtree, 4, 9));
    book.accept('example', at(9));
    expect(book.latest('example')!.size).toBe(9);
    expect(() => book.accept('example', at(4))).toThrow(/older than the one of size 9 seen before \(a rollback\)/);
    const other = treeOf(leaves.map((l, i) => (i === 2 ? Buffer.from('forked') : l))).subtree;
    expect(() => book.accept('example', at(9, treeRoot(other, 9)))).toThrow(/evidence of a fork/);
    expect(() => book.accept('example', at(12, treeRoot(other, 12)), consistencyProof(other, 9, 12))).toThrow(/evidence of a fork/);
    expect(book.forks().map((f) => f.why)).toEqual(['two checkpoints of size 9 with different roots', expect.stringMatching(/not a prefix/)]);
    // The honest view goes on.
    book.accept('example', at(12), consistencyProof(subtree, 9, 12));
    expect(book.latest('example')!.size).toBe(12);
  });

  it('forgets the least recently seen zones past its bound', () => {
    const book = new CheckpointBook(2);
    book.accept('a', at(1));
    book.accept('b', at(1));
    book.accept('a', at(2));
    book.accept('c', at(1));
    expect([book.latest('a')?.size, book.latest('b'), book.latest('c')?.size]).toEqual([2, undefined, 1]);
  });
});
