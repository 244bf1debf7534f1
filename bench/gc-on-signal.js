// Preloaded into a server under test (`node --expose-gc --import bench/gc-on-signal.js`): on SIGUSR2, a
// full garbage collection, then `bench-gc {memoryUsage}` on stdout. Memory read after it counts what the
// process holds, not garbage V8 has not collected yet (which swamps the differences being measured).
process.on('SIGUSR2', () => {
  globalThis.gc();
  process.stdout.write(`bench-gc ${JSON.stringify(process.memoryUsage())}\n`);
});
