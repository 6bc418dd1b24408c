/**
 * The composition root: builds real clients from the config and wires them into stages and
 * workers. The CLI, the demo and the integration tests all start workers through here, so
 * they run exactly the production wiring.
 */
import type { Kafka } from 'kafkajs';
import { createKafka, createPublisher, type Publisher } from './adapters/kafka/client.js';
import { createCaptioner } from './adapters/openai/captioner.js';
import { createOpenAiClient } from './adapters/openai/client.js';
import { createRedisCaptionCache } from './adapters/redis/caption-cache.js';
import { createRedis, pingRedis, type Redis } from './adapters/redis/client.js';
import { createRedisEnrichStore } from './adapters/redis/enrich-state.js';
import { createRateLimiter } from './adapters/redis/rate-limit.js';
import { topics as topicNames, type Config } from './config.js';
import { PinrichError } from './errors.js';
import { systemClock, type Clock } from './runtime/clock.js';
import type { Logger } from './runtime/log.js';
import { retryPolicyOf } from './runtime/retry.js';
import { startWorker, type Worker, type WorkerOptions } from './runtime/worker.js';
import { createCaptionStage, type CaptionStats } from './stages/caption/stage.js';
import { createEnrichStage, type EnrichStats } from './stages/enrich/stage.js';
import type { ScoreStats } from './stages/score/stage.js';
import { createScoreStageFromConfig, SCORE_WORKER_DEFAULTS } from './stages/score/wire.js';

export type WorkerName = 'caption' | 'enrich' | 'score';
export const WORKER_NAMES: readonly WorkerName[] = ['caption', 'enrich', 'score'];

export interface RunningApp {
  kafka: Kafka;
  redis: Redis;
  workers: Partial<Record<WorkerName, Worker>>;
  stats(): { caption?: CaptionStats; enrich?: EnrichStats; score?: ScoreStats };
  /** Stop every worker (in-flight work finishes, groups are left), then close clients. */
  stop(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
  onBatch?: WorkerOptions['onBatch'];
  /** Tick period of the enrich flusher. */
  tickMs?: number;
}

export async function startApp(config: Config, which: readonly WorkerName[], log: Logger, opts: StartOptions = {}): Promise<RunningApp> {
  const clock = opts.clock ?? systemClock;
  const t = topicNames(config);
  const kafka = createKafka(config, log);
  const redis = createRedis(config.redisUrl);
  const started: Array<{ worker: Worker }> = [];
  let publisher: Publisher | undefined;
  try {
    await pingRedis(redis);
    publisher = await createPublisher(kafka);
    const workers: RunningApp['workers'] = {};
    let captionStage: ReturnType<typeof createCaptionStage> | undefined;
    let enrichStage: ReturnType<typeof createEnrichStage> | undefined;
    let scoreStage: ReturnType<typeof createScoreStageFromConfig> | undefined;

    if (which.includes('caption')) {
      if (!config.vlmBaseUrl) throw new PinrichError('config_invalid', 'PINRICH_VLM_BASE_URL is required to run the caption worker');
      const client = createOpenAiClient({ baseURL: config.vlmBaseUrl, apiKey: config.vlmApiKey });
      const captioner = createCaptioner(client, config.vlmModel, config.vlmMaxTokens);
      captionStage = createCaptionStage({
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
        topics: t,
        clock,
        log: log.child({ worker: 'caption' }),
      });
      workers.caption = await startWorker({
        kafka,
        groupId: `${config.groupPrefix}.caption`,
        topics: [t.pinEvents],
        stage: captionStage,
        publisher,
        log: log.child({ worker: 'caption' }),
        clock,
        sessionTimeoutMs: config.kafkaSessionTimeoutMs,
        partitionsConsumedConcurrently: 4,
        maxBatchRecords: 200,
        onBatch: opts.onBatch,
      });
      started.push({ worker: workers.caption });
    }

    if (which.includes('enrich')) {
      enrichStage = createEnrichStage({
        store: createRedisEnrichStore(redis, config.redisKeyPrefix, config.enrichDedupTtlSeconds, config.enrichMinePairs),
        topics: t,
        topK: config.enrichTopK,
        windowMs: config.enrichWindowMs,
        minePairs: config.enrichMinePairs,
        maxRecordBytes: config.maxRecordBytes,
        clock,
        log: log.child({ worker: 'enrich' }),
      });
      workers.enrich = await startWorker({
        kafka,
        groupId: `${config.groupPrefix}.enrich`,
        topics: [t.pinEvents, t.engagement, t.captions],
        stage: enrichStage,
        publisher,
        log: log.child({ worker: 'enrich' }),
        clock,
        sessionTimeoutMs: config.kafkaSessionTimeoutMs,
        partitionsConsumedConcurrently: 2,
        maxBatchRecords: 2_000,
        tickMs: opts.tickMs ?? 100,
        onBatch: opts.onBatch,
      });
      started.push({ worker: workers.enrich });
    }

    if (which.includes('score')) {
      scoreStage = createScoreStageFromConfig(config, redis, log, clock);
      workers.score = await startWorker({
        kafka,
        groupId: `${config.groupPrefix}.score`,
        topics: [t.pairs],
        stage: scoreStage,
        publisher,
        log: log.child({ worker: 'score' }),
        clock,
        sessionTimeoutMs: config.kafkaSessionTimeoutMs,
        ...SCORE_WORKER_DEFAULTS,
        onBatch: opts.onBatch,
      });
      started.push({ worker: workers.score });
    }

    let stopping: Promise<void> | undefined;
    const pub = publisher;
    return {
      kafka,
      redis,
      workers,
      stats: () => ({ caption: captionStage?.stats(), enrich: enrichStage?.stats(), score: scoreStage?.stats() }),
      stop() {
        stopping ??= (async () => {
          await Promise.all(started.map((s) => s.worker.stop()));
          await pub.close();
          redis.disconnect();
        })();
        return stopping;
      },
    };
  } catch (err) {
    await Promise.allSettled(started.map((s) => s.worker.stop()));
    await publisher?.close().catch(() => {});
    redis.disconnect();
    throw err;
  }
}
