// `npm run bench -- --quick --against REF`: this checkout's build and commit REF's, measured by this
// harness in the same run. A reference saved on another day was measured while the machine ran at
// another speed (these machines swing by 30-50% within an hour), so its absolute figures say little
// about a regression; here each build runs every target group in turn, in alternating order (ours then
// REF's, then REF's then ours), and each row is compared on the median of its rounds. REF is built once
// from `git archive` into a directory of the system's temporary folder, with this checkout's
// node_modules, and kept there for the next run.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AUTHORITY_TARGETS, cleanup, git, RESOLVER_TARGETS, root, tmp } from './lib.js';
import { methodOf, quickTable, regressionSummary, Rows, TOLERANCE_NOTE, write } from './report.js';

/** The target groups, each measured by one run of bench/run.js (they share a zone or a hierarchy). */
const GROUPS = [AUTHORITY_TARGETS, RESOLVER_TARGETS];

/** Measures this build and REF's alternately and writes the quick report from the comparison. */
export async function againstReference(opts, { machine, command }) {
  const began = performance.now();
  const ours = git('rev-parse', '--short', 'HEAD');
  const dirty = git('status', '--porcelain', '--untracked-files=no', '--', 'src', 'bin') !== '';
  const ref = git('rev-parse', '--verify', `${opts.against}^{commit}`);
  const refShort = ref.slice(0, 7);
  const refSubject = git('log', '-1', '--format=%s', ref);
  const refDir = buildOf(ref);
  const groups = GROUPS.map((g) => g.filter((t) => opts.only.has(t))).filter((g) => g.length > 0);
  const runs = { ours: [], ref: [] };
  const scratch = tmp('ab');
  try {
    for (let round = 0; round < opts.rounds; round++) {
      for (const [i, group] of groups.entries()) {
        for (const which of (round + i) % 2 === 0 ? ['ours', 'ref'] : ['ref', 'ours']) {
          const file = join(scratch, `${which}-${round}-${i}.json`);
          process.stderr.write(
            `bench: round ${round + 1} of ${opts.rounds}, targets ${group.join(',')}, ${which === 'ours' ? `this build (${ours})` : `${refShort}'s build`}\n`,
          );
          await runOnce(which === 'ref' ? refDir : undefined, [...opts.scaleArgs, '--only', group.join(','), '--rows-json', file]);
          runs[which].push(JSON.parse(readFileSync(file, 'utf8')));
        }
      }
    }
  } finally {
    cleanup();
  }
  const mine = combined(runs.ours);
  const theirs = combined(runs.ref);
  const reference = { rows: Object.fromEntries(theirs.sorted().map((r) => [r.id, { figures: figuresOf(r) }])) };
  const { table, regressed } = quickTable(mine, reference, `compared with ${refShort}'s build in the same run (median of ${opts.rounds} rounds each)`);
  const busy = runs.ours.map((r, i) => `- this build's run ${i + 1}: ${r.busy}`).concat(runs.ref.map((r, i) => `- ${refShort}'s run ${i + 1}: ${r.busy}`));
  write(
    opts.out,
    `# Quick benchmark (regression check, against ${refShort} in the same run)

Written by \`${command}\` on ${new Date().toISOString()}, commit ${ours}${dirty ? ' with uncommitted changes' : ''}, in ${Math.round((performance.now() - began) / 1000)} s.
Machine: ${machine}.
The full figures, on a zone of 1,000,000 handles, are in [RESULTS.md](RESULTS.md); this reduced run exists to
catch regressions. The reference is commit ${refShort} ("${refSubject}"), built from git and measured by
this run's harness in the same run: ${opts.rounds} rounds, each running every target group on both builds,
the order alternating from one group to the next, so that both builds meet the same machine. A row's figures below are this build's from its first round; the
comparison is on the median of the rounds of each build. ${TOLERANCE_NOTE}
Rows without an in-run baseline are compared as they are, which is fair here since both builds ran
side by side. A row REF's build cannot run (a setting it does not have) shows "no reference".
${methodOf(opts)}

${table}

${regressionSummary(regressed, true)}

How busy the machine was during each run (a run is one target group on one build):
${busy.join('\n')}
`,
  );
  process.stdout.write(`${table}\n`);
  if (regressed.length > 0) {
    process.stderr.write(`bench: REGRESSED by more than 20% against ${refShort}: ${regressed.map((r) => `[${r.target}] ${r.name}`).join('; ')}\n`);
    if (opts.failOnRegression) process.exitCode = 1;
  }
}

/**
 * The directory holding commit `ref`'s build (its source from `git archive`, this checkout's
 * node_modules, compiled with this checkout's TypeScript); made on first use, kept for later runs.
 */
function buildOf(ref) {
  const dir = join(tmpdir(), `idns-bench-build-${ref}`);
  const done = join(dir, '.built');
  if (existsSync(done)) return dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  process.stderr.write(`bench: building ${ref.slice(0, 7)} in ${dir}\n`);
  const archive = execFileSync('git', ['archive', '--format=tar', ref], { cwd: root, maxBuffer: 1 << 30 });
  execFileSync('tar', ['-x', '-C', dir], { input: archive });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
  try {
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.build.json')], { cwd: dir, stdio: 'inherit' });
  } catch (err) {
    // A commit whose dependencies this checkout's node_modules lack cannot be built this way.
    throw new Error(`could not build ${ref.slice(0, 7)} in ${dir} with this checkout's node_modules: ${err.message.split('\n')[0]}`);
  }
  writeFileSync(done, `${new Date().toISOString()}\n`);
  return dir;
}

/** One run of bench/run.js on a build (this checkout's when `buildDir` is undefined). */
function runOnce(buildDir, args) {
  const env = { ...process.env };
  if (buildDir === undefined) delete env.IDNS_BENCH_BUILD;
  else env.IDNS_BENCH_BUILD = buildDir;
  const child = spawn(process.execPath, [join(root, 'bench/run.js'), ...args], { stdio: ['ignore', 'inherit', 'inherit'], env });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`bench/run.js ${args.join(' ')} failed (${signal ?? `exit ${code}`})`))));
  });
}

/** Rows of several runs of one build, each row's compared figures replaced by their median over the runs. */
function combined(runs) {
  const byId = new Map();
  for (const run of runs) for (const row of run.rows) byId.set(row.id, [...(byId.get(row.id) ?? []), row]);
  const rows = new Rows();
  for (const same of byId.values()) {
    const first = same[0];
    const compare = Object.fromEntries(
      Object.entries(first.compare).map(([key, c]) => [
        key,
        { ...c, value: middle(same.map((r) => r.compare[key]?.value).filter((v) => typeof v === 'number')) },
      ]),
    );
    rows.rows.push({ ...first, compare });
  }
  return rows;
}

/** The median; of an even count, the mean of the middle two. */
function middle(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const figuresOf = (row) => Object.fromEntries(Object.entries(row.compare).map(([k, v]) => [k, v.value]));
