/**
 * Helpers for integration tests on the real local stack: each test gets its own topic prefix,
 * Redis key prefix and consumer groups, so tests never see each other's data.
 */
import { randomUUID } from 'node:crypto';
import { Cluster } from 'ioredis';
import { Kafka, logLevel, type KafkaMessage } from 'kafkajs';
import { createProducer } from '../../src/adapters/kafka/client.js';
import { inject } from 'vitest';
import { createTopics } from '../../src/adapters/kafka/admin.js';
import type { Redis } from '../../src/adapters/redis/client.js';
import { loadConfig, topics, type Config } from '../../src/config.js';
import { stackClusterEnv, stackEnv, type StackEndpoints } from '../../src/stack/index.js';

export function stack(): StackEndpoints {
  const s = inject('stack');
  if (!s) throw new Error('integration tests need the local stack (unset PINRICH_NO_STACK)');
  return s;
}

/** The two kinds of Redis pinrich runs on: one server, or a Redis Cluster (PINRICH_REDIS_CLUSTER). */
export const REDIS_MODES = ['single', 'cluster'] as const;
export type RedisMode = (typeof REDIS_MODES)[number];

/**
 * The Redis this test process runs on: the `redis-cluster` vitest project (vitest.config.ts)
 * runs the caption, enrich and score integration tests a second time with
 * PINRICH_TEST_REDIS=cluster, i.e. on the stack's 3-master Redis Cluster.
 */
export function testRedisMode(): RedisMode {
  return process.env.PINRICH_TEST_REDIS === 'cluster' ? 'cluster' : 'single';
}

/** The variables that point a config at the stack's Redis of `mode` (laid over stackEnv). */
export function redisEnv(mode: RedisMode): Record<string, string> {
  return mode === 'cluster' ? stackClusterEnv(stack()) : {};
}

/**
 * Delete every key under `prefix` (test clean-up), on one server or on every master of a
 * cluster: a SCAN sent through a cluster client sees one node only, and a multi-key DEL of keys
 * in different slots is refused, so each master is scanned on its own and keys go one by one.
 */
export async function deleteKeysWithPrefix(redis: Redis, prefix: string): Promise<number> {
  let deleted = 0;
  for (const node of redis instanceof Cluster ? redis.nodes('master') : [redis]) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      if (batch.length) {
        const pipe = node.pipeline();
        for (const k of batch) pipe.unlink(k);
        await pipe.exec();
        deleted += batch.length;
      }
    } while (cursor !== '0');
  }
  return deleted;
}

/** A config on the local stack with fresh topic/Redis/group prefixes. */
export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig(testEnv(overrides));
}

/** The environment behind `testConfig`, for starting workers as child processes. */
export function testEnv(overrides: Record<string, string> = {}): Record<string, string> {
  const id = randomUUID().slice(0, 8);
  return {
    ...stackEnv(stack()),
    ...redisEnv(testRedisMode()),
    PINRICH_TOPIC_PREFIX: `t-${id}.`,
    PINRICH_REDIS_PREFIX: `t-${id}:`,
    PINRICH_GROUP_PREFIX: `t-${id}`,
    PINRICH_S3_PREFIX: `t-${id}/`,
    PINRICH_TOPIC_PARTITIONS: '2',
    // On the cluster, 4 partitions: the hash tags {p0} and {p1} happen to share a master, {p2} and
    // {p3} are on the two others, so the enrich state of one test spans every master (a step that
    // crosses partitions' slots fails there, as it would in production).
    ...(testRedisMode() === 'cluster' ? { PINRICH_TOPIC_PARTITIONS: '4' } : {}),
    PINRICH_LOG_LEVEL: 'warn',
    PINRICH_MODEL_BACKOFF_BASE_MS: '20',
    PINRICH_MODEL_BACKOFF_MAX_MS: '200',
    PINRICH_ENRICH_WINDOW_MS: '0',
    // Worker processes of one test host must not compete for the default /metrics port.
    PINRICH_METRICS_PORT: '0',
    ...overrides,
  };
}

export function testKafka(config: Config): Kafka {
  return new Kafka({ clientId: 'pinrich-test', brokers: [...config.kafkaBrokers], logLevel: logLevel.NOTHING });
}

/**
 * Create the test's topics; resolves once every partition of every topic has a leader that
 * serves it (createTopics waits for that), so the test's first produce or end-offset read
 * does not meet "This server does not host this topic-partition" on a loaded machine.
 */
export async function setupTopics(config: Config) {
  await createTopics(testKafka(config), config);
  return topics(config);
}

export interface Rec {
  key: string | null;
  value: string | null;
  partition: number;
  offset: string;
  headers: Record<string, string>;
  timestamp: string;
}

/**
 * Produce records (objects are JSON-encoded; strings and Buffers go as they are), each exactly
 * once. Right after topic creation a broker may still answer "does not host this
 * topic-partition" for one partition of a request while writing the others; a plain producer's
 * retry would then write those others twice and tests would count phantom redeliveries. The
 * idempotent producer retries (without limit) under the same sequence numbers, which the broker
 * deduplicates.
 */
/** `partition`: write there, as a producer partitioning otherwise than pinrich would; absent: by key. */
export async function produce(config: Config, topic: string, records: Array<{ key: string; value: unknown; partition?: number; headers?: Record<string, string>; timestamp?: string }>): Promise<void> {
  const producer = createProducer(testKafka(config), { idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = 0; i < records.length; i += 1_000) {
      await producer.send({
        topic,
        acks: -1,
        messages: records.slice(i, i + 1_000).map((r) => ({
          key: r.key,
          value: r.value === null ? null : typeof r.value === 'string' || Buffer.isBuffer(r.value) ? r.value : JSON.stringify(r.value),
          ...(r.partition === undefined ? {} : { partition: r.partition }),
          ...(r.headers === undefined ? {} : { headers: r.headers }),
          ...(r.timestamp === undefined ? {} : { timestamp: r.timestamp }),
        })),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

/**
 * Read `topic` from the beginning until `done(records)` holds (checked after each batch) or the
 * timeout passes; returns everything read. Throws on timeout with what was seen.
 */
export async function readUntil(config: Config, topic: string, done: (records: Rec[]) => boolean, timeoutMs = 60_000, onPosition?: (partition: number, next: bigint) => void): Promise<Rec[]> {
  const consumer = testKafka(config).consumer({ groupId: `reader-${randomUUID()}`, maxWaitTimeInMs: 100 });
  const seen: Rec[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let resolveDone!: () => void;
  const finished = new Promise<void>((r) => (resolveDone = r));
  const toRec = (m: KafkaMessage, partition: number): Rec => ({
    key: m.key?.toString() ?? null,
    value: m.value === null ? null : m.value.toString(),
    partition,
    offset: m.offset,
    headers: Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, String(v)])),
    timestamp: m.timestamp,
  });
  if (onPosition) {
    // After every batch, also one of only commit markers or aborted records (eachBatch never sees those).
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      onPosition(payload.partition, BigInt(payload.lastOffset) + 1n);
      if (done(seen)) resolveDone();
    });
  }
  await consumer.run({
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) seen.push(toRec(m, batch.partition));
      if (done(seen)) resolveDone();
    },
  });
  const timer = setTimeout(() => resolveDone(), timeoutMs);
  try {
    if (done(seen)) resolveDone();
    await finished;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
  }
  if (!done(seen)) throw new Error(`readUntil(${topic}) timed out after ${timeoutMs} ms with ${seen.length} records`);
  return seen;
}

/**
 * Every record of `topic` up to its end offsets at the time of the call (read committed). Done
 * by the consumer's fetch position, not by the records seen: a topic written in transactions
 * (pins.enriched) ends with commit markers and aborted records that no reader is handed.
 */
export async function readToEnd(config: Config, topic: string, timeoutMs = 60_000): Promise<Rec[]> {
  const admin = testKafka(config).admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic).finally(() => admin.disconnect());
  const want = new Map(ends.filter((e) => BigInt(e.high) > BigInt(e.low)).map((e) => [e.partition, BigInt(e.high)]));
  const position = new Map<number, bigint>();
  const reached = () => [...want].every(([p, high]) => (position.get(p) ?? 0n) >= high);
  return readUntil(config, topic, reached, timeoutMs, (partition, next) => position.set(partition, next));
}

/** Committed offsets of `groupId` are at the end of every partition of `topics` (false while the broker is unreachable). */
export async function caughtUp(config: Config, groupId: string, topics: string[]): Promise<boolean> {
  const admin = testKafka(config).admin();
  await admin.connect();
  try {
    for (const topic of topics) {
      const ends = await admin.fetchTopicOffsets(topic);
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      for (const e of ends) {
        const c = committed!.partitions.find((p) => p.partition === e.partition);
        const at = c && c.offset !== '-1' ? BigInt(c.offset) : 0n;
        if (at < BigInt(e.high)) return false;
      }
    }
    return true;
  } catch {
    return false; // broker restarting
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** The latest value per key (compaction semantics): null for a tombstone. */
export function latestByKey(records: Rec[]): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (const r of records) if (r.key !== null) out.set(r.key, r.value);
  return out;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
