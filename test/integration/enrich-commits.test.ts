/**
 * What the enrich stage tells the worker to commit and which due pins its tick publishes, on
 * the real Redis state.
 *
 * The enrich stage commits offsets from its tick, for records its state covers. A record the
 * state covers but this instance has not handed back yet (replayed by `enrich rebuild`, or
 * applied by an instance that crashed before its Kafka commit) still owes its dead letter, and
 * only this pass publishes it: a commit past it would skip the record on the next rejoin, and its
 * dead letter would be lost. So commits stop at what the worker delivered.
 *
 * A tick publishes the oldest due pins across every partition, up to its budget. A steady load
 * keeps partition 0 with more due pins than one tick's budget; a tick that took partition 0's
 * pins first left the later partitions' pins unpublished for as long as the load lasted (the
 * freshness bench saw seconds).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { PartitionedPublisher } from '../../src/adapters/kafka/client.js';
import { createRedisFromConfig, type Redis } from '../../src/adapters/redis/client.js';
import { createRedisEnrichStore } from '../../src/adapters/redis/enrich-state.js';
import { redisKeys } from '../../src/adapters/redis/keys.js';
import type { Config } from '../../src/config.js';
import { topics as topicNames } from '../../src/config.js';
import { systemClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import type { InRecord, StageResult } from '../../src/runtime/stage.js';
import { createEnrichStage } from '../../src/stages/enrich/stage.js';
import type { EnrichStateStore } from '../../src/stages/enrich/ports.js';
import { partitionOf } from '../../src/adapters/kafka/partitioner.js';
import { testConfig, waitFor } from '../support/harness.js';

describe.skipIf(!inject('stack'))('enrich stage commits', () => {
  let redis: Redis;
  let config: Config;
  beforeAll(async () => {
    config = testConfig();
    redis = createRedisFromConfig(config);
    await redis.ping();
  });
  afterAll(() => redis?.disconnect());

  const stageOn = (prefix: string, publisher?: PartitionedPublisher) =>
    createEnrichStage({
      ...(publisher ? { publisher } : {}),
      store: createRedisEnrichStore(redis, redisKeys(prefix), 3_600, false),
      topics: topicNames(config),
      topK: 10,
      windowMs: 0,
      minePairs: false,
      maxRecordBytes: config.maxRecordBytes,
      requireState: true,
      fence: true,
      clock: systemClock,
      log: silentLogger,
    });

  /** 100 engagement records of partition 0; the one at offset 50 is not JSON. */
  const records = (topic: string): InRecord[] =>
    Array.from({ length: 100 }, (_, i) => ({
      topic,
      partition: 0,
      offset: String(i),
      key: `pin-${i % 7}`,
      value: Buffer.from(
        i === 50
          ? '{not json'
          : JSON.stringify({ schema: 'engagement_event', schema_version: 1, event_id: `e-${i}`, pin_id: `pin-${i % 7}`, event_time: '2026-12-01T00:00:00.000Z', user_id: 'u', type: 'search_click', query: `query ${i % 3}` }),
      ),
      timestamp: Date.now(),
    }));

  const ctx = { signal: new AbortController().signal, heartbeat: async () => {} };
  const committedAt = (r: StageResult, topic: string) => r.commitOffsets?.find((c) => c.topic === topic && c.partition === 0)?.offset;

  it('never commits past a record whose dead letter the worker has not published, even when the state covers it', async () => {
    const prefix = `${config.redisKeyPrefix}commits-${randomUUID().slice(0, 8)}:`;
    const topic = topicNames(config).engagement;
    const assigned = new Map([[topic, [0]]]);
    const all = records(topic);
    const store = createRedisEnrichStore(redis, redisKeys(prefix), 3_600, false);
    await store.markStateReady({ source: 'fresh', at: new Date().toISOString() }, [0]);

    // An instance applies all 100 records to the state, then dies before any Kafka commit.
    const first = stageOn(prefix);
    first.onAssignment?.(assigned);
    expect((await first.handle(all, ctx)).rejected.map((r) => r.record.offset)).toEqual(['50']);
    await first.flushState();

    // Its successor gets them again from the committed offset (0), in two batches.
    const next = stageOn(prefix);
    next.onAssignment?.(assigned);
    const a = await next.handle(all.slice(0, 40), ctx);
    expect(a.rejected).toEqual([]);
    // Not delivered yet: nothing is committed, although the state covers all 100.
    expect(committedAt(await next.tick!(assigned, ctx), topic)).toBeUndefined();
    await a.commit?.();
    expect(committedAt(await next.tick!(assigned, ctx), topic)).toBe('40');

    // The batch with the bad record: its dead letter is due from this pass (the state has the
    // record's offset, not its dead letter), and the commit waits for its delivery.
    const b = await next.handle(all.slice(40), ctx);
    expect(b.rejected.map((r) => [r.record.offset, r.code])).toEqual([['50', 'malformed_json']]);
    expect(committedAt(await next.tick!(assigned, ctx), topic) ?? '40').toBe('40');
    await b.commit?.();
    expect(committedAt(await next.tick!(assigned, ctx), topic)).toBe('100');
  });

  it('never lets an older flush\'s commit point replace a newer one (the last offsets of a backlog get committed)', async () => {
    // A flush computes a partition's commit point when that partition is applied, and hands the
    // points over once every partition's apply is done; a batch delivered in between offers a
    // later point. Partition 1's apply is held here until that has happened.
    const prefix = `${config.redisKeyPrefix}order-${randomUUID().slice(0, 8)}:`;
    const topic = topicNames(config).engagement;
    const assigned = new Map([[topic, [0, 1]]]);
    const real = createRedisEnrichStore(redis, redisKeys(prefix), 3_600, false);
    await real.markStateReady({ source: 'fresh', at: new Date().toISOString() }, [0, 1]);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let p1Applies = 0;
    const store: typeof real = {
      ...real,
      async applyBatch(batch, nowMs) {
        if (batch.partition === 1 && p1Applies++ === 0) await held;
        return real.applyBatch(batch, nowMs);
      },
    };
    const stage = createEnrichStage({
      store, topics: topicNames(config), topK: 10, windowMs: 0, minePairs: false, maxRecordBytes: config.maxRecordBytes,
      requireState: true, fence: true, clock: { now: () => 1_000 }, log: silentLogger, // a still clock: no flush by age
    });
    stage.onAssignment?.(assigned);
    const p0 = records(topic).filter((r) => r.offset !== '50');
    const p1 = p0.slice(0, 10).map((r) => ({ ...r, partition: 1 }));
    const first = await stage.handle(p0.slice(0, 20), ctx);
    await first.commit?.(); // delivered: 20
    const second = await stage.handle(p0.slice(20, 40), ctx); // not delivered yet
    await (await stage.handle(p1, ctx)).commit?.();
    // The tick's flush applies partition 0 (commit point 20: delivered) and waits on partition 1.
    const ticked = stage.tick!(assigned, ctx);
    await waitFor('partition 1 apply started', async () => p1Applies > 0, 10_000, 5);
    await waitFor('partition 0 applied', async () => (await real.claimPartition(0, 1)).offsets.get(topic) === 40n, 10_000, 5);
    await second.commit?.(); // delivered: 40, offers 40
    release();
    const t1 = await ticked;
    stage.committed?.(t1.commitOffsets ?? []); // as the worker does once Kafka took them
    const t2 = await stage.tick!(assigned, ctx);
    const committed = [t1, t2].map((t) => committedAt(t, topic)).filter((o) => o !== undefined).map(Number);
    expect(Math.max(...committed)).toBe(40);
  });

  it('claims every assigned partition on its first tick, before any record of it arrives', async () => {
    // A crashed owner's open transaction on pins.enriched holds back every read_committed reader
    // until the next owner's claim (InitProducerId) aborts it: a partition with no new input
    // must be claimed too.
    const prefix = `${config.redisKeyPrefix}claims-${randomUUID().slice(0, 8)}:`;
    const t = topicNames(config);
    const claimed: number[] = [];
    const publisher: PartitionedPublisher = {
      claim: async (p) => void claimed.push(p),
      release: async () => {},
      publish: async () => 'published',
      close: async () => {},
    };
    await createRedisEnrichStore(redis, redisKeys(prefix), 3_600, false).markStateReady({ source: 'fresh', at: new Date().toISOString() }, [1, 3]);
    const stage = stageOn(prefix, publisher);
    const assigned = new Map([[t.pinEvents, [1, 3]], [t.engagement, [1, 3]], [t.captions, [1, 3]]]);
    stage.onAssignment?.(assigned);
    // The first tick after the assignment claims them (no record of either has arrived).
    await stage.tick!(assigned, ctx);
    await waitFor('both partitions claimed', async () => claimed.length >= 2, 10_000, 20);
    expect(claimed.sort()).toEqual([1, 3]);
  });

  const pinEvent = (topic: string, partition: number, offset: number, pinId: string): InRecord => ({
    topic,
    partition,
    offset: String(offset),
    key: pinId,
    value: Buffer.from(JSON.stringify({ schema: 'pin_event', schema_version: 1, type: 'created', pin_id: pinId, event_time: '2026-12-01T00:00:00.000Z', title: `Pin ${pinId}`, description: 'Easy weeknight pasta', language: 'en' })),
    timestamp: Date.now(),
  });

  it('publishes the pins that have waited longest, whatever their partition, when more are due than one tick takes', async () => {
    const prefix = `${config.redisKeyPrefix}tick-${randomUUID().slice(0, 8)}:`;
    const t = topicNames(config);
    const store = createRedisEnrichStore(redis, redisKeys(prefix), 3_600, false);
    await store.markStateReady({ source: 'fresh', at: new Date().toISOString() }, [0, 3]);
    let now = 1_000;
    const stage = createEnrichStage({
      store, topics: t, topK: 10, windowMs: 0, minePairs: false, maxRecordBytes: config.maxRecordBytes,
      requireState: true, fence: false, maxFlushPerTick: 10, clock: { now: () => now }, log: silentLogger,
    });
    const assigned = new Map([[t.pinEvents, [0, 3]]]);
    stage.onAssignment?.(assigned);
    // Partition 3's two pins become dirty first; then partition 0 gets more than the budget.
    await stage.handle([pinEvent(t.pinEvents, 3, 0, 'old-a'), pinEvent(t.pinEvents, 3, 1, 'old-b')], ctx);
    await stage.flushState!();
    now = 2_000;
    await stage.handle(Array.from({ length: 30 }, (_, i) => pinEvent(t.pinEvents, 0, i, `new-${i}`)), ctx);
    await stage.flushState!();

    now = 10_000;
    const first = await stage.tick!(assigned, ctx);
    const keys = first.outputs.filter((m) => m.topic === t.enriched).map((m) => m.key);
    expect(keys).toHaveLength(10);
    expect(keys).toEqual(expect.arrayContaining(['old-a', 'old-b']));
    expect(first.moreDue).toBe(true);
  });

  /** An unfenced stage on `store` that checks records against the partition counts `inputPartitions` gives. */
  const checkedStageOn = (store: EnrichStateStore, inputPartitions: (topic: string) => Promise<number>) =>
    createEnrichStage({ store, topics: topicNames(config), topK: 10, windowMs: 0, minePairs: false, maxRecordBytes: config.maxRecordBytes, requireState: true, clock: systemClock, log: silentLogger, inputPartitions });

  it("holds its inputs' records, saying why, while their partition counts differ (a pin's partition would depend on the topic)", async () => {
    const prefix = `${config.redisKeyPrefix}copart-${randomUUID().slice(0, 8)}:`;
    const t = topicNames(config);
    const store = createRedisEnrichStore(redis, redisKeys(prefix), 3_600, false);
    await store.markStateReady({ source: 'fresh', at: new Date().toISOString() }, [0, 1, 2, 3]);
    const counts = new Map<string, number>([[t.pinEvents, 4], [t.engagement, 8], [t.captions, 4]]);
    const stage = checkedStageOn(store, async (topic) => counts.get(topic)!);
    // A pin of partition 2 of 4 (pinrich's partitioner).
    const pin = Array.from({ length: 50 }, (_, i) => `pin-${i}`).find((p) => partitionOf(p, 4) === 2)!;
    const batch = [pinEvent(t.pinEvents, 2, 0, pin)];
    await expect(stage.handle(batch, ctx)).rejects.toThrow(`have ${t.pinEvents} 4, ${t.engagement} 8, ${t.captions} 4`);
    counts.set(t.engagement, 4); // the operator gave them one count
    const taken = await stage.handle(batch, ctx);
    expect(taken.outputs).toEqual([]); // on its pin's partition: applied here, nothing sent on
    await stage.flushState();
    expect(stage.stats().pinEvents).toBe(1);
  });

  it('takes every record of a batch whose partition-count check waited across a state flush', async () => {
    // The check waits (the broker's metadata, the first time): a state flush can run meanwhile
    // and take the partition's buffer. Records added to the buffer it took were never applied.
    const prefix = `${config.redisKeyPrefix}copart-wait-${randomUUID().slice(0, 8)}:`;
    const t = topicNames(config);
    const store = createRedisEnrichStore(redis, redisKeys(prefix), 3_600, false);
    await store.markStateReady({ source: 'fresh', at: new Date().toISOString() }, [0]);
    let gate: Promise<void> = Promise.resolve();
    const stage = checkedStageOn(store, async () => {
      await gate;
      return 1;
    });
    const all = records(t.engagement);
    await stage.handle(all.slice(0, 40), ctx); // buffered, not yet in the state
    let open!: () => void;
    gate = new Promise((r) => (open = r));
    const second = stage.handle(all.slice(40), ctx); // waits at the check
    await new Promise((r) => setTimeout(r, 20));
    await stage.flushState(); // takes the buffer with the first 40
    open();
    const result = await second;
    await stage.flushState();
    expect(result.rejected).toHaveLength(1); // offset 50, not JSON
    const counted = (await Promise.all(Array.from({ length: 7 }, (_, i) => store.counts(`pin-${i}`, [0])))).reduce((n, c) => n + c.engagements, 0);
    expect(counted).toBe(99);
  });
});
