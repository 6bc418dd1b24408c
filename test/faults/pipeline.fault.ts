/**
 * Faults against the whole pipeline (caption -> enrich -> score -> dump, each a real worker
 * process) on the real local services. Every case runs the same input as a clean run and must
 * end with exactly the clean run's result:
 * - the same enriched document content for every pin (version and updated_at may differ);
 * - every pair labelled, with the clean run's label (all copies of a pair's label agree);
 * - every label record in exactly one dump row;
 * - the same dead letters, and no caption failed that did not fail in the clean run.
 */
import { createRandom } from '../../src/demo/sample.js';
import { startModelServer, type ModelServer } from '../../src/model-server/server.js';
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics as topicNames } from '../../src/config.js';
import { stack } from '../support/harness.js';
import { useStackS3Credentials } from '../support/labels.js';
import {
  caughtUp,
  committedOffsets,
  compare,
  faultEnv,
  makeInput,
  readAll,
  REPO,
  runPipeline,
  sleep,
  startPrivateKafka,
  startPrivateRedis,
  startProxy,
  type Fleet,
  type Input,
  logDigest,
  type Outcome,
  type WorkerName,
} from './support/fleet.js';

let server: ModelServer;
let port = 0;
let input: Input;
let clean: Outcome;

async function startServer(): Promise<void> {
  server = await startModelServer({ port, defaults: { latencyMs: 20 } });
  port = Number(new URL(server.baseUrl).port);
}
const baseUrl = () => `http://127.0.0.1:${port}/v1`;

beforeAll(async () => {
  useStackS3Credentials(stack());
  await startServer();
  input = makeInput();
  const run = await runPipeline(faultEnv(baseUrl()), input);
  clean = run.outcome;
  console.log(`[faults] clean run: ${clean.docs.size} documents, ${clean.labels.size} labelled pairs, ${clean.dump.rows} dump rows, ${clean.deadLetters.size} dead letters, ${(run.ms / 1000).toFixed(0)} s`);
  // The clean run itself must be whole, or comparing with it proves nothing.
  expect(clean.labels.size).toBe(input.pairs.length);
  expect(clean.dump).toEqual({ rows: clean.labelRecords, unique: clean.labelRecords, missing: 0, extra: 0 });
  expect([...clean.docs.values()].filter((d) => d !== null).length).toBeGreaterThan(80);
});

afterAll(async () => {
  await server?.close();
});

function expectSameAsClean(what: string, run: { outcome: Outcome; ms: number; fleet: Fleet }): void {
  const diffs = compare(clean, run.outcome);
  console.log(`[faults] ${what}: ${diffs.length ? `${diffs.length} differences` : 'same as the clean run'}, ${(run.ms / 1000).toFixed(0)} s`);
  if (diffs.length) console.log(`[faults] ${what}: the workers' warnings and errors:\n${logDigest(run.fleet)}`);
  expect(diffs, diffs.join('\n')).toEqual([]);
}

/** SIGKILL `name` `times` times at random moments, restarting it right away each time. */
async function chaos(fleet: Fleet, config: { groupPrefix: string }, name: WorkerName, times: number, seed: number, midRun: string[]): Promise<void> {
  const r = createRandom(seed);
  for (let i = 0; i < times; i++) {
    await sleep(400 + r.int(1_800));
    await fleet.kill(name, 'SIGKILL');
    midRun.push(name);
    fleet.start([name]);
  }
  void config;
}

describe('fault suite: the whole pipeline compared with a clean run', () => {
  it('SIGKILL of every worker, five times each, at random points', async () => {
    const killed: string[] = [];
    const run = await runPipeline(faultEnv(baseUrl()), input, {
      phase1: async ({ fleet, config }) => {
        await Promise.all([chaos(fleet, config, 'caption', 5, 1, killed), chaos(fleet, config, 'enrich', 5, 2, killed)]);
      },
      phase2: async ({ fleet, config }) => {
        await Promise.all([chaos(fleet, config, 'score', 5, 3, killed), chaos(fleet, config, 'dump', 5, 4, killed)]);
      },
    });
    expect(run.fleet.kills).toBe(20);
    for (const w of ['caption', 'enrich', 'score', 'dump']) expect(killed.filter((k) => k === w)).toHaveLength(5);
    expectSameAsClean('SIGKILL x20', run);
  });

  it('the Kafka broker down while the workers start, then restarted mid-run in both phases', async () => {
    const kafka = await startPrivateKafka();
    try {
      const run = await runPipeline(faultEnv(baseUrl(), { PINRICH_KAFKA_BROKERS: kafka.brokers.join(',') }), input, {
        // The workers start (connect, check the enrich state, join) against a stopped broker:
        // they must wait for it, not exit.
        beforeStart: () => kafka.down(),
        phase1: async () => {
          await sleep(8_000);
          await kafka.up();
          await sleep(3_000);
          await kafka.restart();
        },
        phase2: async () => {
          await sleep(2_000);
          await kafka.restart();
        },
      });
      // The scenario did hit start-up: every worker met the stopped broker, waited, and none
      // exited (runPipeline checks that throughout).
      const refused = run.fleet.history.filter((p) => p.log().includes('ECONNREFUSED')).map((p) => p.name);
      expect(new Set(refused)).toEqual(new Set(['caption', 'enrich', 'score', 'dump']));
      expectSameAsClean('Kafka broker restarts', run);
    } finally {
      await kafka.stop();
    }
  });

  it('Redis restarted empty mid-run: workers hold until `pinrich enrich rebuild`, then finish', async () => {
    const redis = await startPrivateRedis();
    const rebuild = (env: Record<string, string>) =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ['bin/pinrich.js', 'enrich', 'rebuild'], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
        child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`enrich rebuild exited ${code}:\n${out}`))));
      });
    const endSum = async (config: Parameters<typeof readAll>[0], topic: string) => (await readAll(config, topic)).length;
    try {
      const env = faultEnv(baseUrl(), { PINRICH_REDIS_URL: redis.url });
      const run = await runPipeline(env, input, {
        phase1: async ({ config, fleet }) => {
          const t = topicNames(config);
          // Once documents are flowing, Redis loses everything.
          for (let i = 0; i < 100 && (await endSum(config, t.enriched).catch(() => 0)) < 10; i++) await sleep(200);
          await redis.restart();
          // The enrich worker must not publish from the empty state: nothing new on pins.enriched.
          await sleep(3_000);
          const before = await endSum(config, t.enriched);
          await sleep(4_000);
          expect(await endSum(config, t.enriched)).toBe(before);
          expect(fleet.procs.get('enrich')!.log()).toContain('enrich state is missing');
          const out = await rebuild(env);
          expect(out).toContain('rebuild: done');
        },
        phase2: async ({ config, fleet }) => {
          const t = topicNames(config);
          for (let i = 0; i < 100 && (await endSum(config, t.labels).catch(() => 0)) < 30; i++) await sleep(200);
          await redis.restart();
          // Pairs whose document is gone must wait, not be dead-lettered as doc_not_found.
          await sleep(5_000);
          expect(fleet.procs.get('score')!.log() + fleet.procs.get('enrich')!.log()).toContain('enrich state is missing');
          await rebuild(env);
        },
      });
      expectSameAsClean('Redis restarts + rebuild', run);
    } finally {
      await redis.stop();
    }
  });

  it('the model server down for 30 s, then back', async () => {
    const outage = async (ms: number, afterMs: number) => {
      await sleep(afterMs);
      await server.close();
      await sleep(ms);
      await startServer();
    };
    const run = await runPipeline(faultEnv(baseUrl()), input, {
      phase1: () => outage(30_000, 1_500),
      phase2: () => outage(10_000, 1_000),
    });
    expectSameAsClean('model server down 30 s (captions) and 10 s (teacher)', run);
  });

  it('sustained 429s from the model server', async () => {
    const storm = async (ms: number) => {
      await sleep(1_000);
      server.script({ kind: 'any', times: Infinity, reply: { status: 429, retryAfterMs: 300 } });
      await sleep(ms);
      server.clearScripts();
    };
    const before = server.stats().byStatus['429'] ?? 0;
    const run = await runPipeline(faultEnv(baseUrl()), input, { phase1: () => storm(10_000), phase2: () => storm(8_000) });
    expect((server.stats().byStatus['429'] ?? 0) - before).toBeGreaterThan(20);
    expectSameAsClean('sustained 429s', run);
  });

  it('model answers slower than the request timeout', async () => {
    const slow = async (ms: number) => {
      await sleep(1_000);
      server.script({ kind: 'any', times: Infinity, reply: { delayMs: 2_500 } });
      await sleep(ms);
      server.clearScripts();
    };
    const run = await runPipeline(faultEnv(baseUrl(), { PINRICH_MODEL_TIMEOUT_MS: '1000' }), input, { phase1: () => slow(8_000), phase2: () => slow(8_000) });
    expectSameAsClean('answers slower than the timeout', run);
  });

  it('S3 unavailable for 20 s: the dump worker holds its offsets and catches up', async () => {
    const proxy = await startProxy(stack().s3.endpoint);
    try {
      const run = await runPipeline(faultEnv(baseUrl(), { PINRICH_S3_ENDPOINT: proxy.url }), input, {
        phase2: async ({ config, fleet }) => {
          const t = topicNames(config);
          await sleep(1_500);
          await proxy.cut();
          await sleep(2_000);
          const held = await committedOffsets(config, `${config.groupPrefix}.dump`, t.labels);
          await sleep(18_000);
          // Labels kept arriving, but nothing was committed past what is on S3.
          expect(await committedOffsets(config, `${config.groupPrefix}.dump`, t.labels)).toEqual(held);
          expect(await caughtUp(config, `${config.groupPrefix}.dump`, [t.labels])).toBe(false);
          expect(fleet.procs.get('dump')!.log()).toMatch(/S3 (put|list)/);
          await proxy.restore();
        },
      });
      expectSameAsClean('S3 down 20 s', run);
    } finally {
      await proxy.close();
    }
  });
});
