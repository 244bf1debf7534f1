// Issue 17, item 3: what first contact costs a verifier for a handle with a long history. Builds a real
// history of 1,000 changes (a registration, then updates, the key rotated every 100th change with its
// proof of possession), verifies it from the first entry (verifyHistory, as a resolver meeting the
// handle for the first time would), whole (as the log serves it) and in its compact form (as an answer
// carries it, docs/protocol.md §6.4), and one more change from the point verified before. Also what
// making the compact form costs the authority (once per change of the handle: it keeps the evidence).
// The server's Ed25519 (libsodium) unless `--node`: the resolver library's own (node:crypto), which a
// microblog server embedding it uses.
// Usage: `npm run build && node bench/history-verify.js [changes] [runs] [--node]`. Not part of `npm run bench`.
import { build, fmt, median } from './lib.js';

const node = process.argv.includes('--node');
if (!node) await import(`${build}dist/records/ed25519-sodium.js`);
const args = process.argv.slice(2).filter((a) => a !== '--node');

const { signChangeRequest } = await import(`${build}dist/client/requests.js`);
const { requestId } = await import(`${build}dist/records/change-request.js`);
const { emptyHistory, verifyHistory } = await import(`${build}dist/records/history-chain.js`);
const { compactHistory } = await import(`${build}dist/records/history-compact.js`);
const { generatePrivateJwk } = await import(`${build}dist/records/keys.js`);

const CHANGES = Number(args[0] ?? 1000);
const RUNS = Number(args[1] ?? 5);
const H = 'alice@example.com';
const pub = (k) => ({ kty: k.kty, crv: k.crv, x: k.x });
const zone = { name: 'example.com', keys: new Map() };

let key = generatePrivateJwk();
const entries = [];
let prev = null;
for (let seq = 1; seq <= CHANGES; seq++) {
  let jws;
  if (seq === 1) jws = signChangeRequest({ action: 'register', handle: H, endpoint: 'https://social.example/0', keys: [pub(key)] }, key);
  else if (seq % 100 === 0) {
    const next = generatePrivateJwk();
    jws = signChangeRequest({ action: 'update', handle: H, endpoint: `https://social.example/${seq}`, keys: [pub(next)], prev }, key, undefined, [next]);
    key = next;
  } else jws = signChangeRequest({ action: 'update', handle: H, endpoint: `https://social.example/${seq}`, keys: [pub(key)], prev }, key);
  entries.push([seq, jws]);
  prev = requestId(jws);
}
const bytes = entries.reduce((n, e) => n + e[1].length, 0);
const compact = compactHistory(entries);
const compactBytes = compact.reduce((n, e) => n + e[1].length, 0);

const full = [];
const one = [];
const compacted = [];
const making = [];
for (let r = 0; r < RUNS; r++) {
  let t = performance.now();
  const upTo = verifyHistory(emptyHistory(H), entries.slice(0, -1), zone);
  const all = performance.now() - t;
  t = performance.now();
  verifyHistory(upTo, entries.slice(-1), zone);
  one.push(performance.now() - t);
  full.push(all + one.at(-1));
  t = performance.now();
  verifyHistory(emptyHistory(H), compact, zone);
  compacted.push(performance.now() - t);
  t = performance.now();
  compactHistory(entries);
  making.push(performance.now() - t);
}
const kib = (n) => `${fmt(Math.round(n / 1024))} KiB`;
process.stdout.write(
  `${node ? 'node:crypto' : 'libsodium'}: history of ${fmt(CHANGES)} changes (${kib(bytes)} whole): first contact ${median(full).toFixed(1)} ms ` +
    `(${((median(full) * 1000) / CHANGES).toFixed(0)} µs an entry); compact form ${fmt(compact.length)} entries (${kib(compactBytes)}): ` +
    `first contact ${median(compacted).toFixed(2)} ms, made by the authority in ${median(making).toFixed(1)} ms; ` +
    `one more change from the point verified before ${median(one).toFixed(2)} ms (median of ${RUNS})\n`,
);
