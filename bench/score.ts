/**
 * score: labels per second through one score worker process, against the project's model
 * server (src/model-server, its own process) answering instantly and with 200 ms latency. With
 * latency the ceiling is in-flight limit / latency (PINRICH_TEACHER_CONCURRENCY / 0.2 s), and
 * the figure is the achieved share of it, read with the stage's counters (the latency the worker
 * saw per call, how full its slots were kept) and beside what a do-nothing client gets from the
 * same server right after (bareClientRate).
 *
 * Documents are written to Redis directly (as the enrich worker leaves them); the label cache
 * starts empty, every pair is a distinct prompt, so every label is a model call.
 * Timed window: worker joined (backlog on the topic) -> every pair offset committed.
 *
 * CPU seconds per label of the worker and of the model server over the timed window (from
 * /proc/<pid>/stat) are reported too: on a shared machine they are the load-robust measure.
 *
 *   tsx bench/score.ts [--quick] [--profile]     (BENCH_SCORE_MODES=chat,slow,completions: a subset)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { createInterface } from 'node:readline';
import type { EnrichedDocument } from '../schemas/enriched-document.js';
import { createRedisFromConfig } from '../src/adapters/redis/client.js';
import { redisKeys } from '../src/adapters/redis/keys.js';
import type { Config } from '../src/config.js';
import { buildDocument } from '../src/core/document.js';
import { buildTeacherPrompt, DEFAULT_PROMPT_LIMITS } from '../src/core/teacher-prompt.js';
import { benchEnv, dropRun, benchStack, configOf, createLagProbe, figure, loadBacklog, mb, REPO_ROOT, round, setupTopics, standalone, startWorkerChild, waitUntil, type BenchOptions, type BenchResult, type Figure } from './lib.js';
import { pairMessage, pinId } from './data.js';

/** The project's model server in its own process; resolves with its base URL. */
export async function startModelServerProcess(latencyMs: number): Promise<{ baseUrl: string; pid: number; stop: () => Promise<void> }> {
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
    pid: child.pid!,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat; 0 when gone. */
function cpuSeconds(pid: number): number {
  try {
    // Fields after the ")" of the command name: state is 3rd, utime 14th, stime 15th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** The enrich worker's output for bench pin `p`, as score reads it. */
function benchDocument(p: number, topK: number, now: string): EnrichedDocument {
  const content = buildDocument(
    pinId(p),
    {
      pin: { title: `Pin ${p} lemon garlic pasta`, description: 'A quick dinner with fresh lemon, garlic and parmesan. '.repeat(3), image_key: null, link_url: null, link_title: 'Weeknight pasta', link_description: 'Creamy, bright and ready before the water boils twice.', language: 'en' },
      caption: null,
      boards: [{ text: 'dinner ideas', count: 3 }],
      queries: [{ text: 'easy pasta recipes', count: 2 }],
      engagementCount: 5,
    },
    topK,
  );
  return { ...content, version: 1, updated_at: now };
}

/**
 * What the model server gives a client that does nothing but call it: PINRICH_TEACHER_CONCURRENCY
 * loops, each sending the teacher's chat request for a bench pin over a keep-alive node:http
 * socket and the next one as soon as the answer is read, for `calls` calls in all. Its calls/s
 * against concurrency / latency is the ceiling of this server on this machine (its own work, the
 * timers, the answers of a whole in-flight wave arriving at once), which the score worker is
 * read against.
 */
async function bareClientRate(baseUrl: string, config: Config, calls: number): Promise<number> {
  const agent = new HttpAgent({ keepAlive: true, maxSockets: config.teacherConcurrency });
  const url = new URL(`${baseUrl.replace(/\/$/, '')}/chat/completions`);
  const doc = benchDocument(0, config.enrichTopK, new Date().toISOString());
  // Every request body made before the clock starts: the timed loops only send and read.
  const bodies = Array.from({ length: calls }, (_, i) => {
    const prompt = buildTeacherPrompt(doc, `easy pasta recipes ${i}`, DEFAULT_PROMPT_LIMITS);
    return Buffer.from(JSON.stringify({ model: config.teacherModel, temperature: 0, max_tokens: config.teacherMaxTokens, messages: prompt.messages, logprobs: true, top_logprobs: config.teacherTopLogprobs }));
  });
  const post = (body: Buffer) =>
    new Promise<void>((resolve, reject) => {
      const req = httpRequest(url, { method: 'POST', agent, headers: { authorization: `Bearer ${config.teacherApiKey || 'bench'}`, 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`bench: model server answered ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 200)}`))));
      });
      req.on('error', reject);
      req.end(body);
    });
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: config.teacherConcurrency }, async () => {
      while (next < calls) await post(bodies[next++]!);
    }),
  );
  agent.destroy();
  return calls / ((performance.now() - started) / 1000);
}

interface ScoreRun {
  rate: number;
  seconds: number;
  peakRss: number;
  peakAnon: number;
  concurrency: number;
  /** Worker CPU milliseconds per label over the timed window. */
  workerCpuMsPerLabel: number;
  /** Model server CPU milliseconds per label over the timed window. */
  serverCpuMsPerLabel: number;
  stats: unknown;
  profile: BenchResult['profile'];
  /** Calls/s of bareClientRate against the same server, after the worker's run (slow server only). */
  bareRate?: number;
}

async function scoreRun(opts: BenchOptions, latencyMs: number, pairs: number, overrides: Record<string, string> = {}): Promise<ScoreRun> {
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
        pipe.set(redisKeys(config.redisKeyPrefix).document(pinId(p)), JSON.stringify(benchDocument(p, config.enrichTopK, now)));
      }
      await pipe.exec();
    }
    await redis.set(redisKeys(config.redisKeyPrefix).enrich.stateMarker(), JSON.stringify({ source: 'fresh', at: now }));
    await loadBacklog(config, t.pairs, pairs, (k) => pairMessage(k, perPin));

    const child = await startWorkerChild('score', env, { profile: opts.profile, profileName: `score-${latencyMs}ms` });
    const cpuAtStart = { worker: cpuSeconds(child.pid), server: cpuSeconds(server.pid) };
    opts.log(`score (${latencyMs} ms): worker ${child.pid} joined; timing ${pairs.toLocaleString('en')} pairs`);
    // BENCH_SCORE_TIMELINE=1: records handled and model calls made, every 250 ms (where the time goes).
    const timeline = process.env.BENCH_SCORE_TIMELINE
      ? setInterval(() => {
          const p = child.last();
          if (p) opts.log(`  +${Date.now() - child.readyAt} ms: records ${p.records}, model calls ${String((p.stats as { modelCalls?: number } | undefined)?.modelCalls)}`);
        }, 250)
      : undefined;
    const doneAt = await waitUntil('score to catch up', async () => (await probe.lag(`${config.groupPrefix}.score`, [t.pairs])) === 0, 900_000, 50).finally(() => clearInterval(timeline));
    const cpu = { worker: cpuSeconds(child.pid) - cpuAtStart.worker, server: cpuSeconds(server.pid) - cpuAtStart.server };
    const stopped = await child.stop();
    const seconds = (doneAt - child.readyAt) / 1000;
    // Against a slow server: what a client doing nothing else gets from the same server process.
    const bareRate = latencyMs > 0 ? await bareClientRate(server.baseUrl, config, Math.min(pairs, 3_200)) : undefined;
    const run = {
      rate: pairs / seconds,
      seconds,
      peakRss: stopped.peakRss,
      peakAnon: stopped.peakAnon,
      concurrency: config.teacherConcurrency,
      workerCpuMsPerLabel: round((cpu.worker * 1000) / pairs, 3),
      serverCpuMsPerLabel: round((cpu.server * 1000) / pairs, 3),
      stats: stopped.stats,
      profile: stopped.profile,
      bareRate,
    };
    opts.log(`score (${latencyMs} ms${overrides.PINRICH_TEACHER_API ? `, ${overrides.PINRICH_TEACHER_API}` : ''}): ${round(run.rate)} labels/s in ${round(seconds, 2)} s; CPU per label: worker ${run.workerCpuMsPerLabel} ms, model server ${run.serverCpuMsPerLabel} ms; peak RSS ${mb(run.peakRss)} MB`);
    return run;
  } finally {
    await probe.close();
    redis.disconnect();
    await server.stop();
    await dropRun(config, opts.log);
  }
}

type Mode = 'chat' | 'slow' | 'completions';

export async function runScore(opts: BenchOptions): Promise<BenchResult> {
  const instantPairs = opts.quick ? 5_000 : 30_000;
  const slowPairs = opts.quick ? 1_600 : 9_600;
  const command = 'tsx bench/score.ts (worker: node bench/child.ts score; model server: tsx src/model-server/main.ts --latency-ms N)';
  const modes = new Set((process.env.BENCH_SCORE_MODES ?? 'chat,slow,completions').split(',').map((m) => m.trim()) as Mode[]);
  // The optional completions teacher: prompt arrays, several pairs per request.
  const batchedEnv = { PINRICH_TEACHER_API: 'completions', PINRICH_TEACHER_BATCH: '16' };
  const instant = modes.has('chat') ? await scoreRun(opts, 0, instantPairs) : undefined;
  const slow = modes.has('slow') ? await scoreRun({ ...opts, profile: false }, 200, slowPairs) : undefined;
  const batched = modes.has('completions') ? await scoreRun({ ...opts, profile: opts.profile && !instant }, 0, instantPairs, batchedEnv) : undefined;
  const cpu = (r: ScoreRun) => ({ workerCpuMsPerLabel: r.workerCpuMsPerLabel, serverCpuMsPerLabel: r.serverCpuMsPerLabel });
  const figures: Figure[] = [];
  if (instant) {
    figures.push(figure({ name: 'score throughput, instant model server', value: round(instant.rate), unit: 'labels/s', command, settings: { pairs: instantPairs, pairsPerPin: 3, latencyMs: 0, concurrency: instant.concurrency, ...cpu(instant) }, target: { op: '>=', value: 2_000 } }));
  }
  if (slow) {
    const ceiling = slow.concurrency / 0.2;
    // Where the in-flight time went (the stage's own counters): the latency the worker saw per
    // call, how much of the slots' time pins held them, and how much of that was model calls.
    const st = slow.stats as { modelCalls: number; modelMs: number; slotMs: number };
    const split = { workerSeenCallMs: round(st.modelMs / st.modelCalls, 1), slotsHeldPct: round((st.slotMs / (slow.concurrency * slow.seconds * 1000)) * 100, 1), callsOfHeldPct: round((st.modelMs / st.slotMs) * 100, 1) };
    figures.push(
      figure({ name: 'score throughput, 200 ms model server', value: round(slow.rate), unit: 'labels/s', command, settings: { pairs: slowPairs, pairsPerPin: 3, latencyMs: 200, concurrency: slow.concurrency, ceiling, ...cpu(slow) } }),
      figure({ name: 'score 200 ms: achieved / (in-flight limit / latency)', value: round((slow.rate / ceiling) * 100, 1), unit: '%', command, settings: { concurrency: slow.concurrency, latencyMs: 200, ceiling, ...split }, target: { op: '>=', value: 95 } }),
    );
    if (slow.bareRate) {
      // What bounds the figure above on this machine: the same server, called by a client that does nothing else.
      const bare = { concurrency: slow.concurrency, latencyMs: 200, ceiling, client: 'node:http keep-alive, the teacher request, next call as soon as an answer is read (bench/score.ts bareClientRate)' };
      figures.push(
        figure({ name: 'score 200 ms: a do-nothing client / (in-flight limit / latency)', value: round((slow.bareRate / ceiling) * 100, 1), unit: '%', command, settings: bare }),
        figure({ name: 'score 200 ms: score worker / do-nothing client', value: round((slow.rate / slow.bareRate) * 100, 1), unit: '%', command, settings: bare }),
      );
    }
  }
  if (batched) {
    figures.push(figure({ name: 'score throughput, instant model server, completions API (16 prompts per request)', value: round(batched.rate), unit: 'labels/s', command, settings: { pairs: instantPairs, pairsPerPin: 3, latencyMs: 0, concurrency: batched.concurrency, ...batchedEnv, ...cpu(batched) }, target: { op: '>=', value: 5_000 } }));
  }
  const runs = [instant, slow, batched].filter((r): r is ScoreRun => r !== undefined);
  figures.push(figure({ name: 'score peak RSS', value: mb(Math.max(...runs.map((r) => r.peakRss))), unit: 'MB', command, settings: { pairs: instantPairs }, target: { op: '<=', value: 300 } }));
  figures.push(figure({ name: 'score peak anonymous memory (RSS less mapped files)', value: mb(Math.max(...runs.map((r) => r.peakAnon))), unit: 'MB', command, settings: { pairs: instantPairs, sampledEveryMs: 100 } }));
  const detail = (r: ScoreRun | undefined) => r && { seconds: round(r.seconds, 2), ...cpu(r), stats: r.stats };
  return { bench: 'score', figures, profile: (instant ?? batched)?.profile, details: { instant: detail(instant), slow: detail(slow), completions: detail(batched) } };
}

standalone(import.meta.url, runScore);
