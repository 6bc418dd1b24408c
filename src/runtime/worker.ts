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
import type { Consumer, EachBatchPayload, Kafka } from 'kafkajs';
import type { Publisher } from '../adapters/kafka/client.js';
import { describeError } from '../errors.js';
import type { Clock } from './clock.js';
import { deadLetterMessage } from './dead-letter.js';
import type { Logger } from './log.js';
import type { InRecord, Stage, StageContext, StageResult } from './stage.js';
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
}

export async function startWorker(opts: WorkerOptions): Promise<Worker> {
  const { kafka, stage, publisher, log, clock } = opts;
  const consumer: Consumer = kafka.consumer({
    groupId: opts.groupId,
    sessionTimeout: opts.sessionTimeoutMs ?? 30_000,
    rebalanceTimeout: 60_000,
    heartbeatInterval: 3_000,
    maxBytesPerPartition: 1024 * 1024,
    allowAutoTopicCreation: false,
  });
  const abort = new AbortController();
  const stats = { records: 0, outputs: 0, rejected: 0, batches: 0, ticks: 0 };
  const assigned = new Map<string, number[]>();
  let stopping: Promise<void> | undefined;

  let resolveStarted!: () => void;
  const started = new Promise<void>((r) => (resolveStarted = r));
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    assigned.clear();
    for (const [topic, parts] of Object.entries(e.payload.memberAssignment)) assigned.set(topic, [...parts]);
    log.info('joined group', { group: opts.groupId, assignment: e.payload.memberAssignment });
    stage.onAssignment?.(assigned);
    resolveStarted();
  });

  /** Publish a stage result, then run its commit. Retries infrastructure errors until stopped. */
  async function deliver(result: StageResult): Promise<void> {
    const now = new Date(clock.now());
    const messages = [...result.outputs, ...result.rejected.map((r) => deadLetterMessage(stage.name, r, now))];
    await publisher.publish(messages);
    if (result.commit) await result.commit();
    stats.outputs += result.outputs.length;
    stats.rejected += result.rejected.length;
  }

  async function withRetry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (abort.signal.aborted) throw err;
        const delay = backoffDelay(attempt, 200, 10_000);
        log.warn(`${what} failed; retrying the same batch`, { attempt, delayMs: Math.round(delay), error: describeError(err) });
        await sleep(delay, abort.signal);
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
      const records: InRecord[] = chunk.map((m) => ({
        topic: batch.topic,
        partition: batch.partition,
        offset: m.offset,
        key: m.key === null ? null : m.key.toString('utf8'),
        value: m.value,
        timestamp: Number(m.timestamp),
      }));
      const result = await withRetry(`${stage.name} batch`, async () => {
        const r = await stage.handle(records, ctx);
        await deliver(r);
        return r;
      });
      const last = chunk[chunk.length - 1]!.offset;
      // Fetch past this chunk even when the stage holds its offsets uncommitted: kafkajs fetches
      // from the last *resolved* offset (eachBatchAutoResolve is off), not the last committed one.
      resolveOffset(last);
      // A stage may hold records across batches (StageResult.commitOffset): commit only what it says is durable.
      const commitAt = result.commitOffset === undefined ? (BigInt(last) + 1n).toString() : result.commitOffset;
      if (commitAt !== null) {
        await withRetry('offset commit', () => consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: commitAt }]));
      }
      stats.records += records.length;
      stats.batches++;
      opts.onBatch?.({ topic: batch.topic, partition: batch.partition, records: records.length, outputs: result.outputs.length, rejected: result.rejected.length });
      await heartbeat();
    }
  }

  await consumer.connect();
  for (const topic of opts.topics) await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: opts.partitionsConsumedConcurrently ?? 1,
    eachBatch,
  });

  // Periodic stage work (coalesced flushes). Serialised: one tick at a time.
  let tickTimer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;
  if (stage.tick) {
    const tick = stage.tick.bind(stage);
    const ctx: StageContext = { signal: abort.signal, heartbeat: async () => {} };
    const loop = () => {
      tickTimer = setTimeout(() => {
        ticking = (async () => {
          try {
            const result = await tick(assigned, ctx);
            await deliver(result);
            stats.ticks++;
          } catch (err) {
            if (!abort.signal.aborted) log.warn(`${stage.name} tick failed; will retry`, { error: describeError(err) });
          }
        })().finally(() => {
          ticking = undefined;
          if (!abort.signal.aborted) loop();
        });
      }, opts.tickMs ?? 250);
    };
    loop();
  }

  return {
    started,
    stats: () => ({ ...stats }),
    stop() {
      stopping ??= (async () => {
        log.info('stopping: finishing in-flight work', { group: opts.groupId });
        if (tickTimer) clearTimeout(tickTimer);
        // kafkajs waits for the running eachBatch to finish before leaving the group.
        await consumer.stop();
        await ticking;
        // One last tick so coalesced work is not left waiting for the next owner.
        if (stage.tick) {
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
