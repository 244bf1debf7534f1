// The benchmark suite: `npm run bench` (full) or `npm run bench -- --quick`. Rewrites bench/RESULTS.md.
// Every throughput figure is reported beside a baseline measured in the same run, as a ratio, because the
// machines are small and noisy: absolute numbers move, ratios much less. Load comes from separate
// processes (autocannon in bench/load.js), never from inside the server process.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const quick = process.argv.includes('--quick');
const RUNS = quick ? 3 : 5;
const DURATION = quick ? 3 : 8;
const ZONE_HANDLES = quick ? 20_000 : 200_000;
const BIN = join(root, 'bin/idns.js');

const { generatePrivateJwk } = await import(`${root}dist/records/keys.js`);
const { signChangeRequest } = await import(`${root}dist/client/requests.js`);
const { createResolver } = await import(`${root}dist/resolver/resolver.js`);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
const dirs = [];
const children = [];
const tmp = (name) => {
  const d = mkdtempSync(join(tmpdir(), `idns-bench-${name}-`));
  dirs.push(d);
  return d;
};
const idns = (...args) => execFileSync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });

function start(args, ready = /idns serving on (https?:\/\/\S+)/) {
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

function load(url, paths, extra = {}) {
  // Options go through a file: a long list of paths would not fit on a command line.
  const optionsFile = join(tmp('load'), 'options.json');
  writeFileSync(optionsFile, JSON.stringify({ url, paths, duration: DURATION, connections: 64, ...extra }));
  const out = execFileSync(process.execPath, [join(root, 'bench/load.js'), optionsFile], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return JSON.parse(out.trim().split('\n').pop());
}

const rss = (pid, field = 'VmRSS') => Number(/(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(field)))[1]) / 1024;

function row(name, figure, baseline, ratio, target, met) {
  rows.push({ name, figure, baseline, ratio, target, met: met ? 'yes' : 'no' });
  process.stderr.write(`${name}: ${figure} (${ratio}) target ${target}: ${met ? 'met' : 'not met'}\n`);
}

async function freePort() {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  return port;
}

function baselineOf(size) {
  return start([join(root, 'bench/baseline-server.js'), String(size)], /listening (\d+)/).then((b) => `http://127.0.0.1:${b.match[1]}`);
}

try {
  const key = generatePrivateJwk();
  const pub = { kty: key.kty, crv: key.crv, x: key.x };

  // 5. Bulk import.
  const primaryDir = tmp('primary');
  const kid = JSON.parse(idns('zone', 'create', 'bench.example', '--server-url', 'http://127.0.0.1:1', '--data', primaryDir, '--json')).keyThumbprints[0];
  const importFile = join(tmp('import'), 'handles.ndjson');
  writeFileSync(importFile, Array.from({ length: ZONE_HANDLES }, (_, i) => JSON.stringify({ handle: `user${i}@bench.example`, endpoint: `https://social.example/users/${i}`, keys: [pub] })).join('\n'));
  const imported = JSON.parse(idns('zone', 'import', 'bench.example', importFile, '--data', primaryDir, '--json'));
  row(`bulk import, ${ZONE_HANDLES.toLocaleString('en')} handles (zone import)`, `${imported.perSecond} handles/s`, '-', '-', '≥ 20,000 handles/s', imported.perSecond >= 20_000);

  // 1. Authoritative reads on that zone, random handles, against a bare node:http server of the same body size.
  const primary = await start([BIN, 'serve', '--listen', '127.0.0.1:0', '--data', primaryDir, '--no-bootstrap', '--log-level', 'error']);
  const url = primary.match[1];
  const paths = Array.from({ length: ZONE_HANDLES }, (_, i) => `/v1/resolve/user${i}@bench.example`).sort(() => Math.random() - 0.5);
  const sample = await (await fetch(`${url}${paths[0]}`)).text();
  const baseUrl = await baselineOf(sample.length);
  const ours = [];
  const base = [];
  for (let r = 0; r < RUNS; r++) {
    base.push(load(baseUrl, ['/']));
    ours.push(load(url, paths));
  }
  const errors = ours.reduce((n, o) => n + o.errors + o.non2xx, 0);
  const [rps, brps, p99, bp99] = [median(ours.map((o) => o.rps)), median(base.map((o) => o.rps)), median(ours.map((o) => o.p99)), median(base.map((o) => o.p99))];
  row(
    `authoritative GET /v1/resolve, ${ZONE_HANDLES.toLocaleString('en')}-handle zone, random handles`,
    `${Math.round(rps)} req/s, p99 ${p99} ms (errors ${errors})`,
    `${Math.round(brps)} req/s, p99 ${bp99} ms`,
    `${(rps / brps).toFixed(2)}, p99 ${(p99 / Math.max(bp99, 1)).toFixed(2)}×`,
    '≥ 0.6, p99 ≤ 2× (target zone: 1,000,000 handles)',
    rps / brps >= 0.6 && p99 <= 2 * Math.max(bp99, 1) && errors === 0,
  );
  row('authoritative server RSS while serving', `${Math.round(rss(primary.child.pid))} MB`, '-', '-', '≤ 250 MB', rss(primary.child.pid) <= 250);

  // 6. Full transfer to a fresh secondary, verified, until it serves; its peak RSS and the primary's growth.
  const secondaryDir = tmp('secondary');
  idns('zone', 'secondary', 'bench.example', '--primary', url, '--ds', kid, '--data', secondaryDir);
  const primaryBefore = rss(primary.child.pid);
  const t0 = performance.now();
  const secondary = await start([BIN, 'serve', '--listen', '127.0.0.1:0', '--data', secondaryDir, '--no-bootstrap', '--log-level', 'error']);
  const secondaryUrl = secondary.match[1];
  let peakPrimary = primaryBefore;
  for (;;) {
    peakPrimary = Math.max(peakPrimary, rss(primary.child.pid));
    const res = await fetch(`${secondaryUrl}/v1/resolve/user1@bench.example`).catch(() => null);
    if (res?.status === 200) break;
    if (performance.now() - t0 > 600_000) throw new Error('the transfer did not finish in 10 minutes');
    await new Promise((r) => setTimeout(r, 20));
  }
  const transferS = (performance.now() - t0) / 1000;
  const peakSecondary = rss(secondary.child.pid, 'VmHWM');
  row(
    `full transfer of ${ZONE_HANDLES.toLocaleString('en')} handles to a fresh secondary, verified, until it serves`,
    `${transferS.toFixed(1)} s; secondary peak RSS ${Math.round(peakSecondary)} MB; primary RSS growth ${Math.round(peakPrimary - primaryBefore)} MB`,
    '-',
    '-',
    '≤ 15 s for 1,000,000; peak ≤ 300 MB; growth ≤ 100 MB',
    transferS <= 15 * (ZONE_HANDLES / 1_000_000) && peakSecondary <= 300 && peakPrimary - primaryBefore <= 100,
  );

  // 4. Registrations, 64 concurrent clients, pre-signed requests (signing is the clients' work, not the server's).
  const regPaths = Array.from({ length: quick ? 20_000 : 60_000 }, (_, i) =>
    JSON.stringify({ request: signChangeRequest({ action: 'register', handle: `new${i}@bench.example`, endpoint: 'https://social.example/', keys: [pub] }, key) }),
  );
  const regFile = join(tmp('reg'), 'bodies.json');
  writeFileSync(regFile, JSON.stringify(regPaths));
  const reg = load(url, ['/v1/handles'], { method: 'POST', bodiesFile: regFile, duration: quick ? 3 : 8 });
  row('registrations, 64 concurrent clients, durable on acknowledgement', `${Math.round(reg.rps)} /s (non-2xx ${reg.non2xx})`, '-', '-', '≥ 2,000/s', reg.rps >= 2000);

  // 3. A cold lookup through root → example → social.example, against one authoritative round trip.
  const hier = {};
  for (const zone of ['.', 'example', 'social.example']) {
    const dir = tmp('zone');
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const kid = JSON.parse(idns('zone', 'create', zone, '--server-url', url, '--data', dir, '--json')).keyThumbprints[0];
    hier[zone] = { dir, port, url, kid };
  }
  idns('zone', 'delegate', '.', 'example', '--server-url', hier.example.url, '--ds', hier.example.kid, '--data', hier['.'].dir);
  idns('zone', 'delegate', 'example', 'social.example', '--server-url', hier['social.example'].url, '--ds', hier['social.example'].kid, '--data', hier.example.dir);
  const socialUsers = join(tmp('users'), 'users.ndjson');
  writeFileSync(socialUsers, Array.from({ length: 2000 }, (_, i) => JSON.stringify({ handle: `u${i}@social.example`, endpoint: `https://social.example/${i}`, keys: [pub] })).join('\n'));
  idns('zone', 'import', 'social.example', socialUsers, '--data', hier['social.example'].dir);
  for (const z of Object.values(hier)) await start([BIN, 'serve', '--listen', `127.0.0.1:${z.port}`, '--data', z.dir, '--no-bootstrap', '--log-level', 'error']);
  const colds = [];
  const direct = [];
  for (let i = 0; i < (quick ? 200 : 1000); i++) {
    const r = createResolver({ trustAnchors: { '.': [hier['.'].kid] }, rootServers: [hier['.'].url], allowPrivate: true });
    let t = performance.now();
    await r.lookup(`u${i}@social.example`);
    colds.push(performance.now() - t);
    await r.close();
    t = performance.now();
    await (await fetch(`${hier['social.example'].url}/v1/resolve/u${(i + 1000) % 2000}@social.example?zone=social.example`)).text();
    direct.push(performance.now() - t);
  }
  const coldP50 = median(colds);
  const oneTrip = median(direct);
  row('cold lookup root → example → social.example (fresh resolver each time)', `p50 ${coldP50.toFixed(2)} ms`, `one authoritative round trip p50 ${oneTrip.toFixed(2)} ms`, `${(coldP50 / oneTrip).toFixed(1)}×`, '≤ 5×', coldP50 / oneTrip <= 5);

  // 2. Resolver role over HTTP on cache hits (single and batch), against the baseline.
  const resolverPort = await freePort();
  const resolverUrl = `http://127.0.0.1:${resolverPort}`;
  await start([BIN, 'serve', '--listen', `127.0.0.1:${resolverPort}`, '--data', tmp('resolver'), '--root', hier['.'].url, '--anchor', `.=${hier['.'].kid}`, '--allow-private', '--log-level', 'error']);
  const lookupPaths = Array.from({ length: 2000 }, (_, i) => `/v1/lookup/u${i}@social.example`);
  for (const p of lookupPaths) await (await fetch(`${resolverUrl}${p}`)).text();
  const lookupSample = await (await fetch(`${resolverUrl}${lookupPaths[0]}`)).text();
  const lookupBase = await baselineOf(lookupSample.length);
  const lk = [];
  const lkb = [];
  for (let r = 0; r < RUNS; r++) {
    lkb.push(load(lookupBase, ['/']));
    lk.push(load(resolverUrl, lookupPaths));
  }
  const [lrps, lbrps] = [median(lk.map((o) => o.rps)), median(lkb.map((o) => o.rps))];
  row('resolver GET /v1/lookup, all cache hits', `${Math.round(lrps)} req/s`, `${Math.round(lbrps)} req/s`, (lrps / lbrps).toFixed(2), '≥ 0.6', lrps / lbrps >= 0.6);
  const batchBodies = Array.from({ length: 200 }, (_, b) => JSON.stringify({ handles: Array.from({ length: 100 }, (_, i) => `u${(b * 100 + i) % 2000}@social.example`) }));
  const batchFile = join(tmp('batch'), 'bodies.json');
  writeFileSync(batchFile, JSON.stringify(batchBodies));
  const batch = median(Array.from({ length: RUNS }, () => load(resolverUrl, ['/v1/lookup'], { method: 'POST', bodiesFile: batchFile, repeat: true }).rps));
  row('resolver POST /v1/lookup, 100 handles per request, cache hits', `${Math.round(batch * 100).toLocaleString('en')} handles/s`, '-', '-', '≥ 100,000 handles/s', batch * 100 >= 100_000);

  // 2. The library's resolve() on cache hits, in-process.
  const resolver = createResolver({ trustAnchors: { 'bench.example': [kid] }, rootServers: [url], allowPrivate: true });
  const hot = Array.from({ length: 1000 }, (_, i) => `user${i}@bench.example`);
  for (const h of hot) await resolver.resolve(h);
  let n = 0;
  const t1 = performance.now();
  while (performance.now() - t1 < 2000) {
    for (let i = 0; i < 1000; i++) await resolver.resolve(hot[(n + i) % 1000]);
    n += 1000;
  }
  const hitsPerS = n / ((performance.now() - t1) / 1000);
  await resolver.close();
  row("library resolve() on cache hits, in-process", `${Math.round(hitsPerS).toLocaleString('en')} lookups/s`, '-', '-', '≥ 500,000/s', hitsPerS >= 500_000);
} finally {
  for (const c of children) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
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
Throughput figures are medians of ${RUNS} runs of ${DURATION} s with 64 connections from a separate autocannon
process (bench/load.js); the baseline is a bare node:http server (bench/baseline-server.js) answering a
fixed body of the same size, measured interleaved with ours in the same run. Zone size in this run:
${ZONE_HANDLES.toLocaleString('en')} handles (the targets speak of 1,000,000; the transfer target is scaled to the zone size).

${table}

${readFileSync(join(root, 'bench/analysis.md'), 'utf8')}`;
writeFileSync(join(root, 'bench/RESULTS.md'), doc);
process.stdout.write(`${table}\n`);
