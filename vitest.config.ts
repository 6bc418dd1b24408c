import { defineConfig } from 'vitest/config';

/**
 * One vitest run for unit and integration tests. Integration tests share one local stack
 * (started once by test/global-setup.ts), so files run one at a time: the CI machine has
 * 2 cores, and a shared broker is easier to reason about without parallel files.
 */
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Generous: the first Kafka produce/consume on a new topic waits for a group join, and a
    // cold start may resolve the Kafka jars with Maven inside global setup.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    fileParallelism: false,
    pool: 'forks',
  },
});
