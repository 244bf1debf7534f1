// An independent verifier of C2SP checkpoints and their Ed25519 cosignatures, written from the specs
// (c2sp.org/signed-note, tlog-checkpoint, tlog-cosignature) with node:crypto alone and none of idns's code,
// so that the interoperability test does not check our formats against themselves.
//
// Usage: node c2sp-verify.mjs NOTE_FILE VKEY...   (verifier keys: name+hex(keyid)+base64(type||key))
// Prints one line per verified signature: "<name> <type>" (and "time <t>" for a cosignature); exits 1
// with the reason when the note is malformed, a known key's signature fails, or none verifies.
import { createHash, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';

const [file, ...vkeys] = process.argv.slice(2);
const note = readFileSync(file, 'utf8');
const die = (why) => {
  process.stderr.write(`${why}\n`);
  process.exit(1);
};

// signed-note: the text ends at the last blank line; then "— name base64" lines, each ending in a newline.
const cut = note.lastIndexOf('\n\n');
if (cut < 0 || !note.endsWith('\n')) die('not a signed note');
const text = note.slice(0, cut + 1);
const lines = note.slice(cut + 2, -1).split('\n');

const keys = vkeys.map((vkey) => {
  const [name, hash] = vkey.split('+', 2);
  const material = Buffer.from(vkey.slice(name.length + hash.length + 2), 'base64');
  const type = material[0];
  const raw = material.subarray(1);
  const id = createHash('sha256')
    .update(Buffer.concat([Buffer.from(`${name}\n`), Buffer.from([type]), raw]))
    .digest()
    .subarray(0, 4)
    .toString('hex');
  if (id !== hash) die(`verifier key ${name}: key hash ${hash} is not ${id}`);
  const key = createPublicKey({ key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]), format: 'der', type: 'spki' });
  return { name, id, type, key };
});

let verified = 0;
for (const line of lines) {
  if (!line.startsWith('\u2014 ')) die(`not a signature line: ${line}`);
  const [name, b64] = line.slice(2).split(' ');
  const sig = Buffer.from(b64, 'base64');
  const k = keys.find((x) => x.name === name && x.id === sig.subarray(0, 4).toString('hex'));
  if (!k) continue; // unknown keys are ignored
  if (k.type === 0x01) {
    if (!verify(null, Buffer.from(text), k.key, sig.subarray(4))) die(`signature by ${name} does not verify`);
    process.stdout.write(`${name} 1\n`);
  } else if (k.type === 0x04) {
    // tlog-cosignature: u64 big-endian timestamp, then Ed25519 over "cosignature/v1\ntime T\n" + the text.
    const time = sig.readBigUInt64BE(4);
    const message = `cosignature/v1\ntime ${time}\n${text}`;
    if (!verify(null, Buffer.from(message), k.key, sig.subarray(12))) die(`cosignature by ${name} does not verify`);
    process.stdout.write(`${name} 4 time ${time}\n`);
  } else die(`unsupported signature type ${k.type}`);
  verified++;
}
// tlog-checkpoint: origin, decimal size, base64 root hash of 32 bytes.
const [origin, size, root] = text.split('\n');
if (!origin || !/^(0|[1-9][0-9]*)$/.test(size) || Buffer.from(root, 'base64').length !== 32) die('not a checkpoint');
if (verified === 0) die('no signature by a known key');
