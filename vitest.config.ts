import { defineConfig } from 'vitest/config';

/**
 * One vitest run for unit and integration tests. Integration tests share one local stack
 * (started once by test/global-setup.ts), so files run one at a time: the CI machine has
 * 2 cores, and a shared broker is easier to reason about without parallel files.
 *
 * Two projects: `single` is every test on the stack's single Redis; `redis-cluster` runs the
 * caption, enrich and score integration tests (and the pipeline they drive) a second time on the
 * stack's 3-master Redis Cluster (PINRICH_TEST_REDIS=cluster, read by test/support/harness.ts).
 * `npx vitest run --project single` skips the second pass.
 */
const CLUSTER_FILES = ['test/integration/pipeline.test.ts', 'test/integration/score.test.ts'];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    // Generous: the first Kafka produce/consume on a new topic waits for a group join, and a
    // cold start may resolve the Kafka jars with Maven inside global setup.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    fileParallelism: false,
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'single', include: ['test/**/*.test.ts'] } },
      { extends: true, test: { name: 'redis-cluster', include: CLUSTER_FILES, env: { PINRICH_TEST_REDIS: 'cluster' } } },
    ],
  },
});
