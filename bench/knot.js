// The transfer baseline of target 6: a full zone transfer (AXFR) between two Knot DNS servers on this
// machine, of as many records as the idns zone holds, timed from the secondary's process start until
// Knot's control socket reports the zone loaded at the primary's serial (knotc zone-status, not a DNS
// client polling the zone). Knot verifies nothing of what it copies; idns checks every record.
import { execFile, spawn } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, median, sleep, tmp } from './lib.js';

const execFileAsync = promisify(execFile);
const SERIAL = 2026120601;

/** True when knotd and knotc are installed (Debian's `knot`; test/support/global-setup.ts installs it). */
export async function knotAvailable() {
  try {
    await execFileAsync('knotd', ['--version']);
    await execFileAsync('knotc', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/**
 * A zone file of `records` TXT records of about `bytes` bytes of text each (the size of an idns handle
 * record), written as a stream: a million records is ~700 MB of text.
 */
async function zoneFile(path, zone, records, bytes) {
  const out = createWriteStream(path);
  const write = (s) => (out.write(s) ? undefined : new Promise((r) => out.once('drain', r)));
  await write(`$ORIGIN ${zone}.\n$TTL 300\n@ SOA ns hostmaster ${SERIAL} 3600 600 86400 60\n@ NS ns\nns A 127.0.0.1\n`);
  const chunk = 'x'.repeat(250);
  const strings = Math.max(1, Math.round(bytes / 250));
  const rdata = Array.from({ length: strings }, () => `"${chunk}"`).join(' ');
  let lines = '';
  for (let i = 0; i < records; i++) {
    lines += `user${i} TXT ${rdata}\n`;
    if (lines.length > 1 << 20) {
      await write(lines);
      lines = '';
    }
  }
  await write(lines);
  await new Promise((r) => out.end(r));
}

function knotConfig(dir, port, zone, role, primaryPort) {
  const lines = [
    'server:',
    `  rundir: "${dir}"`,
    `  listen: 127.0.0.1@${port}`,
    'log:',
    '  - target: stderr',
    '    any: warning',
    'database:',
    `  storage: "${dir}"`,
    'control:',
    `  listen: "${join(dir, 'knot.sock')}"`,
  ];
  if (role === 'primary') {
    lines.push('acl:', '  - id: transfer', '    address: 127.0.0.1', '    action: transfer');
    lines.push('zone:', `  - domain: ${zone}`, `    storage: "${dir}"`, `    file: "${zone}.zone"`, '    acl: transfer');
  } else {
    lines.push('remote:', '  - id: primary', `    address: 127.0.0.1@${primaryPort}`);
    lines.push('acl:', '  - id: notify', '    address: 127.0.0.1', '    action: notify');
    // As a secondary is run by default: the copy is kept in Knot's journal and flushed to a zone file.
    lines.push('zone:', `  - domain: ${zone}`, `    storage: "${dir}"`, `    file: "${zone}.zone"`, '    master: primary', '    acl: notify');
  }
  const config = join(dir, 'knot.conf');
  writeFileSync(config, lines.join('\n') + '\n');
  return config;
}

function startKnot(config) {
  const child = spawn('knotd', ['-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  return { child, output: () => err };
}

async function stopKnot(k) {
  if (k.child.exitCode !== null || k.child.signalCode !== null) return;
  const exited = new Promise((r) => k.child.once('exit', r));
  k.child.kill('SIGTERM');
  const timer = setTimeout(() => k.child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The serial knotc reports for the zone, or null while it has none (not started, not loaded). */
async function loadedSerial(dir, zone) {
  try {
    const { stdout } = await execFileAsync('knotc', ['-s', join(dir, 'knot.sock'), 'zone-status', zone]);
    const m = /serial: (\d+)/.exec(stdout);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Seconds for a fresh Knot secondary, from its process start, to hold a zone of `records` records
 * transferred from a Knot primary (median of `runs`).
 */
export async function knotAxfrSeconds(records, runs, bytes = 600) {
  const zone = 'bench.example';
  const pdir = tmp('knot-primary');
  await zoneFile(join(pdir, `${zone}.zone`), zone, records, bytes);
  const primaryPort = await freePort();
  const primary = startKnot(knotConfig(pdir, primaryPort, zone, 'primary'));
  try {
    const loadStart = performance.now();
    while ((await loadedSerial(pdir, zone)) !== SERIAL) {
      if (performance.now() - loadStart > 600_000) throw new Error(`knotd did not load the primary zone:\n${primary.output()}`);
      await sleep(50);
    }
    const times = [];
    for (let r = 0; r < runs; r++) {
      const sdir = tmp('knot-secondary');
      const config = knotConfig(sdir, await freePort(), zone, 'secondary', primaryPort);
      const t0 = performance.now();
      const secondary = startKnot(config);
      try {
        while ((await loadedSerial(sdir, zone)) !== SERIAL) {
          if (performance.now() - t0 > 600_000) throw new Error(`the Knot secondary did not transfer the zone:\n${secondary.output()}`);
          await sleep(5);
        }
        times.push((performance.now() - t0) / 1000);
      } finally {
        await stopKnot(secondary);
      }
    }
    return median(times);
  } finally {
    await stopKnot(primary);
  }
}
