import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Child-process tests run the compiled CLI, so build dist/ once before any test.
    globalSetup: ['test/support/global-setup.ts'],
    // Bounds for hangs, not for speed: tests wait on progress, each wait bounded, and a loaded machine (two
    // cores, several runs at once) must not turn slowness into failures.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: keep process-heavy files from starving each other.
    maxWorkers: 2,
    // The files of a worker share one module graph instead of importing the server afresh each (1-3 s of
    // a loaded machine per file, 60 files: npm test 295 -> 245 s). What a test changes in shared modules is
    // undone: every spy is restored before each test (restoreMocks), and each file stops its own servers,
    // processes and timers (cleanupEachTest, afterEach/afterAll hooks).
    isolate: false,
    restoreMocks: true,
  },
});
