/**
 * Which due pins an enrich tick publishes, on the real Redis state: the oldest across every
 * partition, up to its budget. A steady load keeps partition 0 with more due pins than one
 * tick's budget; a tick that took partition 0's pins first left the later partitions' pins
 * unpublished for as long as the load lasted (the freshness bench saw seconds).
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedisFromConfig, type Redis } from '../../src/adapters/redis/client.js';
import { createRedisEnrichStore } from '../../src/adapters/redis/enrich-state.js';
import { redisKeys } from '../../src/adapters/redis/keys.js';
import type { Config } from '../../src/config.js';
import { topics as topicNames } from '../../src/config.js';
import { silentLogger } from '../../src/runtime/log.js';
import type { InRecord } from '../../src/runtime/stage.js';
import { createEnrichStage } from '../../src/stages/enrich/stage.js';
import { testConfig } from '../support/harness.js';

describe.skipIf(!inject('stack'))('enrich tick', () => {
  let redis: Redis;
  let config: Config;
  beforeAll(async () => {
    config = testConfig();
    redis = createRedisFromConfig(config);
    await redis.ping();
  });
  afterAll(() => redis?.disconnect());

  const ctx = { signal: new AbortController().signal, heartbeat: async () => {} };
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
});
