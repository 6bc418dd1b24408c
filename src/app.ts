/**
 * The composition root: builds real clients from the config and wires them into stages and
 * workers. The CLI, the demo and the integration tests all start workers through here, so
 * they run exactly the production wiring.
 */
import type { Kafka } from 'kafkajs';
import { createKafka, createPublisher, type Publisher } from './adapters/kafka/client.js';
import { untilKafkaAnswers } from './adapters/kafka/transient.js';
import { createRedisFromConfig, type Redis } from './adapters/redis/client.js';
import { untilRedisAnswers } from './adapters/redis/wait.js';
import { createRedisEnrichStore } from './adapters/redis/enrich-state.js';
import { secretValues, type Config } from './config.js';
import { systemClock, type Clock } from './runtime/clock.js';
import { tuneHeapFor } from './runtime/heap.js';
import type { Logger } from './runtime/log.js';
import { createPipelineMetrics, registerProcessMetrics, type PipelineMetrics, type Sample } from './runtime/metrics.js';
import { startOpsServer, type OpsServer } from './runtime/ops-server.js';
import { createRedactor, redactingPublisher } from './runtime/redact.js';
import { startWorker, type Worker, type WorkerOptions } from './runtime/worker.js';
import { checkEnrichState } from './stages/enrich/rebuild.js';
import { subscriptionOf, WORKER_NAMES, WORKERS, type WorkerName, type WorkerStats } from './workers.js';

export { WORKER_NAMES, type WorkerName } from './workers.js';

export interface RunningApp {
  kafka: Kafka;
  redis: Redis;
  workers: Partial<Record<WorkerName, Worker>>;
  stats(): { [N in WorkerName]?: WorkerStats[N] };
  /** This process's Prometheus instruments (served on /metrics when `serveOps`). */
  metrics: PipelineMetrics;
  /** The /metrics, /healthz, /readyz endpoint, when `serveOps` and PINRICH_METRICS_PORT is not 0. */
  ops?: { port: number };
  /** The V8 flags this process set for its workers at start (src/runtime/heap.ts). */
  heapFlags: readonly string[];
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
  /**
   * Ends the start-up wait for an unreachable Redis (the start then rejects with `aborted`): a
   * SIGTERM while Redis is down stops the process instead of waiting PINRICH_REDIS_WAIT_MS.
   * Nothing has joined a group yet at that point, so there is nothing to drain.
   */
  signal?: AbortSignal;
}

/**
 * Start the workers `which` (each from its entry in the registry, src/workers.ts, in registry
 * order) on one Kafka client, one publisher and one Redis connection.
 */
export async function startApp(config: Config, which: readonly WorkerName[], log: Logger, opts: StartOptions = {}): Promise<RunningApp> {
  const clock = opts.clock ?? systemClock;
  // Before anything allocates much: the heap growing factor of a process that runs this worker
  // alone (src/runtime/heap.ts).
  const heapFlags = tuneHeapFor(which);
  if (heapFlags.length) log.info('V8 heap tuned for this worker', { flags: heapFlags.join(' ') });
  const kafka = createKafka(config, log);
  const redis = createRedisFromConfig(config);
  const started: Worker[] = [];
  const metrics = createPipelineMetrics();
  registerProcessMetrics(metrics.registry);
  const workers: RunningApp['workers'] = {};
  const stages: { [N in WorkerName]?: { stats(): WorkerStats[N] } } = {};
  const selected = WORKER_NAMES.filter((name) => which.includes(name));
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
    // Says within seconds which Redis it waits for, and waits (like Kafka) instead of exiting.
    await untilRedisAnswers(redis, config.redisUrl, { log, timeoutMs: config.redisWaitMs, ...(opts.signal ? { signal: opts.signal } : {}) });
    // Secrets never reach a topic, even when a model server echoes an API key into an error.
    publisher = redactingPublisher(await createPublisher(kafka, { log, timeoutMs: config.kafkaWaitMs }), createRedactor(secretValues(config)));
    let enrichStateChecked = false;
    for (const name of selected) {
      const def = WORKERS[name];
      if (def.usesEnrichState && !enrichStateChecked) {
        // Writes the state marker on a fresh deployment; logs loudly when Redis lost the state.
        const store = createRedisEnrichStore(redis, config.redisKeyPrefix, config.enrichDedupTtlSeconds, config.enrichMinePairs);
        await untilKafkaAnswers('enrich state check', () => checkEnrichState(kafka, store, config, log), { log, timeoutMs: config.kafkaWaitMs });
        enrichStateChecked = true;
      }
      const stage = await def.wire({ config, kafka, redis, log, clock, metrics });
      (stages as Record<WorkerName, { stats(): unknown }>)[name] = stage;
      const worker = await startWorker({
        ...subscriptionOf(name, config, { tickMs: opts.tickMs }),
        kafka,
        stage,
        publisher,
        log: log.child({ worker: name }),
        clock,
        sessionTimeoutMs: config.kafkaSessionTimeoutMs,
        kafkaWaitMs: config.kafkaWaitMs,
        onBatch: opts.onBatch,
        metrics,
      });
      workers[name] = worker;
      started.push(worker);
    }

    let stopping: Promise<void> | undefined;
    const pub = publisher;
    const stats = () => Object.fromEntries(selected.map((name) => [name, stages[name]?.stats()])) as ReturnType<RunningApp['stats']>;
    registerStageCollectors(metrics, stats);
    return {
      kafka,
      redis,
      workers,
      heapFlags,
      stats,
      metrics,
      ...(ops ? { ops: { port: ops.port } } : {}),
      stop() {
        stopping ??= (async () => {
          draining = true;
          await Promise.all(started.map((w) => w.stop()));
          await pub.close();
          redis.disconnect();
          await ops?.close();
        })();
        return stopping;
      },
    };
  } catch (err) {
    await Promise.allSettled(started.map((w) => w.stop()));
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
