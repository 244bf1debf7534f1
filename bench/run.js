// The benchmark suite: `npm run bench` (full) or `npm run bench -- --quick`. Rewrites bench/RESULTS.md.
// Every throughput figure is reported beside a bare node:http baseline measured in the same run, as a
// ratio, because the machines are small and noisy: absolute numbers move, ratios much less.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const quick = process.argv.includes('--quick');
const RUNS = quick ? 3 : 5;
const DURATION = quick ? 3 : 8;
const HANDLES = quick ? 2_000 : 20_000;

const { AppContext } = await import(`${root}dist/context.js`);
const { DEFAULT_CONFIG } = await import(`${root}dist/config.js`);
const { createLogger } = await import(`${root}dist/log.js`);
const { signChangeRequest } = await import(`${root}dist/client/requests.js`);
const { generatePrivateJwk } = await import(`${root}dist/records/keys.js`);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function start(cmd, args, ready) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')} did not start`)), 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, match: m });
      }
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
}

function load(url, paths) {
  const out = execFileSync(process.execPath, [join(root, 'bench/load.js'), JSON.stringify({ url, paths, duration: DURATION, connections: 64 })], {
    encoding: 'utf8',
  });
  return JSON.parse(out.trim().split('\n').pop());
}

async function populate(dataDir) {
  const config = { ...structuredClone(DEFAULT_CONFIG), dataDir, bootstrap: false };
  const ctx = new AppContext(config, undefined, createLogger('warn'));
  ctx.zones.create('bench.example', { servers: ['http://127.0.0.1:1'] });
  const key = generatePrivateJwk();
  const pub = { kty: key.kty, crv: key.crv, x: key.x };
  const handles = [];
  const pending = [];
  for (let i = 0; i < HANDLES; i++) {
    const handle = `user${i}@bench.example`;
    handles.push(handle);
    pending.push(ctx.changes.submit(signChangeRequest({ action: 'register', handle, endpoint: `https://social.example/users/${i}`, keys: [pub] }, key)));
  }
  await Promise.all(pending);
  await ctx.close();
  return handles;
}

const rows = [];
const dataDir = mkdtempSync(join(tmpdir(), 'idns-bench-'));
try {
  const handles = await populate(dataDir);
  // Random handles, fixed order: a shuffled list the load generator walks.
  const paths = handles.map((h) => `/v1/resolve/${h}`).sort(() => Math.random() - 0.5);

  const server = await start(process.execPath, [join(root, 'bin/idns.js'), 'serve', '--listen', '127.0.0.1:0', '--data', dataDir, '--log-level', 'error'], /idns serving on (http:\/\/\S+)/);
  const url = server.match[1];
  const sample = await (await fetch(`${url}${paths[0]}`)).text();
  const baseline = await start(process.execPath, [join(root, 'bench/baseline-server.js'), String(sample.length)], /listening (\d+)/);
  const baseUrl = `http://127.0.0.1:${baseline.match[1]}`;

  const ours = [];
  const base = [];
  for (let r = 0; r < RUNS; r++) {
    // Interleaved so that drift in the machine's load hits both alike.
    base.push(load(baseUrl, ['/']));
    ours.push(load(url, paths));
  }
  server.child.kill('SIGTERM');
  baseline.child.kill('SIGTERM');
  const errors = ours.reduce((n, o) => n + o.errors + o.non2xx, 0);
  const rps = median(ours.map((o) => o.rps));
  const brps = median(base.map((o) => o.rps));
  const p99 = median(ours.map((o) => o.p99));
  const bp99 = median(base.map((o) => o.p99));
  rows.push({
    name: `authoritative GET /v1/resolve, ${HANDLES.toLocaleString('en')}-handle zone, random handles`,
    figure: `${Math.round(rps)} req/s, p99 ${p99} ms (errors ${errors})`,
    baseline: `${Math.round(brps)} req/s, p99 ${bp99} ms`,
    ratio: `${(rps / brps).toFixed(2)} (p99 ${(p99 / Math.max(bp99, 1)).toFixed(2)}×)`,
    target: 'ratio ≥ 0.6, p99 ≤ 2× (target zone: 1,000,000 handles, needs `zone import`)',
    met: rps / brps >= 0.6 && p99 <= 2 * Math.max(bp99, 1) && errors === 0 ? 'yes' : 'no',
  });
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}

let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
} catch (err) {
  process.stderr.write(`bench: no git commit (${err.message.split('\n')[0]})\n`);
}
const table = [
  '| benchmark | figure (median of runs) | baseline (same run) | ratio | target | met |',
  '|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.name} | ${r.figure} | ${r.baseline} | ${r.ratio} | ${r.target} | ${r.met} |`),
].join('\n');
const doc = `# Benchmark results

Written by \`npm run bench${quick ? ' -- --quick' : ''}\` on ${new Date().toISOString()}, commit ${commit}.
Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}.
Each figure is the median of ${RUNS} runs of ${DURATION} s with 64 connections from a separate autocannon
process; the baseline is a bare node:http server (bench/baseline-server.js) answering a fixed body of the
same size, measured interleaved with ours in the same run.

${table}
`;
writeFileSync(join(root, 'bench/RESULTS.md'), doc);
process.stdout.write(`${table}\n`);
