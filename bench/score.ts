/**
 * score: labels per second through one score worker process, against the project's model
 * server (src/model-server, its own process) answering instantly and with 200 ms latency. With
 * latency the ceiling is in-flight limit / latency (PINRICH_TEACHER_CONCURRENCY / 0.2 s), and
 * the figure is the achieved share of it.
 *
 * Documents are written to Redis directly (as the enrich worker leaves them); the label cache
 * starts empty, every pair is a distinct prompt, so every label is a model call.
 * Timed window: worker joined (backlog on the topic) -> every pair offset committed.
 *
 *   tsx bench/score.ts [--quick] [--profile]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createRedisFromConfig } from '../src/adapters/redis/client.js';
import { redisKeys } from '../src/adapters/redis/keys.js';
import { buildDocument } from '../src/core/document.js';
import { benchEnv, benchStack, configOf, createLagProbe, figure, loadBacklog, mb, REPO_ROOT, round, setupTopics, standalone, startWorkerChild, waitUntil, type BenchOptions, type BenchResult, type Figure } from './lib.js';
import { pairMessage, pinId } from './data.js';

/** The project's model server in its own process; resolves with its base URL. */
export async function startModelServerProcess(latencyMs: number): Promise<{ baseUrl: string; stop: () => Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', ...(process.env.BENCH_PROFILE_SERVER_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_SERVER_DIR}`] : []), join(REPO_ROOT, 'src', 'model-server', 'main.ts'), '--latency-ms', String(latencyMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const baseUrl = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', (line) => resolve((JSON.parse(line) as { baseUrl: string }).baseUrl));
    child.once('exit', (code) => reject(new Error(`model server exited with ${code}`)));
  });
  return {
    baseUrl,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function scoreRun(opts: BenchOptions, latencyMs: number, pairs: number, overrides: Record<string, string> = {}): Promise<{ rate: number; seconds: number; peakRss: number; concurrency: number; stats: unknown; profile: BenchResult['profile'] }> {
  const perPin = 3;
  const stack = await benchStack(opts.log);
  const server = await startModelServerProcess(latencyMs);
  const env = benchEnv(stack, { PINRICH_TEACHER_BASE_URL: server.baseUrl, ...overrides });
  const config = configOf(env);
  const t = await setupTopics(config);
  const redis = createRedisFromConfig(config);
  const probe = await createLagProbe(config);
  try {
    // The enrich worker's output, written directly: one document per pin, and the state marker.
    const pins = Math.ceil(pairs / perPin);
    const now = new Date().toISOString();
    for (let from = 0; from < pins; from += 1_000) {
      const pipe = redis.pipeline();
      for (let p = from; p < Math.min(pins, from + 1_000); p++) {
        const id = pinId(p);
        const content = buildDocument(
          id,
          {
            pin: { title: `Pin ${p} lemon garlic pasta`, description: 'A quick dinner with fresh lemon, garlic and parmesan. '.repeat(3), image_key: null, link_url: null, link_title: 'Weeknight pasta', link_description: 'Creamy, bright and ready before the water boils twice.', language: 'en' },
            caption: null,
            boards: [{ text: 'dinner ideas', count: 3 }],
            queries: [{ text: 'easy pasta recipes', count: 2 }],
            engagementCount: 5,
          },
          config.enrichTopK,
        );
        pipe.set(redisKeys(config.redisKeyPrefix).document(id), JSON.stringify({ ...content, version: 1, updated_at: now }));
      }
      await pipe.exec();
    }
    await redis.set(redisKeys(config.redisKeyPrefix).enrich.stateMarker(), JSON.stringify({ source: 'fresh', at: now }));
    await loadBacklog(config, t.pairs, pairs, (k) => pairMessage(k, perPin));

    const child = await startWorkerChild('score', env, { profile: opts.profile, profileName: `score-${latencyMs}ms` });
    opts.log(`score (${latencyMs} ms): worker ${child.pid} joined; timing ${pairs.toLocaleString('en')} pairs`);
    const doneAt = await waitUntil('score to catch up', async () => (await probe.lag(`${config.groupPrefix}.score`, [t.pairs])) === 0, 900_000, 50);
    const stopped = await child.stop();
    const seconds = (doneAt - child.readyAt) / 1000;
    return { rate: pairs / seconds, seconds, peakRss: stopped.peakRss, concurrency: config.teacherConcurrency, stats: stopped.stats, profile: stopped.profile };
  } finally {
    await probe.close();
    redis.disconnect();
    await server.stop();
  }
}

export async function runScore(opts: BenchOptions): Promise<BenchResult> {
  const instantPairs = opts.quick ? 5_000 : 30_000;
  const slowPairs = opts.quick ? 1_600 : 9_600;
  const command = 'tsx bench/score.ts (worker: node bench/child.ts score; model server: tsx src/model-server/main.ts --latency-ms N)';
  const instant = await scoreRun(opts, 0, instantPairs);
  const slow = await scoreRun({ ...opts, profile: false }, 200, slowPairs);
  // The optional completions teacher: prompt arrays, several pairs per request.
  const batchedEnv = { PINRICH_TEACHER_API: 'completions', PINRICH_TEACHER_BATCH: '16' };
  const batched = await scoreRun({ ...opts, profile: false }, 0, instantPairs, batchedEnv);
  const ceiling = slow.concurrency / 0.2;
  const figures: Figure[] = [
    figure({ name: 'score throughput, instant model server', value: round(instant.rate), unit: 'labels/s', command, settings: { pairs: instantPairs, pairsPerPin: 3, latencyMs: 0, concurrency: instant.concurrency }, target: { op: '>=', value: 2_000 } }),
    figure({ name: 'score throughput, 200 ms model server', value: round(slow.rate), unit: 'labels/s', command, settings: { pairs: slowPairs, pairsPerPin: 3, latencyMs: 200, concurrency: slow.concurrency, ceiling } }),
    figure({ name: 'score 200 ms: achieved / (in-flight limit / latency)', value: round((slow.rate / ceiling) * 100, 1), unit: '%', command, settings: { concurrency: slow.concurrency, latencyMs: 200, ceiling }, target: { op: '>=', value: 90 } }),
    figure({ name: 'score throughput, instant model server, completions API (16 prompts per request)', value: round(batched.rate), unit: 'labels/s', command, settings: { pairs: instantPairs, pairsPerPin: 3, latencyMs: 0, concurrency: batched.concurrency, ...batchedEnv }, target: { op: '>=', value: 2_000 } }),
    figure({ name: 'score peak RSS', value: mb(Math.max(instant.peakRss, slow.peakRss, batched.peakRss)), unit: 'MB', command, settings: { pairs: instantPairs }, target: { op: '<=', value: 300 } }),
  ];
  return { bench: 'score', figures, profile: instant.profile, details: { instant: { seconds: round(instant.seconds, 2), stats: instant.stats }, slow: { seconds: round(slow.seconds, 2), stats: slow.stats }, completions: { seconds: round(batched.seconds, 2), stats: batched.stats } } };
}

standalone(import.meta.url, runScore);
