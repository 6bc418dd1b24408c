/**
 * The worker registry: the one list of pinrich's workers, with what each consumes and produces,
 * its consumer group, its consumer settings and its wiring. The composition root (app.ts), the
 * CLI (`pinrich run <worker>`), the dead-letter schema's `stage` field and the deploy tests all
 * read it, so adding or changing a worker is one edit here (docs/architecture.md, "Workers").
 *
 * Only types and the light config module are imported statically: each worker's wiring (and its
 * heavy dependencies: openai, DuckDB, the AWS SDK) is imported when that worker is started, so an
 * enrich-only process never loads them (RSS).
 */
import type { Kafka } from 'kafkajs';
import type { Redis } from './adapters/redis/client.js';
import { topics as topicNames, type Config, type Topics } from './config.js';
import type { Clock } from './runtime/clock.js';
import type { Logger } from './runtime/log.js';
import type { PipelineMetrics } from './runtime/metrics.js';
import type { Stage } from './runtime/stage.js';
import type { CaptionStats } from './stages/caption/stage.js';
import type { DumpStats } from './stages/dump/stage.js';
import type { EnrichStats } from './stages/enrich/stage.js';
import type { ScoreStats } from './stages/score/stage.js';

/** Every worker, in start order (`pinrich run all` starts them in this order). */
export const WORKER_NAMES = ['caption', 'enrich', 'score', 'dump'] as const;
export type WorkerName = (typeof WORKER_NAMES)[number];

/** The `stats()` counters of each worker's stage. */
export interface WorkerStats {
  caption: CaptionStats;
  enrich: EnrichStats;
  score: ScoreStats;
  dump: DumpStats;
}

/** Consumer settings of a worker (see WorkerOptions in runtime/worker.ts). */
export interface ConsumerSettings {
  /** Partitions this instance processes at once. */
  partitionsConsumedConcurrently: number;
  /** Records handed to the stage at once. */
  maxBatchRecords: number;
  /** Period of the stage's `tick`, for stages that have one. */
  tickMs?: number;
  /** Partition N of every input topic to the same instance (the co-partitioned enrich inputs). */
  coPartitioned?: boolean;
}

/** What a worker's wiring gets from the composition root: shared clients, one per process. */
export interface WiringContext {
  config: Config;
  kafka: Kafka;
  redis: Redis;
  /** The process's logger; the stage logs through `log.child({ worker: <name> })`. */
  log: Logger;
  clock: Clock;
  metrics: PipelineMetrics;
}

export interface WorkerDefinition<N extends WorkerName = WorkerName> {
  name: N;
  /** One line for usage texts and docs. */
  does: string;
  /** Topics the worker's consumer group subscribes to. */
  inputs(t: Topics): readonly string[];
  /** Topics it publishes to (dead-letter twins of the inputs aside). */
  outputs(t: Topics): readonly string[];
  /**
   * The worker reads or writes the enrich state in Redis, so the app checks the state marker
   * (stages/enrich/rebuild.ts) once before starting it.
   */
  usesEnrichState: boolean;
  /** Consumer settings; `tickMs` is the caller's override of the tick period, where it applies. */
  consumer(config: Config, overrides: { tickMs?: number }): ConsumerSettings;
  /** Builds the stage from the config and the shared clients, importing its modules on use. */
  wire(ctx: WiringContext): Promise<Stage & { stats(): WorkerStats[N] }>;
}

/** `<PINRICH_GROUP_PREFIX>.<worker>`: one consumer group per worker. */
export const groupIdOf = (config: Pick<Config, 'groupPrefix'>, name: WorkerName): string => `${config.groupPrefix}.${name}`;

const caption: WorkerDefinition<'caption'> = {
  name: 'caption',
  does: 'captions pin images with the VLM',
  inputs: (t) => [t.pinEvents],
  outputs: (t) => [t.captions],
  usesEnrichState: false,
  // A few partitions at once and small batches: each record may be a model call.
  consumer: () => ({ partitionsConsumedConcurrently: 4, maxBatchRecords: 200 }),
  async wire({ config, redis, log, clock, metrics }) {
    const [{ PinrichError }, { createCaptioner }, { createOpenAiClient }, { createRedisCaptionCache }, { createRateLimiter }, { instrumentCaptioner }, { retryPolicyOf }, { createCaptionStage }] =
      await Promise.all([
        import('./errors.js'),
        import('./adapters/openai/captioner.js'),
        import('./adapters/openai/client.js'),
        import('./adapters/redis/caption-cache.js'),
        import('./adapters/redis/rate-limit.js'),
        import('./runtime/instrument.js'),
        import('./runtime/retry.js'),
        import('./stages/caption/stage.js'),
      ]);
    if (!config.vlmBaseUrl) throw new PinrichError('config_invalid', 'PINRICH_VLM_BASE_URL is required to run the caption worker');
    const client = createOpenAiClient({ baseURL: config.vlmBaseUrl, apiKey: config.vlmApiKey });
    const captioner = instrumentCaptioner(createCaptioner(client, config.vlmModel, config.vlmMaxTokens), metrics);
    return createCaptionStage({
      captioner,
      cache: createRedisCaptionCache(redis, config.redisKeyPrefix, captioner.model, captioner.promptVersion),
      limiter: createRateLimiter(redis, `${config.redisKeyPrefix}ratelimit:vlm:${config.vlmModel}`, {
        requestsPerSecond: config.vlmRequestsPerSecond,
        tokensPerMinute: config.vlmTokensPerMinute,
      }),
      policy: { allowedSchemes: config.imageAllowedSchemes, allowedHosts: config.imageAllowedHosts, maxLength: 2048 },
      retry: retryPolicyOf(config),
      concurrency: config.vlmConcurrency,
      maxRecordBytes: config.maxRecordBytes,
      topics: topicNames(config),
      clock,
      log: log.child({ worker: 'caption' }),
    });
  },
};

const enrich: WorkerDefinition<'enrich'> = {
  name: 'enrich',
  does: 'builds one enriched document per pin from its events, engagement and caption',
  inputs: (t) => [t.pinEvents, t.engagement, t.captions],
  outputs: (t) => [t.enriched, t.pairs],
  usesEnrichState: true,
  // Large batches (cheap records, Redis round trips amortised) and a short flush tick.
  // Partition N of its three inputs is one unit of state (one owner): assigned together.
  consumer: (_config, { tickMs }) => ({ partitionsConsumedConcurrently: 2, maxBatchRecords: 2_000, tickMs: tickMs ?? 100, coPartitioned: true }),
  async wire({ config, kafka, redis, log, clock }) {
    const [{ createRedisEnrichStore }, { createEnrichStage }, { createPartitionedPublisher }, { partitionCounts }] = await Promise.all([
      import('./adapters/redis/enrich-state.js'),
      import('./stages/enrich/stage.js'),
      import('./adapters/kafka/client.js'),
      import('./adapters/kafka/admin.js'),
    ]);
    return createEnrichStage({
      inputPartitions: partitionCounts(kafka),
      ...(config.enrichTransactions ? { publisher: createPartitionedPublisher(kafka, `${config.topicPrefix}${config.groupPrefix}.enrich-p`) } : {}),
      requireState: true,
      store: createRedisEnrichStore(redis, config.redisKeyPrefix, config.enrichDedupTtlSeconds, config.enrichMinePairs),
      topics: topicNames(config),
      topK: config.enrichTopK,
      windowMs: config.enrichWindowMs,
      minePairs: config.enrichMinePairs,
      maxRecordBytes: config.maxRecordBytes,
      bufferBytes: config.enrichBufferBytes,
      catchUpWindowMs: config.enrichCatchUpWindowMs,
      fence: true,
      clock,
      log: log.child({ worker: 'enrich' }),
    });
  },
};

/**
 * The score worker's consumer settings: a few partitions at once (the in-flight limit is shared
 * by the stage across them) and modest batches, so a batch's model time stays short.
 */
export const SCORE_CONSUMER: ConsumerSettings = Object.freeze({ partitionsConsumedConcurrently: 4, maxBatchRecords: 1_000 });

const score: WorkerDefinition<'score'> = {
  name: 'score',
  does: 'labels (query, pin) pairs with the teacher LLM',
  inputs: (t) => [t.pairs],
  outputs: (t) => [t.labels],
  usesEnrichState: true,
  consumer: () => SCORE_CONSUMER,
  async wire({ config, redis, log, clock, metrics }) {
    const { createScoreStageFromConfig } = await import('./stages/score/wire.js');
    // It makes its `worker: score` child logger itself.
    return createScoreStageFromConfig(config, redis, log, clock, metrics, { requireEnrichState: true });
  },
};

const dump: WorkerDefinition<'dump'> = {
  name: 'dump',
  does: 'writes labels to S3 as Parquet',
  inputs: (t) => [t.labels],
  outputs: () => [],
  usesEnrichState: false,
  // Large batches (rows are cheap), and a tick often enough for the age flush.
  consumer: (config) => ({
    partitionsConsumedConcurrently: 2,
    maxBatchRecords: 5_000,
    tickMs: Math.max(50, Math.min(1_000, Math.floor(config.dumpFlushAgeMs / 4))),
  }),
  async wire({ config, log, clock }) {
    const { createDumpStageFromConfig } = await import('./stages/dump/wire.js');
    return createDumpStageFromConfig(config, log.child({ worker: 'dump' }), clock);
  },
};

/** The registry. */
export const WORKERS: { readonly [N in WorkerName]: WorkerDefinition<N> } = Object.freeze({ caption, enrich, score, dump });

/** The worker named `name`, or undefined when there is none (CLI input). */
export function workerNamed(name: string | undefined): WorkerDefinition | undefined {
  return (WORKER_NAMES as readonly string[]).includes(name ?? '') ? WORKERS[name as WorkerName] : undefined;
}

/** Group, topics and consumer settings of a worker: what `startWorker` needs besides clients. */
export function subscriptionOf(name: WorkerName, config: Config, overrides: { tickMs?: number } = {}): ConsumerSettings & { groupId: string; topics: readonly string[]; fetchMinBytes: number; fetchMaxWaitMs: number } {
  const w: WorkerDefinition = WORKERS[name];
  return {
    groupId: groupIdOf(config, name),
    topics: w.inputs(topicNames(config)),
    fetchMinBytes: config.kafkaFetchMinBytes,
    fetchMaxWaitMs: config.kafkaFetchMaxWaitMs,
    ...w.consumer(config, overrides),
  };
}
