import { defineConfig } from 'vitest/config';
import { inkPatchVitePlugin } from './scripts/ink-patches.mjs';

export default defineConfig({
  test: {
    projects: [
      {
        // Components render through the Ink the bundle ships (scripts/ink-patches.mjs): Ink and the
        // testing library that imports it go through Vite, which applies the same patches.
        plugins: [inkPatchVitePlugin()],
        test: {
          name: 'unit',
          server: { deps: { inline: [/[\\/]node_modules[\\/]ink[\\/]/, 'ink-testing-library'] } },
          sequence: { groupOrder: 0 },
          include: ['tests/unit/**/*.test.{ts,tsx}'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'integration',
          sequence: { groupOrder: 1 },
          include: ['tests/integration/**/*.test.ts'],
          globalSetup: ['tests/helpers/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // Real processes, ports and signals: two files at a time on a 2-core machine.
          maxWorkers: 2,
        },
      },
      {
        test: {
          name: 'e2e',
          sequence: { groupOrder: 2 },
          include: ['tests/e2e/**/*.test.ts'],
          globalSetup: ['tests/helpers/global-setup.ts'],
          testTimeout: 90_000,
          hookTimeout: 90_000,
          maxWorkers: 1,
        },
      },
    ],
  },
});
