import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Debian's Chromium, which the operator page's browser test drives through playwright-core. */
export const CHROMIUM = '/usr/bin/chromium';

/**
 * The system packages the tests need, installed when missing so that `npm test` on a fresh Debian machine
 * does its own set-up. Elsewhere (not root, or no apt-get) it stops with the exact command to run.
 */
function ensureSystemPackages(): void {
  if (existsSync(CHROMIUM)) return;
  const command = 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium';
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !existsSync('/usr/bin/apt-get')) {
    throw new Error(`the tests need Chromium at ${CHROMIUM}; install it with: sudo sh -c '${command}'`);
  }
  console.log(`[setup] ${CHROMIUM} is missing; installing it: ${command}`);
  execFileSync('/bin/sh', ['-c', command], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (!existsSync(CHROMIUM)) throw new Error(`apt-get finished but ${CHROMIUM} is still missing`);
}

/** Installs missing system packages, then compiles src/ to dist/ so tests spawning `bin/idns.js` run the code under test. */
export default function setup(): void {
  ensureSystemPackages();
  const root = fileURLToPath(new URL('../..', import.meta.url));
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
}
