/**
 * enrich: engagement events per second through one enrich worker process (Kafka in, Redis
 * state, Kafka out), from a backlog of 1,000,000 events (50,000 with --quick), and the worker's
 * peak RSS while it works through it.
 *
 * Timed window: from the moment the worker has joined its group (backlog already on the topic)
 * until every input offset is committed and no pin is left dirty (every document is on
 * pins.enriched). The pin events of the backlog's pins are on the topic too and are processed
 * in the same window, so the rate is slightly conservative.
 *
 *   tsx bench/enrich.ts [--quick] [--profile]
 */
import { readFileSync } from 'node:fs';
import { createRedisFromConfig, type Redis } from '../src/adapters/redis/client.js';
import { redisKeys } from '../src/adapters/redis/keys.js';
import { benchEnv, benchStack, configOf, createLagProbe, dropRun, figure, infoCpuSeconds, loadBacklog, mb, round, setupTopics, standalone, startWorkerChild, waitUntil, type BenchOptions, type BenchResult } from './lib.js';
import { engagementMessage, pinEventMessage } from './data.js';

/**
 * CPU seconds (user + system) the process `pid` has used so far, from /proc: the load-robust
 * measure of the worker's own cost (a loaded machine stretches wall time, not this).
 */
export function cpuSecondsOf(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/**
 * Redis `INFO commandstats` as command -> {calls, usec}, and the server's own CPU seconds (user +
 * system, under the name `cpu`: its µs count the work, not the time a loaded machine adds).
 */
export async function commandStats(redis: Redis): Promise<Map<string, { calls: number; usec: number }>> {
  const out = new Map<string, { calls: number; usec: number }>();
  const info = await redis.info('all');
  for (const m of info.matchAll(/^cmdstat_(\S+):calls=(\d+),usec=(\d+)/gm)) out.set(m[1]!, { calls: Number(m[2]), usec: Number(m[3]) });
  out.set('cpu', { calls: 1, usec: infoCpuSeconds(info) * 1e6 });
  return out;
}

/**
 * What Redis did between two `commandStats` snapshots, per event: calls and µs per command (the
 * stack's Redis is shared, so other clients' commands in the window count too: compare runs).
 */
export function commandStatsPerEvent(before: Map<string, { calls: number; usec: number }>, after: Map<string, { calls: number; usec: number }>, events: number): Record<string, { callsPerEvent: number; usPerEvent: number }> {
  const out: Record<string, { callsPerEvent: number; usPerEvent: number }> = {};
  for (const [cmd, a] of after) {
    const b = before.get(cmd) ?? { calls: 0, usec: 0 };
    const calls = cmd === 'cpu' ? 1 : a.calls - b.calls;
    if (calls <= 0) continue;
    out[cmd] = { callsPerEvent: round(calls / events, 4), usPerEvent: round((a.usec - b.usec) / events, 3) };
  }
  return out;
}

/**
 * BENCH_REDIS_URL: a Redis of the run's own instead of the stack's shared one, so its
 * `INFO commandstats` hold the measured worker's commands alone.
 */
export function benchRedisOverride(): Record<string, string> {
  return process.env.BENCH_REDIS_URL ? { PINRICH_REDIS_URL: process.env.BENCH_REDIS_URL } : {};
}

export async function runEnrich(opts: BenchOptions): Promise<BenchResult> {
  const events = Number(process.env.BENCH_ENRICH_EVENTS ?? 0) || (opts.quick ? 50_000 : 1_000_000);
  const pins = opts.quick ? 5_000 : 50_000;
  const stack = await benchStack(opts.log);
  const env = benchEnv(stack, benchRedisOverride());
  const config = configOf(env);
  const t = await setupTopics(config);
  const runId = config.redisKeyPrefix.replace(/\W/g, '');
  opts.log(`enrich: loading ${pins.toLocaleString('en')} pin events and ${events.toLocaleString('en')} engagement events`);
  await loadBacklog(config, t.pinEvents, pins, pinEventMessage);
  const load = await loadBacklog(config, t.engagement, events, (i) => engagementMessage(i, pins, runId), opts.log);
  const recordBytes = Math.round(load.bytes / events);

  const redis = createRedisFromConfig(config);
  const probe = await createLagProbe(config);
  const groupId = `${config.groupPrefix}.enrich`;
  const dirtyEmpty = async () => {
    const pipe = redis.pipeline();
    for (let p = 0; p < config.topicPartitions; p++) pipe.zcard(redisKeys(config.redisKeyPrefix).enrich.dirty(p));
    const res = (await pipe.exec()) ?? [];
    return res.every(([, n]) => Number(n) === 0);
  };
  try {
    const child = await startWorkerChild('enrich', env, { profile: opts.profile });
    opts.log(`enrich: worker ${child.pid} joined; timing`);
    const cpuBefore = cpuSecondsOf(child.pid);
    const redisBefore = await commandStats(redis);
    let consumedAt = 0;
    const doneAt = await waitUntil(
      'enrich to catch up',
      async () => {
        if (!consumedAt) {
          if ((await probe.lag(groupId, [t.pinEvents, t.engagement])) > 0) return false;
          consumedAt = Date.now();
        }
        return dirtyEmpty();
      },
      opts.quick ? 120_000 : 900_000,
    );
    const cpuSeconds = cpuSecondsOf(child.pid) - cpuBefore;
    const redisPerEvent = commandStatsPerEvent(redisBefore, await commandStats(redis), events);
    const stopped = await child.stop();
    const documents = Number((stopped.stats as { documents?: number } | undefined)?.documents ?? NaN);
    const seconds = (doneAt - child.readyAt) / 1000;
    const rate = events / seconds;
    const settings = {
      events,
      pins,
      recordBytes,
      partitions: config.topicPartitions,
      windowMs: config.enrichWindowMs,
      topK: config.enrichTopK,
    };
    const command = 'tsx bench/enrich.ts (worker: node bench/child.ts enrich = startApp(config, ["enrich"]))';
    return {
      bench: 'enrich',
      figures: [
        figure({ name: 'enrich throughput', value: round(rate), unit: 'events/s', command, settings, target: { op: '>=', value: 50_000 } }),
        figure({ name: 'enrich consume+state (until offsets committed)', value: round(events / ((consumedAt - child.readyAt) / 1000)), unit: 'events/s', command, settings }),
        figure({ name: 'enrich worker CPU per event (user+system, load-robust)', value: round((cpuSeconds / events) * 1e6, 2), unit: 'µs', command, settings }),
        figure({ name: 'enrich peak RSS', value: mb(stopped.peakRss), unit: 'MB', command, settings, target: { op: '<=', value: 300 } }),
        figure({ name: 'enrich peak anonymous memory (RSS less mapped files)', value: mb(stopped.peakAnon), unit: 'MB', command, settings: { ...settings, sampledEveryMs: 100 } }),
      ],
      profile: stopped.profile,
      details: { seconds: round(seconds, 2), loadMs: load.ms, cpuSeconds: round(cpuSeconds, 2), cpuUsPerDocument: round((cpuSeconds / documents) * 1e6, 1), redisPerEvent, stats: stopped.stats },
    };
  } finally {
    await probe.close();
    redis.disconnect();
    await dropRun(config, opts.log);
  }
}

standalone(import.meta.url, runEnrich);
