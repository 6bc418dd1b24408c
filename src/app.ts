/**
 * The composition root: builds real clients from the config and wires them into stages and
 * workers. The CLI, the demo and the integration tests all start workers through here, so
 * they run exactly the production wiring.
 */
import type { Kafka } from 'kafkajs';
import { createKafka, createPublisher, type Publisher } from './adapters/kafka/client.js';
import { untilKafkaAnswers } from './adapters/kafka/transient.js';
import { createRedisFromConfig, pingRedis, type Redis } from './adapters/redis/client.js';
import { createRedisEnrichStore } from './adapters/redis/enrich-state.js';
import { secretValues, topics as topicNames, type Config } from './config.js';
import { PinrichError } from './errors.js';
import { systemClock, type Clock } from './runtime/clock.js';
import type { Logger } from './runtime/log.js';
import { createPipelineMetrics, registerProcessMetrics, type PipelineMetrics, type Sample } from './runtime/metrics.js';
import { startOpsServer, type OpsServer } from './runtime/ops-server.js';
import { createRedactor, redactingPublisher } from './runtime/redact.js';
import { startWorker, type Worker, type WorkerOptions } from './runtime/worker.js';
import type { createCaptionStage, CaptionStats } from './stages/caption/stage.js';
import { checkEnrichState } from './stages/enrich/rebuild.js';
import { createEnrichStage, type EnrichStats } from './stages/enrich/stage.js';
import type { ScoreStats } from './stages/score/stage.js';
import type { DumpStats } from './stages/dump/stage.js';
// Each worker's own wiring (and its heavy dependencies: openai, DuckDB, the AWS SDK) is imported
// only when that worker runs in this process: an enrich-only process never loads them (RSS).
import type { createDumpStageFromConfig } from './stages/dump/wire.js';
import type { createScoreStageFromConfig } from './stages/score/wire.js';

export type WorkerName = 'caption' | 'enrich' | 'score' | 'dump';
export const WORKER_NAMES: readonly WorkerName[] = ['caption', 'enrich', 'score', 'dump'];

export interface RunningApp {
  kafka: Kafka;
  redis: Redis;
  workers: Partial<Record<WorkerName, Worker>>;
  stats(): { caption?: CaptionStats; enrich?: EnrichStats; score?: ScoreStats; dump?: DumpStats };
  /** This process's Prometheus instruments (served on /metrics when `serveOps`). */
  metrics: PipelineMetrics;
  /** The /metrics, /healthz, /readyz endpoint, when `serveOps` and PINRICH_METRICS_PORT is not 0. */
  ops?: { port: number };
  /** Stop every worker (in-flight work finishes, groups are left), then close clients. */
  stop(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
  onBatch?: WorkerOptions['onBatch'];
  /** Tick period of the enrich flusher. */
  tickMs?: number;
  /**
   * Serve /metrics, /healthz and /readyz on PINRICH_METRICS_PORT (unless it is 0). `pinrich run`
   * does; the demo, benchmarks and tests that start several apps in one host do not, unless asked.
   */
  serveOps?: boolean;
}

export async function startApp(config: Config, which: readonly WorkerName[], log: Logger, opts: StartOptions = {}): Promise<RunningApp> {
  const clock = opts.clock ?? systemClock;
  const t = topicNames(config);
  const kafka = createKafka(config, log);
  const redis = createRedisFromConfig(config);
  const started: Array<{ worker: Worker }> = [];
  const metrics = createPipelineMetrics();
  registerProcessMetrics(metrics.registry);
  const workers: RunningApp['workers'] = {};
  let publisher: Publisher | undefined;
  let ops: OpsServer | undefined;
  let draining = false;
  try {
    if (opts.serveOps && config.metricsPort !== 0) {
      ops = await startOpsServer({
        port: config.metricsPort,
        registry: metrics.registry,
        liveness: Object.fromEntries(which.map((w) => [w, () => (workers[w]?.health().crashed ? 'consumer crashed and was not restarted' : null)])),
        readiness: {
          draining: () => (draining ? 'stopping' : null),
          ...Object.fromEntries(which.map((w) => [w, () => (workers[w]?.health().joined ? null : 'consumer has not joined its group')])),
          redis: async () => ((await redis.ping().catch(() => 'unreachable')) === 'PONG' ? null : 'Redis does not answer PING'),
        },
      });
      log.info('serving /metrics, /healthz, /readyz', { port: ops.port });
    }
    await pingRedis(redis);
    // Secrets never reach a topic, even when a model server echoes an API key into an error.
    publisher = redactingPublisher(await createPublisher(kafka, { log, timeoutMs: config.kafkaWaitMs }), createRedactor(secretValues(config)));
    let captionStage: ReturnType<typeof createCaptionStage> | undefined;
    let enrichStage: ReturnType<typeof createEnrichStage> | undefined;
    let scoreStage: ReturnType<typeof createScoreStageFromConfig> | undefined;
    let dumpStage: Awaited<ReturnType<typeof createDumpStageFromConfig>> | undefined;

    if (which.includes('caption')) {
      if (!config.vlmBaseUrl) throw new PinrichError('config_invalid', 'PINRICH_VLM_BASE_URL is required to run the caption worker');
      const [{ createCaptioner }, { createOpenAiClient }, { createRedisCaptionCache }, { createRateLimiter }, { instrumentCaptioner }, { retryPolicyOf }, { createCaptionStage }] = await Promise.all([
        import('./adapters/openai/captioner.js'),
        import('./adapters/openai/client.js'),
        import('./adapters/redis/caption-cache.js'),
        import('./adapters/redis/rate-limit.js'),
        import('./runtime/instrument.js'),
        import('./runtime/retry.js'),
        import('./stages/caption/stage.js'),
      ]);
      const client = createOpenAiClient({ baseURL: config.vlmBaseUrl, apiKey: config.vlmApiKey });
      const captioner = instrumentCaptioner(createCaptioner(client, config.vlmModel, config.vlmMaxTokens), metrics);
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
        kafkaWaitMs: config.kafkaWaitMs,
        partitionsConsumedConcurrently: 4,
        maxBatchRecords: 200,
        onBatch: opts.onBatch,
        metrics,
      });
      started.push({ worker: workers.caption });
    }

    if (which.includes('enrich') || which.includes('score')) {
      // Writes the state marker on a fresh deployment; logs loudly when Redis lost the state.
      const store = createRedisEnrichStore(redis, config.redisKeyPrefix, config.enrichDedupTtlSeconds, config.enrichMinePairs);
      await untilKafkaAnswers('enrich state check', () => checkEnrichState(kafka, store, config, log), { log, timeoutMs: config.kafkaWaitMs });
    }

    if (which.includes('enrich')) {
      enrichStage = createEnrichStage({
        requireState: true,
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
        kafkaWaitMs: config.kafkaWaitMs,
        partitionsConsumedConcurrently: 2,
        maxBatchRecords: 2_000,
        tickMs: opts.tickMs ?? 100,
        onBatch: opts.onBatch,
        metrics,
      });
      started.push({ worker: workers.enrich });
    }

    if (which.includes('score')) {
      const { createScoreStageFromConfig, SCORE_WORKER_DEFAULTS } = await import('./stages/score/wire.js');
      scoreStage = createScoreStageFromConfig(config, redis, log, clock, metrics, { requireEnrichState: true });
      workers.score = await startWorker({
        kafka,
        groupId: `${config.groupPrefix}.score`,
        topics: [t.pairs],
        stage: scoreStage,
        publisher,
        log: log.child({ worker: 'score' }),
        clock,
        sessionTimeoutMs: config.kafkaSessionTimeoutMs,
        kafkaWaitMs: config.kafkaWaitMs,
        ...SCORE_WORKER_DEFAULTS,
        onBatch: opts.onBatch,
        metrics,
      });
      started.push({ worker: workers.score });
    }

    if (which.includes('dump')) {
      const { createDumpStageFromConfig, dumpWorkerOptions } = await import('./stages/dump/wire.js');
      dumpStage = await createDumpStageFromConfig(config, log.child({ worker: 'dump' }), clock);
      workers.dump = await startWorker({
        ...dumpWorkerOptions(config),
        kafka,
        stage: dumpStage,
        publisher,
        log: log.child({ worker: 'dump' }),
        clock,
        sessionTimeoutMs: config.kafkaSessionTimeoutMs,
        kafkaWaitMs: config.kafkaWaitMs,
        onBatch: opts.onBatch,
        metrics,
      });
      started.push({ worker: workers.dump });
    }

    let stopping: Promise<void> | undefined;
    const pub = publisher;
    const stats = () => ({ caption: captionStage?.stats(), enrich: enrichStage?.stats(), score: scoreStage?.stats(), dump: dumpStage?.stats() });
    registerStageCollectors(metrics, stats);
    return {
      kafka,
      redis,
      workers,
      stats,
      metrics,
      ...(ops ? { ops: { port: ops.port } } : {}),
      stop() {
        stopping ??= (async () => {
          draining = true;
          await Promise.all(started.map((s) => s.worker.stop()));
          await pub.close();
          redis.disconnect();
          await ops?.close();
        })();
        return stopping;
      },
    };
  } catch (err) {
    await Promise.allSettled(started.map((s) => s.worker.stop()));
    await publisher?.close().catch(() => {});
    redis.disconnect();
    await ops?.close();
    throw err;
  }
}

/**
 * Families read from the stages' own counters at scrape time, so the stages need no metrics
 * code: cache hits, failed captions by code, and every numeric stat as an event count.
 */
export function registerStageCollectors(metrics: PipelineMetrics, stats: () => Record<string, object | undefined>): void {
  const { registry } = metrics;
  registry.collector('pinrich_cache_hits_total', 'Caption or label cache hits (model calls saved)', 'counter', () => {
    const s = stats() as ReturnType<RunningApp['stats']>;
    const out: Sample[] = [];
    if (s.caption) out.push({ labels: { worker: 'caption', cache: 'caption' }, value: s.caption.cacheHits });
    if (s.score) out.push({ labels: { worker: 'score', cache: 'label' }, value: s.score.cacheHits });
    return out;
  });
  registry.collector('pinrich_caption_failures_total', 'Captions published with status "failed", by error code (url_rejected, model_rejected_request, ...)', 'counter', () => {
    const failed = (stats() as ReturnType<RunningApp['stats']>).caption?.failedByCode ?? {};
    return Object.entries(failed).map(([code, value]) => ({ labels: { worker: 'caption', code }, value }));
  });
  registry.collector('pinrich_stage_events_total', "The stages' own counters (stats()), by worker and event: documents, duplicates, labels, rows, ...", 'counter', () => {
    const out: Sample[] = [];
    for (const [worker, st] of Object.entries(stats())) {
      if (!st) continue;
      for (const [event, value] of Object.entries(st)) if (typeof value === 'number') out.push({ labels: { worker, event }, value });
    }
    return out;
  });
}
