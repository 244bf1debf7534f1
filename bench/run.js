// The benchmark suite: `npm run bench` (full: a 1,000,000-handle zone, rewrites bench/RESULTS.md) or
// `npm run bench -- --quick` (a small zone, under two minutes; writes bench/QUICK.md with every row
// beside the committed reference bench/quick-reference.json, and `--save-reference` rewrites that).
// Development: `--handles N` (zone size), `--only 1,7` (targets), `--out FILE`; see bench/lib.js.
// Every throughput figure is reported beside a baseline measured in the same run, as a ratio, because the
// machines are small and noisy: absolute numbers move, ratios much less. Load comes from separate
// processes (autocannon in bench/load.js), never from inside the server process.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { authorityTargets } from './authority.js';
import { cleanup, fmt, parseOptions, root, speed } from './lib.js';
import { fullTable, quickTable, readReference, REFERENCE_FILE, referenceOf, Rows, write } from './report.js';
import { resolverTargets } from './resolver.js';

const opts = parseOptions(process.argv.slice(2));
// The server's Ed25519 (libsodium), as `idns serve` uses it.
await import(`${root}dist/records/ed25519-sodium.js`);
const { generatePrivateJwk } = await import(`${root}dist/records/keys.js`);
const { signChangeRequest } = await import(`${root}dist/client/requests.js`);
const { createResolver } = await import(`${root}dist/resolver/resolver.js`);

const rows = new Rows();
const key = generatePrivateJwk();
const ctx = { opts, rows, key, pub: { kty: key.kty, crv: key.crv, x: key.x }, signChangeRequest, createResolver };
const began = performance.now();
const loadBefore = loadavg()[0];
const speedBefore = speed();
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});
try {
  if ([1, 4, 5, 6, 7].some((t) => opts.only.has(t))) await authorityTargets(ctx);
  if ([2, 3, 8].some((t) => opts.only.has(t))) await resolverTargets(ctx);
} finally {
  cleanup();
}
const seconds = (performance.now() - began) / 1000;
// Other processes on the machine depress every figure without an in-run baseline; say how busy it was.
const busy = `Load average (1 min) ${loadBefore.toFixed(1)} at the start, ${loadavg()[0].toFixed(1)} at the end, on ${cpus().length} cores; speed ${speedBefore.toFixed(1)} and ${speed().toFixed(1)} (bench/lib.js \`speed\`: a fixed single-threaded workload, thousands a second).`;

let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
} catch (err) {
  process.stderr.write(`bench: no git commit (${err.message.split('\n')[0]})\n`);
}
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`.replace(/ -- $/, '');
const method = `Throughput figures are medians of ${opts.runs} runs of ${opts.duration} s with 64 connections from a separate autocannon
process (bench/load.js); the baseline is a bare node:http server (bench/baseline-server.js) answering a
fixed body of the same size, measured interleaved with ours in the same run. Zone size in this run:
${fmt(opts.handles)} handles (the targets speak of 1,000,000; the transfer target is scaled to the zone size).
Target 7: ${fmt(opts.notifyChanges)} registrations from the load generator, ${opts.notifyRuns} runs, the secondary's
GET /v1/zones polled every 10 ms; then 100 registrations from 4 clients, ${opts.changeRuns} runs alternating
between the two zones. Target 8: ${fmt(opts.cachedHandles)} handles looked up 100 a request.`;

if (!opts.quick) {
  const table = fullTable(rows);
  write(
    opts.out,
    `# Benchmark results

Written by \`${command}\` on ${new Date().toISOString()}, commit ${commit}, in ${Math.round(seconds)} s.
Machine: ${machine}. ${busy}
${method}

${table}

${readFileSync(join(root, 'bench/analysis.md'), 'utf8')}`,
  );
  process.stdout.write(`${table}\n`);
} else {
  const reference = readReference();
  const { table, regressed } = quickTable(rows, reference);
  const refNote = reference
    ? `Reference: ${relative(root, REFERENCE_FILE)}, written on ${reference.written} at commit ${reference.commit} (${fmt(reference.handles)} handles${reference.handles === opts.handles ? '' : `; THIS RUN HAS ${fmt(opts.handles)}, so the comparison is loose`}). ${reference.busy ?? ''}`
    : 'No reference to compare with (run `npm run bench -- --quick --save-reference` to write one).';
  write(
    opts.out,
    `# Quick benchmark (regression check)

Written by \`${command}\` on ${new Date().toISOString()}, commit ${commit}, in ${Math.round(seconds)} s.
Machine: ${machine}. ${busy}
The full figures, on a zone of 1,000,000 handles, are in [RESULTS.md](RESULTS.md); this reduced run exists to
catch regressions. A row is marked **REGRESSED** when a figure it is compared on is worse than the
reference's by more than 20% (higher-is-better figures below 80% of it, lower-is-better ones above
120%; figures near zero get a small absolute allowance). Rows with an in-run baseline are compared on
their ratio to it, since absolute figures move with the machine's load. Rows without one are compared as
they are: trust their marks only when this run and the reference both had the machine to themselves
(both runs' load averages and speeds are given here; on a busy machine, rerun or read the ratio rows).
${refNote}
${method}

${table}

${regressed.length === 0 ? (reference ? 'No row regressed by more than 20%.' : '') : `REGRESSED by more than 20%: ${regressed.map((r) => `target ${r.target} (${r.name})`).join('; ')}.`}
${opts.saveReference ? '\nThis run was then saved as the new reference.\n' : ''}`,
  );
  process.stdout.write(`${table}\n`);
  if (regressed.length > 0) {
    process.stderr.write(`bench: REGRESSED by more than 20% against the reference: ${regressed.map((r) => `[${r.target}] ${r.name}`).join('; ')}\n`);
    if (opts.failOnRegression && !opts.saveReference) process.exitCode = 1;
  }
  if (opts.saveReference) {
    write(
      REFERENCE_FILE,
      `${JSON.stringify(referenceOf(rows, { written: new Date().toISOString(), commit, handles: opts.handles, machine, busy }), null, 2)}\n`,
    );
  }
}
