import { createPrivateKey, createPublicKey } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IdnsError } from '../src/errors.js';
import { generatePrivateJwk, signingKeyFromJwk, type PublicJwk } from '../src/records/keys.js';
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
  NOTE_COSIGNATURE_V1,
  openNote,
  parseNote,
  parseVerifierKey,
  signNote,
  verifierKey,
} from '../src/transparency/note.js';

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

function code(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(IdnsError);
    return (err as IdnsError).code;
  }
  return 'ok';
}

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
