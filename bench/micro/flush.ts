/**
 * Micro-benchmark of the enrich document path at a steady rate, where every event is a document
 * (the freshness bench's shape: 20,000 pins, each event on a pin not touched since its last
 * document): the real stage's tick (due pins, read-pins, build, hash) and the worker's delivery
 * of it (one Kafka transaction per partition, set-document, commit-flushes), on the local
 * stack. Per round one engagement event per pin is taken in and written to the state, then
 * ticks run until every pin is flushed; reported per document: this process' CPU, Redis' CPU
 * (`INFO cpu`) and the wall time, the tick and the delivery apart. So two trees can be compared
 * where the freshness bench's spread hides the difference:
 *
 *   npx tsx bench/micro/flush.ts                        # this checkout, the local stack
 *   ROOT=/path/to/other/checkout npx tsx bench/micro/flush.ts
 *
 * The run's Redis keys and Kafka topics are dropped at the end (BENCH_KEEP=1 keeps them).
 */
import { benchEnv, benchKafka, benchStack, configOf, dropRun, REPO_ROOT, redisCpuSeconds, setupTopics } from '../lib.js';
import { engagementMessage, pinEventMessage } from '../data.js';
import type { InRecord, StageContext, StageResult } from '../../src/runtime/stage.js';
import type { OutMessage } from '../../src/adapters/kafka/client.js';

const ROOT = process.env.ROOT ?? REPO_ROOT;
const load = async <T>(path: string): Promise<T> => (await import(`${ROOT}/src/${path}`)) as T;
const { createRedisEnrichStore } = await load<typeof import('../../src/adapters/redis/enrich-state.js')>('adapters/redis/enrich-state.ts');
const { createEnrichStage } = await load<typeof import('../../src/stages/enrich/stage.js')>('stages/enrich/stage.ts');
const { createPartitionedPublisher } = await load<typeof import('../../src/adapters/kafka/client.js')>('adapters/kafka/client.ts');
const { createRedisFromConfig } = await load<typeof import('../../src/adapters/redis/client.js')>('adapters/redis/client.ts');
const { silentLogger } = await load<typeof import('../../src/runtime/log.js')>('runtime/log.ts');

const PINS = Number(process.env.BENCH_FLUSH_PINS ?? 20_000);
const ROUNDS = Number(process.env.BENCH_FLUSH_ROUNDS ?? 5);
const PARTITIONS = 4;

const stack = await benchStack(() => {});
const config = configOf(benchEnv(stack));
const topics = await setupTopics(config);
const redis = createRedisFromConfig(config);
const store = createRedisEnrichStore(redis, config.redisKeyPrefix, config.enrichDedupTtlSeconds, false);
await store.markStateReady({ source: 'fresh', at: new Date().toISOString() }, [0, 1, 2, 3]);
const publisher = createPartitionedPublisher(benchKafka(config), `${config.topicPrefix}micro-flush-p`);
const stage = createEnrichStage({
  store,
  topics,
  topK: config.enrichTopK,
  windowMs: 0,
  minePairs: false,
  maxRecordBytes: config.maxRecordBytes,
  requireState: true,
  fence: true,
  publisher,
  clock: { now: () => Date.now() },
  log: silentLogger,
});
const assigned = new Map([
  [topics.pinEvents, [0, 1, 2, 3]],
  [topics.engagement, [0, 1, 2, 3]],
]);
stage.onAssignment?.(assigned);

const ctx: StageContext = { signal: new AbortController().signal, heartbeat: async () => {} };

/** Hand records to the stage per partition, in batches of 2,000, as the consumer would. */
const offsets = new Map<string, number>();
async function take(topic: string, messages: Array<{ key: string; value: string }>): Promise<void> {
  const byPartition = new Map<number, InRecord[]>();
  messages.forEach((m, i) => {
    const partition = i % PARTITIONS;
    const at = `${topic}/${partition}`;
    const offset = offsets.get(at) ?? 0;
    offsets.set(at, offset + 1);
    const record: InRecord = { topic, partition, offset: String(offset), key: m.key, value: Buffer.from(m.value), timestamp: Date.now() };
    byPartition.get(partition)?.push(record) ?? byPartition.set(partition, [record]);
  });
  for (const records of byPartition.values()) for (let i = 0; i < records.length; i += 2_000) await (await stage.handle(records.slice(i, i + 2_000), ctx)).commit?.();
  await stage.flushState();
}

/** What the worker does with a tick's result: one transaction per owner partition, then the stage's commit. */
async function deliver(result: StageResult): Promise<void> {
  const owned = new Map<number, OutMessage[]>();
  for (const m of result.outputs) owned.get(m.ownerPartition!)?.push(m) ?? owned.set(m.ownerPartition!, [m]);
  const fenced = new Set<number>();
  await Promise.all([...owned].map(async ([p, msgs]) => ((await publisher.publish(p, msgs)) === 'fenced' ? fenced.add(p) : undefined)));
  await result.commit?.(fenced);
  stage.committed?.(result.commitOffsets ?? []);
}

const spent = { tickUs: 0, deliverUs: 0, wallMs: 0, redisS: 0, docs: 0 };
async function flushAll(measure: boolean): Promise<void> {
  const before = stage.stats().documents;
  const redis0 = await redisCpuSeconds(redis);
  const t0 = performance.now();
  for (let idle = 0; idle < 3; ) {
    const c0 = process.cpuUsage();
    const result = await stage.tick!(assigned, ctx);
    const c1 = process.cpuUsage(c0);
    await deliver(result);
    const c2 = process.cpuUsage(c0);
    if (measure) {
      spent.tickUs += c1.user + c1.system;
      spent.deliverUs += c2.user + c2.system - (c1.user + c1.system);
    }
    idle = result.outputs.length === 0 ? idle + 1 : 0;
  }
  if (measure) {
    spent.wallMs += performance.now() - t0;
    spent.redisS += (await redisCpuSeconds(redis)) - redis0;
    spent.docs += stage.stats().documents - before;
  }
}

await take(topics.pinEvents, Array.from({ length: PINS }, (_, i) => pinEventMessage(i) as { key: string; value: string }));
await flushAll(false); // the pins' first documents (warm-up)
const runId = config.redisKeyPrefix.replace(/\W/g, '');
for (let round = 0; round < ROUNDS + 1; round++) {
  await take(topics.engagement, Array.from({ length: PINS }, (_, i) => engagementMessage(round * PINS + i, PINS, runId, i) as { key: string; value: string }));
  await flushAll(round > 0); // round 0: warm-up
}
const per = (us: number) => +(us / spent.docs).toFixed(1);
console.log(
  JSON.stringify({
    root: ROOT,
    documents: spent.docs,
    tickCpuUsPerDoc: per(spent.tickUs),
    deliverCpuUsPerDoc: per(spent.deliverUs),
    clientCpuUsPerDoc: per(spent.tickUs + spent.deliverUs),
    redisCpuUsPerDoc: per(spent.redisS * 1e6),
    wallUsPerDoc: per(spent.wallMs * 1000),
    peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  }),
);
await stage.close?.();
redis.disconnect();
await dropRun(config, (l) => process.stderr.write(l + '\n'));
