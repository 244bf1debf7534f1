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
  },
});
