import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * The fault suite (`npm run test:faults`, run by CI after `npm test`): the whole pipeline as
 * real worker processes on the real local services, with faults injected, each run compared
 * with a clean run of the same input. Slow by nature (an outage lasts 30 s), so it is not part
 * of `npm test`; files run one at a time on the shared stack, like the integration tests.
 */
const root = fileURLToPath(new URL('../..', import.meta.url));

export default defineConfig({
  root,
  test: {
    include: ['test/faults/**/*.fault.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 420_000,
    hookTimeout: 420_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
