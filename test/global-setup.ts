/**
 * vitest global setup: brings up the local stack once per run (or reuses a running one, e.g.
 * after `pinrich stack up`) and hands the endpoints to tests via `inject('stack')`.
 *
 * - PINRICH_NO_STACK=1 skips the stack entirely (unit-only runs). Nothing is provided then,
 *   so `inject('stack')` returns undefined at run time despite its type; integration suites
 *   should `describe.skipIf(!inject('stack'))`.
 * - The stack is left running at the end (reused by the next run or a concurrent one) unless
 *   this run started it and PINRICH_STOP_STACK=1.
 */
import type { TestProject } from 'vitest/node';
import { stackDown, stackUp, type StackEndpoints } from '../src/stack/index.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Not provided (undefined at run time) when PINRICH_NO_STACK=1. */
    stack: StackEndpoints;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (process.env.PINRICH_NO_STACK === '1') {
    return undefined;
  }
  const log = (line: string) => console.log(`[global-setup] ${line}`);
  const started = Date.now();
  // With the Redis Cluster: the caption, enrich and score integration tests run on it too.
  const endpoints = await stackUp({ log, redisCluster: true });
  log(`stack ready in ${((Date.now() - started) / 1000).toFixed(1)} s (${endpoints.startedByUs ? 'started' : 'reused'})`);
  project.provide('stack', endpoints);

  return async () => {
    // Left running by default so the next run (and other test processes sharing it) reuse it;
    // `pinrich stack down` or PINRICH_STOP_STACK=1 stops it (.ci/run stops it at the end).
    if (endpoints.startedByUs && process.env.PINRICH_STOP_STACK === '1') await stackDown({ log });
  };
}
