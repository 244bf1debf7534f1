// Target 4 without HTTP: the primary's change processor alone, in this process, on a fresh zone of
// 20,000 imported handles, 64 pre-signed registrations in flight at a time (as the benchmark's 64
// clients). Against target 4's figure it tells how much of a registration's cost is the HTTP side.
// Usage: `npm run build && node bench/registrations-in-process.js [runs]`. Not part of `npm run bench`.
import { join } from 'node:path';
import { build, cleanup, fmt, idns, importFile, median, tmp } from './lib.js';

const { AppContext } = await import(`${build}dist/context.js`);
const { loadConfig } = await import(`${build}dist/config.js`);
const { signChangeRequest } = await import(`${build}dist/client/requests.js`);
const { generatePrivateJwk } = await import(`${build}dist/records/keys.js`);

const RUNS = Number(process.argv[2] ?? 3);
const N = 12_000;
const IN_FLIGHT = 64;
const key = generatePrivateJwk();
const pub = { kty: key.kty, crv: key.crv, x: key.x };
const rates = [];
try {
  for (let run = 0; run < RUNS; run++) {
    const dir = join(tmp('in-process'), 'data');
    await idns('zone', 'create', 'bench.example', '--server-url', 'http://127.0.0.1:1', '--data', dir, '--json');
    await idns('zone', 'import', 'bench.example', importFile('bench.example', 'user', 20_000, pub), '--data', dir, '--json');
    const ctx = new AppContext(loadConfig({ data: dir, logLevel: 'silent' }));
    const requests = Array.from({ length: N }, (_, i) =>
      signChangeRequest({ action: 'register', handle: `new${i}@bench.example`, endpoint: 'https://social.example/', keys: [pub] }, key),
    );
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < N) await ctx.changes.submit(requests[next++]);
      }),
    );
    rates.push(N / ((performance.now() - started) / 1000));
    await ctx.close();
    process.stdout.write(`run ${run + 1}: ${fmt(rates.at(-1))} registrations/s\n`);
  }
  process.stdout.write(`median of ${RUNS}: ${fmt(median(rates))} registrations/s, in-process (no HTTP), durable on return\n`);
} finally {
  cleanup();
}
