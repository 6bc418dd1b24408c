/**
 * freshness: time from an engagement event being handed to the producer to the first document
 * on pins.enriched that counts it, at a steady 10,000 events/s through one enrich worker
 * process. A document with engagement_count = c covers the first c events of its pin (one
 * producer, one partition per pin: events of a pin arrive in order), so every event gets an
 * exact latency. Reported p50/p99 over the run after a 2 s warm-up.
 *
 * The enrich coalescing window (PINRICH_ENRICH_WINDOW_MS) is a floor under this figure by
 * design; the run uses the setting named in its settings.
 *
 *   tsx bench/freshness.ts [--quick]
 */
import { Kafka, logLevel } from 'kafkajs';
import { createProducer } from '../src/adapters/kafka/client.js';
import { createRedisFromConfig } from '../src/adapters/redis/client.js';
import { redisKeys } from '../src/adapters/redis/keys.js';
import { benchEnv, benchStack, configOf, createLagProbe, figure, loadBacklog, round, setupTopics, standalone, startWorkerChild, waitUntil, type BenchOptions, type BenchResult } from './lib.js';
import { engagementMessage, pinEventMessage } from './data.js';

export async function runFreshness(opts: BenchOptions): Promise<BenchResult> {
  const rate = 10_000;
  const seconds = opts.quick ? 8 : 30;
  const warmupMs = 2_000;
  const pins = 20_000;
  const windowMs = Number(process.env.BENCH_FRESHNESS_WINDOW_MS ?? 250);
  const stack = await benchStack(opts.log);
  const env = benchEnv(stack, { PINRICH_ENRICH_WINDOW_MS: String(windowMs) });
  const config = configOf(env);
  const t = await setupTopics(config);
  const runId = config.redisKeyPrefix.replace(/\W/g, '');
  await loadBacklog(config, t.pinEvents, pins, pinEventMessage);
  const redis = createRedisFromConfig(config);
  const probe = await createLagProbe(config);
  const kafka = new Kafka({ clientId: 'pinrich-bench-fresh', brokers: [...config.kafkaBrokers], logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `${config.groupPrefix}.fresh-reader`, maxWaitTimeInMs: 20, minBytes: 1 });
  const producer = createProducer(kafka);
  const child = await startWorkerChild('enrich', env);
  try {
    // Let the worker take in the pins and publish their first documents before the clock starts.
    await waitUntil('pins to be enriched', async () => {
      if ((await probe.lag(`${config.groupPrefix}.enrich`, [t.pinEvents])) > 0) return false;
      const pipe = redis.pipeline();
      for (let p = 0; p < config.topicPartitions; p++) pipe.zcard(redisKeys(config.redisKeyPrefix).enrich.dirty(p));
      return ((await pipe.exec()) ?? []).every(([, n]) => Number(n) === 0);
    }, 120_000);

    const sentAt = new Map<string, number[]>(); // pin -> produce times of its events, in order
    const covered = new Map<string, number>(); // pin -> events already covered by a document
    const latencies: number[] = [];
    let startAt = 0;
    await consumer.connect();
    await consumer.subscribe({ topic: t.enriched, fromBeginning: false });
    let joined!: () => void;
    const isJoined = new Promise<void>((r) => (joined = r));
    consumer.on(consumer.events.GROUP_JOIN, () => joined());
    await consumer.run({
      eachBatch: async ({ batch }) => {
        const now = Date.now();
        for (const m of batch.messages) {
          if (!m.key || !m.value) continue;
          const pin = m.key.toString();
          const count = (JSON.parse(m.value.toString()) as { engagement_count: number }).engagement_count;
          const times = sentAt.get(pin);
          if (!times) continue;
          const from = covered.get(pin) ?? 0;
          for (let i = from; i < Math.min(count, times.length); i++) if (times[i]! >= startAt + warmupMs) latencies.push(now - times[i]!);
          if (count > from) covered.set(pin, count);
        }
      },
    });
    await isJoined;
    await new Promise((r) => setTimeout(r, 1_000)); // the reader's first fetch is in place
    await producer.connect();
    opts.log(`freshness: producing ${rate.toLocaleString('en')} events/s for ${seconds} s (window ${windowMs} ms)`);
    startAt = Date.now();
    const total = rate * seconds;
    let sent = 0;
    let seq = 0;
    while (sent < total) {
      // At most 2,000 per request (a late timer must not make one oversized request).
      const due = Math.min(total, sent + 2_000, Math.floor(((Date.now() - startAt) / 1000) * rate));
      if (due > sent) {
        const messages = [];
        for (; sent < due; sent++) {
          const pin = (seq * 7919) % pins; // spread over every pin
          const m = engagementMessage(seq++, pins, runId, pin, Date.now());
          const times = sentAt.get(m.key as string) ?? [];
          times.push(Date.now());
          sentAt.set(m.key as string, times);
          messages.push(m);
        }
        producer.send({ topic: t.engagement, acks: 1, messages }).catch((err: unknown) => opts.log(`freshness: send failed: ${String(err)}`));
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const producedFor = (Date.now() - startAt) / 1000;
    // Wait for the tail to be covered (bounded).
    const expected = [...sentAt.values()].reduce((n, ts) => n + ts.filter((x) => x >= startAt + warmupMs).length, 0);
    await waitUntil('freshness tail', async () => latencies.length >= expected, 60_000).catch(() => undefined);
    latencies.sort((a, b) => a - b);
    const pct = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
    const settings = { rate, seconds, warmupMs, pins, windowMs, tickMs: 100, partitions: config.topicPartitions, measuredEvents: latencies.length, expectedEvents: expected };
    const command = `tsx bench/freshness.ts (PINRICH_ENRICH_WINDOW_MS=${windowMs}; worker: node bench/child.ts enrich)`;
    return {
      bench: 'freshness',
      figures: [
        figure({ name: 'freshness p50 (event produced -> document on pins.enriched)', value: pct(0.5), unit: 'ms', command, settings }),
        figure({ name: 'freshness p99', value: pct(0.99), unit: 'ms', command, settings, target: { op: '<=', value: 1_000 } }),
        figure({ name: 'freshness achieved produce rate', value: round(total / producedFor), unit: 'events/s', command, settings }),
      ],
      details: { p90: pct(0.9), max: latencies[latencies.length - 1], covered: latencies.length, expected },
    };
  } finally {
    await child.stop().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    await consumer.disconnect().catch(() => undefined);
    await probe.close();
    redis.disconnect();
  }
}

standalone(import.meta.url, runFreshness);
