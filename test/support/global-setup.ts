import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Debian's Chromium, which the operator page's browser test drives through playwright-core. */
export const CHROMIUM = '/usr/bin/chromium';

/** Binaries the tests run, and the Debian package of each: Chromium (the operator page's browser test), knotd,
 * knotc, kdig and unbound (the DNS lab of the discovery tests, test/support/dns-lab.ts). */
const SYSTEM_BINARIES: { path: string; pkg: string }[] = [
  { path: CHROMIUM, pkg: 'chromium' },
  { path: '/usr/sbin/knotd', pkg: 'knot' },
  { path: '/usr/sbin/knotc', pkg: 'knot' },
  { path: '/usr/bin/kdig', pkg: 'knot-dnsutils' },
  { path: '/usr/sbin/unbound', pkg: 'unbound' },
  { path: '/usr/sbin/unbound-control', pkg: 'unbound' },
];

/**
 * The system packages the tests need, installed (one apt-get for all that are missing) so that `npm test`
 * on a fresh Debian machine does its own set-up. Elsewhere (not root, or no apt-get) it stops with the
 * exact command to run.
 */
function ensureSystemPackages(): void {
  const missing = SYSTEM_BINARIES.filter((b) => !existsSync(b.path));
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((b) => b.pkg))];
  const command = `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${packages.join(' ')}`;
  const paths = missing.map((b) => b.path).join(', ');
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !existsSync('/usr/bin/apt-get')) {
    throw new Error(`the tests need ${paths}; install them with: sudo sh -c '${command}'`);
  }
  console.log(`[setup] ${paths} missing; installing: ${command}`);
  execFileSync('/bin/sh', ['-c', command], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const still = SYSTEM_BINARIES.filter((b) => !existsSync(b.path));
  if (still.length > 0) throw new Error(`apt-get finished but ${still.map((b) => b.path).join(', ')} still missing`);
}

/** Installs missing system packages, then compiles src/ to dist/ so tests spawning `bin/idns.js` run the code under test. */
export default function setup(): void {
  ensureSystemPackages();
  const root = fileURLToPath(new URL('../..', import.meta.url));
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
}
