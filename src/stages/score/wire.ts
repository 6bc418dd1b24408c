/**
 * Wiring of the score stage from the config: the teacher client, the label cache, the shared
 * rate limits and the document store, all on the given Redis connection. The composition root
 * (app.ts) starts the worker around it with the registry's settings (src/workers.ts).
 */
import { createOpenAiClient } from '../../adapters/openai/client.js';
import { createClassifyTeacher, createCompletionsTeacher, createTeacher } from '../../adapters/openai/teacher.js';
import type { Redis } from '../../adapters/redis/client.js';
import { createRedisDocumentReader } from '../../adapters/redis/documents.js';
import { redisKeys } from '../../adapters/redis/keys.js';
import { createRedisLabelCache } from '../../adapters/redis/label-cache.js';
import { createRateLimiter } from '../../adapters/redis/rate-limit.js';
import { topics, type Config } from '../../config.js';
import { PinrichError } from '../../errors.js';
import type { Clock } from '../../runtime/clock.js';
import { instrumentTeacher } from '../../runtime/instrument.js';
import type { Logger } from '../../runtime/log.js';
import type { PipelineMetrics } from '../../runtime/metrics.js';
import { retryPolicyOf } from '../../runtime/retry.js';
import { createScoreStage, type ScoreStats } from './stage.js';
import type { Stage } from '../../runtime/stage.js';

/** Worker options that suit the score stage: its consumer settings in the worker registry. */
export { SCORE_CONSUMER as SCORE_WORKER_DEFAULTS } from '../../workers.js';

/**
 * Build the score stage from the config. Throws config_invalid when no teacher URL is set.
 * `requireEnrichState` (the app sets it): a missing document while the enrich state marker is
 * absent holds the batch instead of dead-lettering its pairs (see stages/enrich/rebuild.ts).
 */
export function createScoreStageFromConfig(
  config: Config,
  redis: Redis,
  log: Logger,
  clock: Clock,
  metrics?: PipelineMetrics,
  opts: { requireEnrichState?: boolean } = {},
): Stage & { stats(): ScoreStats } {
  if (!config.teacherBaseUrl) throw new PinrichError('config_invalid', 'PINRICH_TEACHER_BASE_URL is required to run the score worker');
  const client = createOpenAiClient({ baseURL: config.teacherBaseUrl, apiKey: config.teacherApiKey });
  const scoreLog = log.child({ worker: 'score' });
  const generative = {
    maxTokens: config.teacherMaxTokens,
    constrain: config.teacherConstrain,
    onConstraintRejected: (reason: string) =>
      scoreLog.warn('the teacher server rejects constrained decoding (grammar / structured_outputs); asking without it from now on', { reason }),
  };
  const bare =
    config.teacherApi === 'classify'
      ? createClassifyTeacher(client, config.teacherModel, config.teacherClassLevels)
      : config.teacherApi === 'completions'
        ? createCompletionsTeacher(client, config.teacherModel, config.teacherTopLogprobs, config.teacherBatch, generative)
        : createTeacher(client, config.teacherModel, config.teacherTopLogprobs, generative);
  const teacher = metrics ? instrumentTeacher(bare, metrics) : bare;
  return createScoreStage({
    teacher,
    cache: createRedisLabelCache(redis, config.redisKeyPrefix, config.scoreCacheTtlSeconds),
    // stateReady only when asked: without it a missing document is dead-lettered after its reads.
    documents: (({ getDocument, stateReady }) => (opts.requireEnrichState ? { getDocument, stateReady } : { getDocument }))(
      createRedisDocumentReader(redis, redisKeys(config.redisKeyPrefix)),
    ),
    limiter: createRateLimiter(redis, `${config.redisKeyPrefix}ratelimit:teacher:${config.teacherModel}`, {
      requestsPerSecond: config.teacherRequestsPerSecond,
      tokensPerMinute: config.teacherTokensPerMinute,
    }),
    retry: retryPolicyOf(config),
    // PINRICH_TEACHER_CONCURRENCY counts requests; a completions request carries up to PINRICH_TEACHER_BATCH pairs.
    concurrency: config.teacherApi === 'completions' ? config.teacherConcurrency * config.teacherBatch : config.teacherConcurrency,
    docMaxAttempts: config.scoreDocMaxAttempts,
    docRetryBaseMs: config.scoreDocRetryMs,
    maxRecordBytes: config.maxRecordBytes,
    topics: topics(config),
    clock,
    log: scoreLog,
  });
}
