// Preloaded into a server under test (`node --expose-gc --import bench/gc-on-signal.js`): on SIGUSR2, a
// full garbage collection, then `bench-gc {memoryUsage}` on stdout. Memory read after it counts what the
// process holds, not garbage V8 has not collected yet (which swamps the differences being measured).
// V8 sweeps and frees what a collection found dead on other threads, after it returns: read at once, the
// figures still counted several MB of dead buffers and heap pages (~0.5 kB a handle of target 8's
// 4,000). A second collection after a pause gives the sweepers time to finish.
process.on('SIGUSR2', () => {
  globalThis.gc();
  setTimeout(() => {
    globalThis.gc();
    process.stdout.write(`bench-gc ${JSON.stringify(process.memoryUsage())}\n`);
  }, 500);
});
