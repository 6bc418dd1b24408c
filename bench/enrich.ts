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
import { createRedisFromConfig } from '../src/adapters/redis/client.js';
import { redisKeys } from '../src/adapters/redis/keys.js';
import { benchEnv, benchStack, configOf, createLagProbe, figure, loadBacklog, mb, round, setupTopics, standalone, startWorkerChild, waitUntil, type BenchOptions, type BenchResult } from './lib.js';
import { engagementMessage, pinEventMessage } from './data.js';

export async function runEnrich(opts: BenchOptions): Promise<BenchResult> {
  const events = Number(process.env.BENCH_ENRICH_EVENTS ?? 0) || (opts.quick ? 50_000 : 1_000_000);
  const pins = opts.quick ? 5_000 : 50_000;
  const stack = await benchStack(opts.log);
  const env = benchEnv(stack);
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
    const stopped = await child.stop();
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
        figure({ name: 'enrich peak RSS', value: mb(stopped.peakRss), unit: 'MB', command, settings, target: { op: '<=', value: 300 } }),
      ],
      profile: stopped.profile,
      details: { seconds: round(seconds, 2), loadMs: load.ms, stats: stopped.stats },
    };
  } finally {
    await probe.close();
    redis.disconnect();
  }
}

standalone(import.meta.url, runEnrich);
