/**
 * Contract of every Redis adapter that is not the enrich state, on both kinds of Redis pinrich
 * runs on: the local stack's single Redis and its 3-master Redis Cluster (PINRICH_REDIS_CLUSTER).
 * On the cluster, each batch of keys a test uses lands on more than one master, so an adapter
 * that sent them as one multi-key command (MGET) or one script would fail with CROSSSLOT.
 */
import { randomUUID } from 'node:crypto';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createRedisCaptionCache } from '../../src/adapters/redis/caption-cache.js';
import { createRedisFromConfig, type Redis } from '../../src/adapters/redis/client.js';
import { createRedisLabelCache, type CachedLabel, type LabelCacheKey } from '../../src/adapters/redis/label-cache.js';
import { createRedisDocumentReader } from '../../src/adapters/redis/documents.js';
import { redisKeys } from '../../src/adapters/redis/keys.js';
import { createRateLimiter } from '../../src/adapters/redis/rate-limit.js';
import type { Config } from '../../src/config.js';
import { redisPinTexts } from '../../src/labels/export.js';
import { clusterInfo, clusterOk, REDIS_CLUSTER_MASTERS } from '../../src/stack/redis-cluster.js';
import { REDIS_MODES, stack, testConfig, redisEnv, type RedisMode } from '../support/harness.js';

const ports = () => (stack().redisCluster ?? []).map((u) => Number(new URL(u).port));

describe.skipIf(!inject('stack'))('the local Redis Cluster', () => {
  it(`has ${REDIS_CLUSTER_MASTERS} masters serving all 16384 slots, cluster_state:ok on every node`, async () => {
    expect(ports()).toHaveLength(REDIS_CLUSTER_MASTERS);
    expect(await clusterOk(ports())).toBe(true);
    const info = await clusterInfo(ports()[0]!);
    expect(info).toMatch(/^cluster_size:3\r?$/m);
    expect(info).toMatch(/^cluster_known_nodes:3\r?$/m);
  });

  it('PINRICH_REDIS_CLUSTER=true gives an ioredis Cluster that reaches every master', async () => {
    const redis = createRedisFromConfig(testConfig(redisEnv('cluster')));
    try {
      expect(redis).toBeInstanceOf(Cluster);
      await redis.ping();
      const masters = (redis as Cluster).nodes('master');
      expect(masters).toHaveLength(REDIS_CLUSTER_MASTERS);
    } finally {
      redis.disconnect();
    }
  });
});

describe.skipIf(!inject('stack')).each(REDIS_MODES)('Redis adapters on %s Redis', (mode: RedisMode) => {
  let redis: Redis;
  let prefix: string;
  let config: Config;

  beforeAll(async () => {
    config = testConfig(redisEnv(mode));
    prefix = config.redisKeyPrefix;
    redis = createRedisFromConfig(config);
    await redis.ping();
  });
  afterAll(() => redis?.disconnect());

  /** On the cluster: how many masters hold keys under this test's prefix (KEYS per master, tests only). */
  async function mastersHolding(match: string): Promise<number> {
    if (!(redis instanceof Cluster)) return 1;
    const counts = await Promise.all(redis.nodes('master').map(async (n) => (await n.keys(`${prefix}${match}`)).length));
    return counts.filter((c) => c > 0).length;
  }

  it('caption cache: getMany returns each entry in order, null for a miss, across slots', async () => {
    const cache = createRedisCaptionCache(redis, prefix, 'vlm-a', 'v1');
    const images = Array.from({ length: 40 }, (_, i) => `img-${i}-${randomUUID().slice(0, 6)}`);
    for (const [i, img] of images.entries()) if (i % 4 !== 3) await cache.put(img, { text: `caption ${i}`, model: 'vlm-a', prompt_version: 'v1' });
    const got = await cache.getMany(images);
    expect(got.map((c) => c?.text ?? null)).toEqual(images.map((_, i) => (i % 4 === 3 ? null : `caption ${i}`)));
    // Another model or prompt version is another entry.
    expect(await createRedisCaptionCache(redis, prefix, 'vlm-b', 'v1').getMany(images.slice(0, 3))).toEqual([null, null, null]);
    if (mode === 'cluster') {
      expect(await mastersHolding('cap:*')).toBeGreaterThan(1);
      // The keys of one batch are in several slots: one MGET of them is refused (by the cluster, or by ioredis before sending).
      await expect(redis.mget(images.map((i) => `${prefix}cap:vlm-a:v1:${i}`))).rejects.toThrow(/CROSSSLOT|same slot/);
    }
  });

  it('label cache: getMany returns each label in order, null for a miss or an unreadable entry, across slots', async () => {
    const cache = createRedisLabelCache(redis, prefix, 3_600);
    const keys: LabelCacheKey[] = Array.from({ length: 30 }, (_, i) => ({ model: 't', promptVersion: 'p1', params: 't0-m1-k20', promptHash: `h${i}-${randomUUID().slice(0, 6)}` }));
    const label = (i: number): CachedLabel => ({
      label: (i % 5) + 1,
      distribution: [0.1, 0.2, 0.3, 0.2, 0.2],
      expected_score: 3.2,
      label_source: 'logprobs',
      usage: { prompt_tokens: 10, completion_tokens: 1, total_tokens: 11, cached_prompt_tokens: 0 },
      latency_ms: 5,
      labeled_at: '2026-12-01T00:00:00.000Z',
    });
    for (const [i, k] of keys.entries()) if (i % 3 !== 0) await cache.put(k, label(i));
    await redis.set(`${prefix}label:t:p1:t0-m1-k20:${keys[0]!.promptHash}`, '{"label": "not a level"}');
    const got = await cache.getMany(keys);
    expect(got.map((l) => l?.label ?? null)).toEqual(keys.map((_, i) => (i % 3 === 0 ? null : (i % 5) + 1)));
    const ttl = await redis.ttl(`${prefix}label:t:p1:t0-m1-k20:${keys[1]!.promptHash}`);
    expect(ttl).toBeGreaterThan(3_500);
    expect(ttl).toBeLessThanOrEqual(3_600);
    if (mode === 'cluster') expect(await mastersHolding('label:*')).toBeGreaterThan(1);
  });

  it('documents: the score reader and `labels export` read every pin\'s document, across slots', async () => {
    const keys = redisKeys(prefix);
    const pins = Array.from({ length: 30 }, (_, i) => `pin-${String(i).padStart(6, '0')}`);
    for (const [i, pin] of pins.entries()) {
      if (i % 5 !== 4) await redis.set(keys.document(pin), JSON.stringify({ pin_id: pin, version: i + 1, content_hash: `h${i}`, pin_text: `text of ${pin}` }));
    }
    const reader = createRedisDocumentReader(redis, keys);
    const docs = await reader.getDocuments(pins);
    expect(docs.map((d) => (d === null ? null : (JSON.parse(d) as { pin_id: string }).pin_id))).toEqual(pins.map((p, i) => (i % 5 === 4 ? null : p)));
    expect(await reader.getDocument(pins[0]!)).toContain('text of pin-000000');
    const texts = await redisPinTexts(config);
    expect(texts).toBeDefined();
    try {
      const got = await texts!.get(pins);
      expect([...got.keys()].sort()).toEqual(pins.filter((_, i) => i % 5 !== 4));
      expect(got.get('pin-000003')).toEqual({ pinText: 'text of pin-000003', version: 4, contentHash: 'h3' });
    } finally {
      texts!.close();
    }
    if (mode === 'cluster') expect(await mastersHolding('doc:*')).toBeGreaterThan(1);
  });

  it('rate limiter: a bucket of 5 requests per second lets 5 through at once and makes the 6th wait', async () => {
    const base = `${prefix}ratelimit:vlm:m-${randomUUID().slice(0, 6)}`;
    const limiter = createRateLimiter(redis, base, { requestsPerSecond: 5, tokensPerMinute: 600 });
    const signal = new AbortController().signal;
    for (let i = 0; i < 5; i++) await limiter.acquire(1, signal);
    // Counting, not timing: the bucket is (nearly) empty after 5 takes, and a second limiter on
    // the same keys (another instance) sees the same bucket.
    expect(Number(await redis.hget(`${base}:rps`, 'tokens'))).toBeLessThan(1);
    expect(Number(await redis.hget(`${base}:tpm`, 'tokens'))).toBeLessThan(100 - 5 + 1);
    const other = createRateLimiter(redis, base, { requestsPerSecond: 5, tokensPerMinute: 600 });
    const aborted = new AbortController();
    const waiting = other.acquire(1, aborted.signal);
    setTimeout(() => aborted.abort(), 50);
    await expect(waiting).rejects.toThrow();
  });
});
