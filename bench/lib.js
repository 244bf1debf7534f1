// Shared helpers of the benchmark (bench/run.js): the options, child processes, temporary directories,
// the load generator, HTTP and memory readings. Every server under test is its own `idns serve` process.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { request } from 'undici';

/** The checkout this harness lives in: its bench/ files, and where reports are written. */
export const root = fileURLToPath(new URL('..', import.meta.url));
/**
 * The build under test: this checkout, or another commit's build that `--against` (bench/ab.js) set up
 * and names in IDNS_BENCH_BUILD, so that both builds are measured by the very same harness.
 */
export const build = process.env.IDNS_BENCH_BUILD ? join(process.env.IDNS_BENCH_BUILD, '/') : root;
export const BIN = join(build, 'bin/idns.js');
/** The targets bench/authority.js measures (on one zone and its secondary), and those of bench/resolver.js (on one hierarchy). */
export const AUTHORITY_TARGETS = [1, 4, 5, 6, 7];
export const RESOLVER_TARGETS = [2, 3, 8];
const TARGETS = [...AUTHORITY_TARGETS, ...RESOLVER_TARGETS].sort((a, b) => a - b);

/**
 * The command line: `--quick`, `--handles N`, `--only 1,7`, `--save-reference`, `--out FILE`,
 * `--fail-on-regression`, `--against REF` with `--rounds N` (bench/ab.js), and `--rows-json FILE` (one
 * run's rows as JSON instead of a report: how bench/ab.js runs each build).
 */
export function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: 'boolean', default: false },
      handles: { type: 'string' },
      only: { type: 'string' },
      'save-reference': { type: 'boolean', default: false },
      out: { type: 'string' },
      'fail-on-regression': { type: 'boolean', default: false },
      against: { type: 'string' },
      rounds: { type: 'string', default: '2' },
      'rows-json': { type: 'string' },
    },
  });
  const quick = values.quick;
  const handles = values.handles === undefined ? (quick ? 20_000 : 1_000_000) : Number(values.handles);
  if (!Number.isInteger(handles) || handles < 1000) throw new Error('--handles wants a whole number ≥ 1000');
  const only = values.only === undefined ? new Set(TARGETS) : new Set(values.only.split(',').map(Number));
  for (const t of only) if (!TARGETS.includes(t)) throw new Error(`--only: no target ${t} (targets are ${TARGETS.join(', ')})`);
  if (values['save-reference'] && (!quick || values.handles !== undefined || values.only !== undefined)) {
    throw new Error('--save-reference records the plain quick mode: use it with --quick alone');
  }
  if (values.against !== undefined && (!quick || values['save-reference'])) {
    throw new Error('--against compares quick runs: use it with --quick (and without --save-reference)');
  }
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 10) throw new Error('--rounds wants a whole number from 1 to 10');
  const defaultHandles = values.handles === undefined;
  return {
    quick,
    handles,
    only,
    saveReference: values['save-reference'],
    failOnRegression: values['fail-on-regression'],
    against: values.against,
    rounds,
    rowsJson: values['rows-json'],
    // The arguments that chose this run's scale and targets, for the runs bench/ab.js starts.
    scaleArgs: [...(quick ? ['--quick'] : []), ...(values.handles === undefined ? [] : ['--handles', values.handles])],
    // A full run on another zone size is a development run: it must not replace the committed RESULTS.md.
    out: values.out ?? join(root, quick ? 'bench/QUICK.md' : defaultHandles ? 'bench/RESULTS.md' : 'bench/RESULTS-dev.md'),
    // Repetitions and sizes; the quick mode keeps each figure but measures it on less.
    runs: quick ? 3 : 5,
    duration: quick ? 2 : 8,
    // Pre-signed requests must arrive within 300 s of signing (the iat window), even on a loaded machine.
    registrations: quick ? 3_000 : 20_000,
    notifyChanges: quick ? 500 : 10_000,
    notifyRuns: 3,
    // Target 7 compares the zone with one a hundredth (quick: a tenth) of its size.
    smallZone: quick ? 2_000 : 10_000,
    changeRuns: quick ? 3 : 5,
    cachedHandles: quick ? 4_000 : 100_000,
    coldLookups: quick ? 200 : 1000,
  };
}

/** `git` in this checkout; its trimmed stdout (throws where git or the repository is missing). */
export function git(...args) {
  return execFileSync('git', args, { cwd: root, encoding: 'utf8', maxBuffer: 256 << 20 }).trim();
}

const dirs = [];
const children = [];
const execFileAsync = promisify(execFile);

/** A fresh temporary directory, removed by cleanup(). */
export function tmp(name) {
  const d = mkdtempSync(join(tmpdir(), `idns-bench-${name}-`));
  dirs.push(d);
  return d;
}

/** Runs the `idns` CLI to completion; resolves to its stdout. */
export async function idns(...args) {
  return (await execFileAsync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 })).stdout;
}

/** Starts a process and waits for `ready` on its stdout; resolves to { child, match, output }. */
export function start(args, ready = /idns serving on (https?:\/\/\S+)/) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')} did not start`)), 60_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, match: m, output: () => out });
      }
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
}

/**
 * `idns serve` on a data directory (resolver flags and the like in `extra`, Node's own flags in `node`).
 * IDNS_BENCH_SERVER_NODE_FLAGS adds Node flags to every server the benchmarks start, for profiling
 * (`--cpu-prof --cpu-prof-dir=DIR`: Node refuses --cpu-prof in NODE_OPTIONS).
 */
export function serve(dir, listen = '127.0.0.1:0', extra = [], node = []) {
  const profiling = process.env.IDNS_BENCH_SERVER_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
  return start([...profiling, ...node, BIN, 'serve', '--listen', listen, '--data', dir, '--no-bootstrap', '--log-level', 'error', ...extra]);
}

export const PRODUCTION_HOST = '0.0.0.0';
export const PRODUCTION_LABEL = 'production configuration (0.0.0.0, limits on)';

/**
 * The configuration operators run, for the headline figures: a public listen address (0.0.0.0, where
 * per-client rate limits and the per-address connection cap are on by default) with those limits
 * raised so that one load generator on loopback stands for many clients: every request is still
 * charged to its client's buckets. Returns the `idns serve` arguments after `--listen`.
 */
export async function productionServeArgs() {
  const file = join(tmp('production-config'), 'idns.json');
  const many = { rate: 10_000_000, per: 1, burst: 10_000_000 };
  // An older build measured by --against may have no per-address connection cap (its configuration
  // refuses unknown settings): it then runs with the limits it has.
  const { DEFAULT_CONFIG } = await import(`${build}dist/config.js`);
  const limits = 'connectionsPerAddress' in (DEFAULT_CONFIG.limits ?? {}) ? { limits: { connectionsPerAddress: 4096 } } : {};
  writeFileSync(file, JSON.stringify({ rateLimits: { enabled: true, lookups: many, writes: many }, ...limits }));
  return ['--config', file];
}

/** Ends a process started here with SIGTERM and waits for it to exit. */
export async function stop(proc) {
  const child = proc.child;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/**
 * A server's memory after a full garbage collection, in MB: { rss, live } where live is the V8 heap in
 * use plus memory held outside it (buffers). The server must run with `gcNodeFlags`.
 */
export async function memoryAfterGc(proc) {
  const reports = () => proc.output().match(/^bench-gc (.*)$/gm) ?? [];
  const before = reports().length;
  proc.child.kill('SIGUSR2');
  const t0 = performance.now();
  while (reports().length === before) {
    if (performance.now() - t0 > 30_000) throw new Error('no answer to SIGUSR2: is bench/gc-on-signal.js preloaded?');
    await sleep(10);
  }
  const m = JSON.parse(reports().at(-1).slice('bench-gc '.length));
  return { rss: m.rss / 2 ** 20, live: (m.heapUsed + m.external) / 2 ** 20 };
}

/** Node flags for a server whose memory is read after a full garbage collection (memoryAfterGc). */
export const gcNodeFlags = ['--expose-gc', '--import', join(root, 'bench/gc-on-signal.js')];

/** Kills every process started here and removes every temporary directory. */
export function cleanup() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}

/**
 * Runs bench/load.js (autocannon in its own process) and resolves to its JSON result. Options go
 * through a file: a long list of paths or bodies would not fit on a command line.
 */
async function runLoad(options) {
  const dir = tmp('load');
  // A long list of paths (a million handles) goes to its own file, once however many jobs share it.
  const files = new Map();
  const pathsOf = (job) => {
    if (job.paths === undefined || job.paths.length <= 1000) return job;
    if (!files.has(job.paths)) {
      files.set(job.paths, join(dir, `paths${files.size}.json`));
      writeFileSync(files.get(job.paths), JSON.stringify(job.paths));
    }
    const { paths, ...rest } = job;
    return { ...rest, pathsFile: files.get(paths) };
  };
  const optionsFile = join(dir, 'options.json');
  writeFileSync(optionsFile, JSON.stringify(options.jobs ? { jobs: options.jobs.map(pathsOf) } : pathsOf(options)));
  const { stdout } = await execFileAsync(process.execPath, [join(root, 'bench/load.js'), optionsFile], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop());
}

/** One load run (64 connections unless told): resolves to { rps, p50, p99, errors, non2xx, total, rate, … }. */
export const load = (url, paths, options) => runLoad({ url, paths, connections: 64, ...options });

/** Several load runs in turn in one load-generator process; resolves to their results. */
export const loadJobs = (jobs) => runLoad({ jobs: jobs.map((j) => ({ connections: 64, ...j })) });

/** `runs` interleaved runs of the baseline, then ours; resolves to { ours: [results], base: [results] }. */
export async function loadInterleaved(runs, ours, base) {
  const results = await loadJobs(Array.from({ length: runs }, () => [base, ours]).flat());
  return { base: results.filter((_, i) => i % 2 === 0), ours: results.filter((_, i) => i % 2 === 1) };
}

/** Writes request bodies for bench/load.js to a file; returns its path. */
export function bodiesFile(bodies) {
  const file = join(tmp('bodies'), 'bodies.json');
  writeFileSync(file, JSON.stringify(bodies));
  return file;
}

/** An NDJSON import file of `count` handles `${prefix}${i}@${host}`, written in chunks (a million lines is ~150 MB). */
export function importFile(host, prefix, count, pub) {
  const file = join(tmp('import'), 'handles.ndjson');
  writeFileSync(file, '');
  for (let from = 0; from < count; from += 50_000) {
    const lines = [];
    for (let i = from; i < Math.min(count, from + 50_000); i++)
      lines.push(JSON.stringify({ handle: `${prefix}${i}@${host}`, endpoint: `https://social.example/users/${i}`, keys: [pub] }));
    appendFileSync(file, `${lines.join('\n')}\n`);
  }
  return file;
}

/** One HTTP request with a keep-alive connection; resolves to { status, body } with the body parsed when it is JSON. */
export async function http(url, { method = 'GET', json } = {}) {
  const res = await request(url, {
    method,
    ...(json === undefined ? {} : { body: typeof json === 'string' ? json : JSON.stringify(json), headers: { 'content-type': 'application/json' } }),
  });
  const text = await res.body.text();
  let body = text;
  if ((res.headers['content-type'] ?? '').includes('json')) body = JSON.parse(text);
  return { status: res.statusCode, body };
}

/** How many records a zone holds besides its zone record: the `count` its signed zone record states. */
export async function recordCountOf(url, zone) {
  const r = await http(`${url}/v1/zones/${zone}`);
  const payload = JSON.parse(Buffer.from(r.body.record.split('.')[1], 'base64url').toString('utf8'));
  return payload.count;
}

/** The serial a server holds for a zone (its GET /v1/zones/ZONE), or -1 while it has none. */
export async function serialOf(url, zone) {
  const r = await http(`${url}/v1/zones/${zone}`).catch(() => null);
  return r?.status === 200 ? r.body.serial : -1;
}

/** Waits until a secondary holds the primary's serial (bounded). */
export async function converged(primaryUrl, secondaryUrl, zone, timeoutMs = 600_000) {
  const t0 = performance.now();
  for (;;) {
    const [p, s] = [await serialOf(primaryUrl, zone), await serialOf(secondaryUrl, zone)];
    if (p >= 0 && s === p) return p;
    if (performance.now() - t0 > timeoutMs) throw new Error(`${secondaryUrl} did not reach serial ${p} of ${zone} (at ${s})`);
    await sleep(20);
  }
}

/**
 * Waits until a server has an answer file for a zone of `handles` handles (its metric
 * idns_answer_file_handles shows the entries; bounded) and resolves to the seconds it took: the read path
 * serves from the database until then.
 */
export async function answerFileReady(url, zone, handles, timeoutMs = 300_000) {
  // Zones below the server's default answerFiles.minHandles get no file.
  const { DEFAULT_CONFIG } = await import(`${build}dist/config.js`);
  if (handles < DEFAULT_CONFIG.answerFiles.minHandles) return 0;
  const t0 = performance.now();
  const line = `idns_answer_file_handles{zone="${zone}",kind="entries"}`;
  for (;;) {
    const r = await http(`${url}/metrics`).catch(() => null);
    if (typeof r?.body === 'string' && r.body.includes(line)) return (performance.now() - t0) / 1000;
    if (performance.now() - t0 > timeoutMs) throw new Error(`${url} built no answer file for ${zone} in ${timeoutMs / 1000} s`);
    await sleep(50);
  }
}

/**
 * Waits until the server holds the zone's log tree in memory with at least `leaves` leaves (filled at the
 * first question bound to the log, `?log=1`), as it is once it has served such answers for a while; seconds
 * waited, or null for a build that does not say (no idns_zone_log_tree_leaves for the zone within 3 s).
 */
export async function logTreeReady(url, zone, leaves, timeoutMs = 120_000) {
  const t0 = performance.now();
  const prefix = `idns_zone_log_tree_leaves{zone="${zone}"} `;
  for (;;) {
    const r = await http(`${url}/metrics`).catch(() => null);
    const line = typeof r?.body === 'string' ? r.body.split('\n').find((l) => l.startsWith(prefix)) : undefined;
    if (line !== undefined && Number(line.slice(prefix.length)) >= leaves) return (performance.now() - t0) / 1000;
    if (line === undefined && performance.now() - t0 > 3000) return null;
    if (performance.now() - t0 > timeoutMs) throw new Error(`${url} held no log tree of ${leaves} leaves for ${zone} in ${timeoutMs / 1000} s`);
    await sleep(50);
  }
}

const began = performance.now();
/** A progress line on stderr, with the seconds since the run began. */
export function log(msg) {
  process.stderr.write(`[${((performance.now() - began) / 1000).toFixed(1)} s] ${msg}\n`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
export const fmt = (n) => Math.round(n).toLocaleString('en');

/** A process's resident memory in MB (VmHWM: its peak). */
export const rss = (pid, field = 'VmRSS') =>
  Number(
    /(\d+) kB/.exec(
      readFileSync(`/proc/${pid}/status`, 'utf8')
        .split('\n')
        .find((l) => l.startsWith(field)),
    )[1],
  ) / 1024;

const speedKey = generateKeyPairSync('ed25519').privateKey;
const speedDoc = { handle: 'alice@example.com', endpoint: 'https://social.example/users/alice', keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'x'.repeat(43) }] };

/**
 * How fast the machine runs a fixed single-threaded workload now (Ed25519 signatures and JSON round
 * trips, thousands a second; the median of five 100 ms samples). It blocks this process: call it between
 * measurements. Printed beside the reference's, it tells whether a run had the machine's full speed.
 */
export function speed() {
  const samples = [];
  for (let s = 0; s < 5; s++) {
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < 100) {
      sign(null, Buffer.from(JSON.stringify(speedDoc)), speedKey);
      JSON.parse(JSON.stringify(speedDoc));
      n += 1;
    }
    samples.push(n / (performance.now() - t0));
  }
  return median(samples);
}

/**
 * An unused loopback port (closed again; a server started right after takes it), from below the kernel's
 * ephemeral range: a port from binding 0 can become the local port of an outgoing connection (the load
 * generator opens many) before the server binds it (as test/support/cluster.ts does for the tests).
 */
export async function freePort() {
  const { createServer } = await import('node:net');
  const { randomInt } = await import('node:crypto');
  const bind = (port) =>
    new Promise((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(null));
      srv.listen(port, '127.0.0.1', () => {
        const bound = srv.address().port;
        srv.close(() => resolve(bound));
      });
    });
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // Not Linux: the usual default.
  }
  const top = low - 1;
  const bottom = Math.max(1024, top - 12_000);
  for (let attempt = 0; top - bottom >= 1000 && attempt < 100; attempt++) {
    const port = await bind(bottom + randomInt(top - bottom + 1));
    if (port !== null) return port;
  }
  const any = await bind(0);
  if (any === null) throw new Error('no free loopback port');
  return any;
}

/** A bare node:http server answering a fixed body of `size` bytes; resolves to its URL. */
export function baselineOf(size) {
  return start([join(root, 'bench/baseline-server.js'), String(size)], /listening (\d+)/).then((b) => `http://127.0.0.1:${b.match[1]}`);
}

/** A uniformly shuffled copy (Fisher–Yates; sorting by a random key is biased and slow on a million). */
export function shuffled(xs) {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
