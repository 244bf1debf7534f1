// The benchmark suite: `npm run bench` (full: a 1,000,000-handle zone, rewrites bench/RESULTS.md) or
// `npm run bench -- --quick` (a small zone, under two minutes; writes bench/QUICK.md with every row
// beside the committed reference bench/quick-reference.json, and `--save-reference` rewrites that).
// `npm run bench -- --quick --against REF` measures commit REF's build beside this one in the same run,
// alternately, and writes QUICK.md from that comparison instead (bench/ab.js).
// Development: `--handles N` (zone size), `--only 1,7` (targets), `--out FILE`; see bench/lib.js.
// Every throughput figure is reported beside a baseline measured in the same run, as a ratio, because the
// machines are small and noisy: absolute numbers move, ratios much less. Load comes from separate
// processes (autocannon in bench/load.js), never from inside the server process.
import { existsSync, readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { againstReference } from './ab.js';
import { authorityTargets } from './authority.js';
import { AUTHORITY_TARGETS, build, cleanup, fmt, git, parseOptions, RESOLVER_TARGETS, root, speed } from './lib.js';
import { fullTable, methodOf, quickTable, readReference, REFERENCE_FILE, referenceOf, regressionSummary, Rows, TOLERANCE_NOTE, write } from './report.js';
import { resolverTargets } from './resolver.js';

const opts = parseOptions(process.argv.slice(2));
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`.replace(/ -- $/, '');

if (opts.against !== undefined) {
  await againstReference(opts, { machine, command });
} else {
  const run = await measure();
  if (opts.rowsJson !== undefined) write(opts.rowsJson, JSON.stringify({ rows: run.rows.rows, busy: run.busy, seconds: run.seconds }));
  else if (!opts.quick) fullReport(run);
  else quickReport(run);
}

/** Runs the chosen targets on the build under test; resolves to { rows, seconds, busy }. */
async function measure() {
  // The server's Ed25519 (libsodium), as `idns serve` uses it. (A build older than this module, measured
  // by --against, chose libsodium by itself.)
  const sodium = `${build}dist/records/ed25519-sodium.js`;
  if (existsSync(sodium)) await import(sodium);
  const { generatePrivateJwk } = await import(`${build}dist/records/keys.js`);
  const { signChangeRequest } = await import(`${build}dist/client/requests.js`);
  const { createResolver } = await import(`${build}dist/resolver/resolver.js`);

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
    if (AUTHORITY_TARGETS.some((t) => opts.only.has(t))) await authorityTargets(ctx);
    if (RESOLVER_TARGETS.some((t) => opts.only.has(t))) await resolverTargets(ctx);
  } finally {
    cleanup();
  }
  const seconds = (performance.now() - began) / 1000;
  // Other processes on the machine depress every figure without an in-run baseline; say how busy it was.
  const busy = `Load average (1 min) ${loadBefore.toFixed(1)} at the start, ${loadavg()[0].toFixed(1)} at the end, on ${cpus().length} cores; speed ${speedBefore.toFixed(1)} and ${speed().toFixed(1)} (bench/lib.js \`speed\`: a fixed single-threaded workload, thousands a second).`;
  return { rows, seconds, busy };
}

function commitOf() {
  try {
    return git('rev-parse', '--short', 'HEAD');
  } catch (err) {
    process.stderr.write(`bench: no git commit (${err.message.split('\n')[0]})\n`);
    return 'unknown';
  }
}

function fullReport({ rows, seconds, busy }) {
  const table = fullTable(rows);
  write(
    opts.out,
    `# Benchmark results

Written by \`${command}\` on ${new Date().toISOString()}, commit ${commitOf()}, in ${Math.round(seconds)} s.
Machine: ${machine}. ${busy}
${methodOf(opts)}

${table}

${readFileSync(join(root, 'bench/analysis.md'), 'utf8')}`,
  );
  process.stdout.write(`${table}\n`);
}

function quickReport({ rows, seconds, busy }) {
  const commit = commitOf();
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
catch regressions. ${TOLERANCE_NOTE} Rows without one are compared as
they are: trust their marks only when this run and the reference both had the machine to themselves
(both runs' load averages and speeds are given here; on a busy machine, rerun or read the ratio rows, or
compare with \`--against\`, which measures the reference's build in the same run).
${refNote}
${methodOf(opts)}

${table}

${regressionSummary(regressed, reference !== null)}
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
