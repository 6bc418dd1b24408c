/**
 * The consume loop shared by every worker (one Kafka consumer group per stage).
 *
 * Delivery rule: for each batch (one topic-partition), the stage's outputs and dead letters are
 * published with acks=all, then the stage's `commit` runs, and only then are the offsets
 * committed. A crash at any point replays the batch; stages make replays harmless (dedup by
 * event id, content hashes, cache keys, deterministic object names).
 *
 * Infrastructure errors thrown by a stage (Redis down, broker unavailable) never dead-letter
 * records: the same batch is retried with backoff until it succeeds or the worker stops.
 */
import { setMaxListeners } from 'node:events';
import { PartitionAssigners, type Consumer, type EachBatchPayload, type Kafka } from 'kafkajs';
import type { OutMessage, Publisher } from '../adapters/kafka/client.js';
import { CoPartitionedAssigner } from '../adapters/kafka/co-partitioned-assigner.js';
import { isTransientKafkaError, untilKafkaAnswers } from '../adapters/kafka/transient.js';
import { describeError } from '../errors.js';
import type { Clock } from './clock.js';
import { deadLetterMessage } from './dead-letter.js';
import type { Logger } from './log.js';
import type { PipelineMetrics } from './metrics.js';
import { inRecordOf, type InRecord, type Stage, type StageContext, type StageResult } from './stage.js';
import { backoffDelay, sleep } from './retry.js';

export interface WorkerOptions {
  kafka: Kafka;
  groupId: string;
  topics: readonly string[];
  stage: Stage;
  publisher: Publisher;
  log: Logger;
  clock: Clock;
  /** How long the group waits for a silent (crashed) member before reassigning its partitions. */
  sessionTimeoutMs?: number;
  /** Partitions processed concurrently by this instance. */
  partitionsConsumedConcurrently?: number;
  /** How often `stage.tick` runs, when the stage has one. */
  tickMs?: number;
  /** Records handed to the stage at once; kafkajs batches are split into chunks of this size. */
  maxBatchRecords?: number;
  /**
   * Partition N of every input topic goes to the same instance (adapters/kafka/co-partitioned-assigner.ts):
   * for a stage whose unit of work is an input partition across its topics (enrich).
   */
  coPartitioned?: boolean;
  /**
   * A fetch's minimum bytes and longest wait at the broker (kafkajs' minBytes, maxWaitTimeInMs;
   * its defaults 1 and 5,000 ms): at moderate rates fuller fetches cost less CPU per record.
   */
  fetchMinBytes?: number;
  fetchMaxWaitMs?: number;
  /** Prometheus instruments (records, dead letters, batch time, lag), labelled worker=<stage name>. */
  metrics?: PipelineMetrics;
  /**
   * How long to wait for an unreachable Kafka cluster: at start-up, and to restart the consumer
   * after a crash kafkajs gives up on. After that the worker reports itself dead (health().crashed).
   */
  kafkaWaitMs?: number;
  /** Called after every committed batch (progress reporting, tests). */
  onBatch?: (info: { topic: string; partition: number; records: number; outputs: number; rejected: number }) => void;
}

export interface Worker {
  /** Resolves once the consumer has joined its group and is fetching. */
  readonly started: Promise<void>;
  /** Finish in-flight batches, commit, leave the group, close the stage. Idempotent. */
  stop(): Promise<void>;
  /** Counters since start. */
  stats(): { records: number; outputs: number; rejected: number; batches: number; ticks: number };
  /**
   * For health endpoints: `joined` while the consumer is a group member (from its first join
   * until it stops or crashes); `crashed` once the consumer could not be restarted (a dead worker).
   */
  health(): { joined: boolean; crashed: boolean };
}

/** Group-membership errors of the Kafka protocol: only a rejoin fixes them, not a retry. */
const MEMBERSHIP_ERRORS = new Set(['UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'FENCED_INSTANCE_ID']);
/**
 * The group is rebalancing (kafkajs' own test, isRebalancing). kafkajs rejoins only once every
 * eachBatch call has returned, and a batch's isStale() does not tell a rebalance (only a seek):
 * a batch held through one holds the whole group's rebalance, up to the rebalance timeout.
 */
const REBALANCING_ERRORS = new Set(['REBALANCE_IN_PROGRESS', 'NOT_COORDINATOR_FOR_GROUP', 'ILLEGAL_GENERATION']);
const rebalancingIn = (err: unknown): boolean => protocolErrorIn(err, REBALANCING_ERRORS) !== undefined;

/** The Kafka protocol error (the one with the `type`) of one of `types` that `err` is or wraps. */
function protocolErrorIn(err: unknown, types: ReadonlySet<string>): Error | undefined {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (types.has(String((e as { type?: unknown }).type))) return e as Error;
  }
  return undefined;
}
/**
 * The protocol error (the one with the `type`) when `err` is or wraps a membership error.
 * kafkajs wraps it in a KafkaJSNonRetriableError when its retrier gives up, but its consume loop
 * rejoins only on the bare error: the wrapper would crash the consumer for good.
 */
function membershipErrorIn(err: unknown): Error | undefined {
  return protocolErrorIn(err, MEMBERSHIP_ERRORS);
}

/** What withRetry returns when it gave a batch up (see there). */
const ABANDONED: unique symbol = Symbol('abandoned');

export async function startWorker(opts: WorkerOptions): Promise<Worker> {
  const { kafka, stage, publisher, log, clock } = opts;
  const consumer: Consumer = kafka.consumer({
    groupId: opts.groupId,
    sessionTimeout: opts.sessionTimeoutMs ?? 30_000,
    rebalanceTimeout: 60_000,
    heartbeatInterval: 3_000,
    maxBytesPerPartition: 1024 * 1024,
    minBytes: opts.fetchMinBytes ?? 1,
    maxWaitTimeInMs: opts.fetchMaxWaitMs ?? 5_000,
    allowAutoTopicCreation: false,
    // Round robin second: only chosen while a member of an older pinrich (round robin alone) is in
    // the group, so a rolling upgrade can join; once every member offers both, this one is chosen.
    ...(opts.coPartitioned ? { partitionAssigners: [CoPartitionedAssigner, PartitionAssigners.roundRobin] } : {}),
  });
  const abort = new AbortController();
  // Every in-flight model call and backoff sleep listens on this signal: many at once is normal.
  setMaxListeners(0, abort.signal);
  const stats = { records: 0, outputs: 0, rejected: 0, batches: 0, ticks: 0 };
  const assigned = new Map<string, number[]>();
  let stopping: Promise<void> | undefined;

  const metrics = opts.metrics;
  const worker = { worker: stage.name };
  const health = { joined: false, crashed: false };
  const setJoined = (joined: boolean) => {
    health.joined = joined;
    metrics?.workerJoined.set(worker, joined ? 1 : 0);
  };
  setJoined(false);
  // kafkajs restarts the consumer after a crash it deems retriable. Some it does not are only an
  // unreachable cluster (no group coordinator while a broker restarts) or a lost membership
  // (a rejoin fixes it): those we restart ourselves, with backoff, for up to kafkaWaitMs; after
  // that the worker is dead.
  const kafkaWaitMs = opts.kafkaWaitMs ?? 120_000;
  let down: { since: number; attempts: number } | undefined;
  let restartTimer: NodeJS.Timeout | undefined;
  consumer.on(consumer.events.CRASH, (e) => {
    setJoined(false);
    if (e.payload.restart) return;
    const error = describeError(e.payload.error);
    down ??= { since: Date.now(), attempts: 0 };
    const restartable = isTransientKafkaError(e.payload.error) || membershipErrorIn(e.payload.error) !== undefined;
    if (stopping || !restartable || Date.now() - down.since > kafkaWaitMs) {
      health.crashed = true;
      if (!stopping) log.error('consumer crashed and will not be restarted', { group: opts.groupId, error });
      return;
    }
    const delayMs = 500 + backoffDelay(++down.attempts, 500, 5_000);
    log.warn('consumer crashed on an error a restart fixes; restarting it', { group: opts.groupId, delayMs: Math.round(delayMs), error });
    restartTimer = setTimeout(() => {
      if (!stopping) void consumer.run(runConfig);
    }, delayMs);
  });
  consumer.on(consumer.events.STOP, () => setJoined(false));

  let resolveStarted!: () => void;
  const started = new Promise<void>((r) => (resolveStarted = r));
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    setJoined(true);
    down = undefined;
    // Lag of partitions this member no longer owns would go stale; owned ones reappear on their next batch.
    metrics?.consumerLag.remove(worker);
    assigned.clear();
    for (const [topic, parts] of Object.entries(e.payload.memberAssignment)) assigned.set(topic, [...parts]);
    log.info('joined group', { group: opts.groupId, assignment: e.payload.memberAssignment });
    stage.onAssignment?.(assigned);
    resolveStarted();
  });

  /** Publish a stage result, then run its commit. Retries infrastructure errors until stopped. */
  async function deliver(result: StageResult): Promise<void> {
    const now = new Date(clock.now());
    const messages = [...result.rejected.map((r) => deadLetterMessage(stage.name, r, now))];
    // Outputs an input partition's owner publishes go out in that partition's transaction; a
    // refused one (another instance took the partition over) is reported to the stage's commit.
    const owned = new Map<number, OutMessage[]>();
    for (const m of result.outputs) {
      if (m.ownerPartition === undefined || !stage.partitionedPublisher) messages.push(m);
      else owned.get(m.ownerPartition)?.push(m) ?? owned.set(m.ownerPartition, [m]);
    }
    const fenced = new Set<number>();
    await Promise.all([
      publisher.publish(messages),
      ...[...owned].map(async ([partition, msgs]) => {
        if ((await stage.partitionedPublisher!.publish(partition, msgs)) === 'fenced') fenced.add(partition);
      }),
    ]);
    if (result.commit) await result.commit(fenced);
    // A stage that makes records durable on its tick (enrich) commits their offsets here, after
    // its outputs are published and its commit ran. On failure the stage offers them again.
    if (result.commitOffsets?.length) {
      await consumer.commitOffsets(result.commitOffsets);
      stage.committed?.(result.commitOffsets);
    }
    stats.outputs += result.outputs.length;
    stats.rejected += result.rejected.length;
    if (metrics) {
      for (const m of result.outputs) if (m.ownerPartition === undefined || !fenced.has(m.ownerPartition)) metrics.recordsOut.inc({ worker: stage.name, topic: m.topic });
      for (const r of result.rejected) metrics.deadLetters.inc({ worker: stage.name, topic: r.record.topic, code: r.code });
    }
  }

  /**
   * Retry `fn` with backoff until it succeeds. With `batch`, a long hold (an outage can last
   * minutes) keeps heartbeating so the group does not evict this member, and gives up
   * (returns ABANDONED, nothing committed) once the batch is stale or the consumer stopping:
   * the partition's records are redelivered to whoever owns it next.
   */
  async function withRetry<T>(what: string, fn: () => Promise<T>, batch?: Pick<EachBatchPayload, 'isRunning' | 'isStale' | 'heartbeat'>): Promise<T | typeof ABANDONED> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (abort.signal.aborted) throw err;
        if (batch && (!batch.isRunning() || batch.isStale())) return ABANDONED;
        // This member was evicted (e.g. a stall longer than the session timeout) and kafkajs has
        // not noticed: retrying here would spin forever. kafkajs rejoins when eachBatch throws, and
        // the uncommitted records are redelivered to whoever owns the partition next.
        const membership = membershipErrorIn(err);
        if (membership) throw membership;
        // A rebalance: give the batch up so this member rejoins at once (its records are
        // redelivered to whoever owns the partition next, from the committed offset).
        if (batch && rebalancingIn(err)) return ABANDONED;
        metrics?.batchRetries.inc(worker);
        const delay = backoffDelay(attempt, 200, 10_000);
        log.warn(`${what} failed; retrying the same batch`, { attempt, delayMs: Math.round(delay), error: describeError(err) });
        if (!batch) await sleep(delay, abort.signal);
        else {
          for (let left = delay; left > 0 && batch.isRunning() && !batch.isStale(); left -= 2_000) {
            await sleep(Math.min(left, 2_000), abort.signal);
            const beat = await batch.heartbeat().then(() => undefined, (e: unknown) => e);
            if (beat !== undefined && (rebalancingIn(beat) || membershipErrorIn(beat))) return ABANDONED; // the next fetch rejoins
          }
        }
      }
    }
  }

  const maxChunk = opts.maxBatchRecords ?? 500;
  async function eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, isRunning, isStale, resolveOffset } = payload;
    const ctx: StageContext = { signal: abort.signal, heartbeat: () => heartbeat() };
    for (let i = 0; i < batch.messages.length; i += maxChunk) {
      if (!isRunning() || isStale()) return; // leave the rest uncommitted: it will be redelivered
      const chunk = batch.messages.slice(i, i + maxChunk);
      const chunkStarted = performance.now();
      const records: InRecord[] = chunk.map((m) => inRecordOf(batch.topic, batch.partition, m));
      const result = await withRetry(
        `${stage.name} batch`,
        async () => {
          const r = await stage.handle(records, ctx);
          await deliver(r);
          return r;
        },
        payload,
      );
      if (result === ABANDONED) return; // stopping or rebalanced: redelivered, nothing committed
      const last = chunk[chunk.length - 1]!.offset;
      // Fetch past this chunk even when the stage holds its offsets uncommitted: kafkajs fetches
      // from the last *resolved* offset (eachBatchAutoResolve is off), not the last committed one.
      resolveOffset(last);
      // A stage may hold records across batches (StageResult.commitOffset): commit only what it says is durable.
      const commitAt = result.commitOffset === undefined ? (BigInt(last) + 1n).toString() : result.commitOffset;
      if (commitAt !== null) {
        // Through the batch's own commit, not consumer.commitOffsets: once SIGTERM has called
        // consumer.stop(), kafkajs' consumer.commitOffsets returns without committing ("consumer
        // not running"), so a drained batch would be published and then redelivered. This one
        // commits under the batch's generation (a fenced member is still rejected by the broker).
        const offsets = { topics: [{ topic: batch.topic, partitions: [{ partition: batch.partition, offset: commitAt }] }] };
        const committed = await withRetry('offset commit', () => payload.commitOffsetsIfNecessary(offsets), payload);
        if (committed === ABANDONED) return;
      }
      stats.records += records.length;
      stats.batches++;
      if (metrics) {
        metrics.recordsIn.inc({ worker: stage.name, topic: batch.topic }, records.length);
        metrics.batchDuration.observe(worker, (performance.now() - chunkStarted) / 1000);
        // highWatermark is the offset of the next record to be written: lag = hwm - (last + 1).
        const lag = Number(BigInt(batch.highWatermark) - BigInt(last) - 1n);
        metrics.consumerLag.set({ worker: stage.name, topic: batch.topic, partition: batch.partition }, Math.max(0, lag));
      }
      opts.onBatch?.({ topic: batch.topic, partition: batch.partition, records: records.length, outputs: result.outputs.length, rejected: result.rejected.length });
      await heartbeat();
    }
  }

  const runConfig = {
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: opts.partitionsConsumedConcurrently ?? 1,
    eachBatch,
  };
  const waitFor = { log, timeoutMs: kafkaWaitMs, signal: abort.signal };
  await untilKafkaAnswers(`${opts.groupId}: connect`, () => consumer.connect(), waitFor);
  await untilKafkaAnswers(`${opts.groupId}: subscribe to ${opts.topics.join(', ')}`, async () => {
    for (const topic of opts.topics) await consumer.subscribe({ topic, fromBeginning: true });
  }, waitFor);
  // Never throws: a failed join is a CRASH event (above).
  await consumer.run(runConfig);

  // Periodic stage work (coalesced flushes). Serialised: one tick at a time.
  let tickTimer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;
  let ticksStopped = false;
  if (stage.tick) {
    const tick = stage.tick.bind(stage);
    const ctx: StageContext = { signal: abort.signal, heartbeat: async () => {} };
    let moreDue = false;
    const tickMs = opts.tickMs ?? 250;
    let lastStart = performance.now(); // the first tick one period after the start, as before
    const loop = () => {
      // The period runs from one tick's start to the next, so a tick that took long (a busy
      // tick's publish and commit) is not followed by a whole period more of waiting: records that
      // came due meanwhile wait at most one period. A tick longer than the period is followed at
      // once (still through the timer queue, so fetched batches are handled in between).
      // Work left due (StageResult.moreDue): the next tick now.
      const delay = moreDue ? 0 : Math.max(0, tickMs - (performance.now() - lastStart));
      tickTimer = setTimeout(() => {
        lastStart = performance.now();
        ticking = (async () => {
          moreDue = false;
          try {
            const result = await tick(assigned, ctx);
            await deliver(result);
            stats.ticks++;
            moreDue = result.moreDue === true;
          } catch (err) {
            if (!abort.signal.aborted) log.warn(`${stage.name} tick failed; will retry`, { error: describeError(err) });
          }
        })().finally(() => {
          ticking = undefined;
          if (!abort.signal.aborted && !ticksStopped) loop();
        });
      }, delay);
    };
    loop();
  }

  return {
    started,
    stats: () => ({ ...stats }),
    health: () => ({ ...health }),
    stop() {
      stopping ??= (async () => {
        log.info('stopping: finishing in-flight work', { group: opts.groupId });
        ticksStopped = true;
        if (tickTimer) clearTimeout(tickTimer);
        clearTimeout(restartTimer);
        if (stage.commitsOnTick && stage.tick) {
          // The stage's records become durable on its tick, and their offsets can only be
          // committed while this instance is a group member: stop fetching, make what it holds
          // durable and committed with a last tick, then leave the group. Records that a running
          // batch still hands it after that are uncommitted: the next owner gets them.
          await ticking;
          consumer.pause([...assigned.keys()].map((topic) => ({ topic })));
          try {
            await deliver(await stage.tick(assigned, { signal: abort.signal, heartbeat: async () => {} }));
          } catch (err) {
            log.warn('final tick failed; the next owner of these partitions will flush', { error: describeError(err) });
          }
          await consumer.stop();
        }
        // kafkajs waits for the running eachBatch to finish before leaving the group.
        await consumer.stop();
        await ticking;
        // One last tick so coalesced work is not left waiting for the next owner.
        if (stage.tick && !stage.commitsOnTick) {
          try {
            await deliver(await stage.tick(assigned, { signal: abort.signal, heartbeat: async () => {} }));
          } catch (err) {
            log.warn('final tick failed; the next owner of these partitions will flush', { error: describeError(err) });
          }
        }
        abort.abort();
        await consumer.disconnect();
        await stage.close();
        log.info('stopped', { group: opts.groupId, ...stats });
      })();
      return stopping;
    },
  };
}
