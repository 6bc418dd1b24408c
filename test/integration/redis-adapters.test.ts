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
import { createRedisEnrichStore } from '../../src/adapters/redis/enrich-state.js';
import type { FlushCommit, PartitionBatch, StoredPin } from '../../src/stages/enrich/ports.js';
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

/**
 * The enrich state's fences on the real Redis (single and Cluster): an owner epoch, the state
 * marker checked first (a meta hash lost with a restarted node reads as missing state, not as
 * another owner), a resumed claim after a rebuild, and published documents never going back.
 */
describe.skipIf(!inject('stack')).each(REDIS_MODES)('enrich state fences on %s Redis', (mode: RedisMode) => {
  let redis: Redis;
  let config: Config;
  beforeAll(async () => {
    config = testConfig(redisEnv(mode));
    redis = createRedisFromConfig(config);
    await redis.ping();
  });
  afterAll(() => redis?.disconnect());

  const store = () => createRedisEnrichStore(redis, config.redisKeyPrefix, 600, false);
  const batch = (epoch: number | null, n: number): PartitionBatch => ({
    partition: 2,
    epoch,
    requireReady: true,
    offsets: [{ topic: 'in', next: String(n) }],
    eventIds: [],
    pins: [{ pinId: `pin-${n}`, ops: [{ op: 'pin', eventTimeMs: n, type: 'created', pin: { title: 't', description: '', image_key: null, link_url: null, link_title: '', link_description: '', language: 'en' } }] }],
  });

  it('tells a lost partition state from another owner, and resumes it with the same epoch after the rebuild', async () => {
    const s = store();
    const keys = redisKeys(config.redisKeyPrefix);
    await s.markStateReady({ source: 'fresh', at: new Date().toISOString() }, [2]);
    const first = await s.claimPartition(2);
    const second = await s.claimPartition(2); // another instance took it over
    expect(second.epoch).toBe(first.epoch + 1);
    expect((await s.applyBatch(batch(first.epoch, 1), Date.now())).status).toBe('fenced');
    expect((await s.applyBatch(batch(second.epoch, 1), Date.now())).status).toBe('applied');

    // The master holding the partition restarted empty: its meta hash is gone.
    await redis.del(keys.enrich.meta(2));
    expect((await s.applyBatch(batch(second.epoch, 2), Date.now())).status).toBe('missing');
    const refused: string[] = [];
    const onRefused = (p: number, status: string) => refused.push(`${p}:${status}`);
    expect(await s.readPins([{ partition: 2, pinId: 'pin-1' }], 3, new Map([[2, second.epoch]]), onRefused)).toEqual([null]);
    const pin = { pinId: 'pin-1', gen: '1' } as StoredPin;
    const commit: FlushCommit = { partition: 2, pin, published: null, queries: [] };
    await s.commitFlushes([commit], new Map([[2, second.epoch]]), onRefused);
    expect(refused).toEqual(['2:missing', '2:missing']);

    // The rebuild writes the partition's state and marks it ready, without an epoch: still missing
    // for the worker until it claims the partition again, with its own epoch.
    expect((await s.applyBatch({ ...batch(null, 5), requireReady: false }, Date.now())).status).toBe('applied');
    await s.markStateReady({ source: 'rebuild', at: new Date().toISOString() }, [2]);
    expect((await s.applyBatch(batch(second.epoch, 3), Date.now())).status).toBe('missing');
    const resumed = await s.claimPartition(2, second.epoch);
    expect(resumed).toMatchObject({ epoch: second.epoch, ready: true });
    expect(resumed.offsets.get('in')).toBe(5n);
    // A zombie resuming with an older epoch does not take it back.
    expect((await s.claimPartition(2, first.epoch)).epoch).toBe(second.epoch);
    expect((await s.applyBatch(batch(first.epoch, 6), Date.now())).status).toBe('fenced');
    expect((await s.applyBatch(batch(second.epoch, 3), Date.now())).status).toBe('applied');
    // Offsets covered never go back (the held batch ended below what the rebuild replayed).
    expect((await s.claimPartition(2, second.epoch)).offsets.get('in')).toBe(5n);
  });

  it('counts each engagement under its own text and takes a redelivered event off its own text only', async () => {
    const s = store();
    await s.markStateReady({ source: 'fresh', at: new Date().toISOString() }, [3]);
    const { epoch } = await s.claimPartition(3);
    const created = batch(epoch, 1).pins[0]!.ops[0]!;
    // Quotes, a backslash, non-ASCII and an astral character: the ops reach the script as JSON.
    const blue = 'blue "sky" \\ café 日本 😀';
    const ev = (event: number, kind: 'board' | 'query', text: string) => ({ event, kind, text });
    const at = (ids: string[], pins: PartitionBatch['pins']): PartitionBatch => ({ partition: 3, epoch, requireReady: true, offsets: [], eventIds: ids, pins });
    // Texts interleaved within a segment, two pins, ids not in segment order.
    const first = await s.applyBatch(
      at(['e1', 'e2', 'e3', 'e4', 'e5', 'e6'], [
        { pinId: 'pin-m', ops: [created, { op: 'engagements', events: [ev(0, 'query', 'red'), ev(2, 'board', 'home'), ev(1, 'query', blue), ev(4, 'query', 'red')] }] },
        { pinId: 'pin-n', ops: [created, { op: 'engagements', events: [ev(5, 'query', 'red'), ev(3, 'query', 'green')] }] },
      ]),
      Date.now(),
    );
    expect(first).toMatchObject({ status: 'applied', counted: 6, duplicates: 0 });
    // Redelivered: e4 (pin-n's green) and e2 (pin-m's blue), among new events; then the pin is
    // deleted and a later segment of it is ignored.
    const second = await s.applyBatch(
      at(['e7', 'e4', 'e2', 'e8', 'e9'], [
        { pinId: 'pin-m', ops: [{ op: 'engagements', events: [ev(0, 'query', 'red'), ev(2, 'query', blue), ev(3, 'board', 'home')] }] },
        { pinId: 'pin-n', ops: [{ op: 'engagements', events: [ev(1, 'query', 'green')] }, { op: 'pin', eventTimeMs: 9, type: 'deleted', pin: null }, { op: 'engagements', events: [ev(4, 'query', 'red')] }] },
      ]),
      Date.now(),
    );
    expect(second).toMatchObject({ status: 'applied', counted: 2, duplicates: 2, ignored: 1 });
    const [m, n] = await s.readPins([{ partition: 3, pinId: 'pin-m' }, { partition: 3, pinId: 'pin-n' }], 10, new Map([[3, epoch]]), () => {});
    const counts = (list: Array<{ text: string; count: number }> | undefined) => Object.fromEntries((list ?? []).map((c) => [c.text, c.count]));
    expect(counts(m?.queries)).toEqual({ red: 3, [blue]: 1 });
    expect(counts(m?.boards)).toEqual({ home: 2 });
    expect(n).toMatchObject({ deleted: true, engagements: 0, queries: [] });
  });

  it('never replaces a published document with an older one (a zombie, the rebuild)', async () => {
    const s = store();
    const keys = redisKeys(config.redisKeyPrefix);
    const doc = (version: number, at: string, text: string) => JSON.stringify({ schema_version: 1, pin_id: 'pin-d', pin_text: text, version, updated_at: at });
    const publish = (version: number, d: string | null) =>
      s.commitFlushes([{ partition: 1, pin: { pinId: 'pin-d', gen: 'x' } as StoredPin, published: { hash: `h${version}`, version, doc: d }, queries: [] }]);
    const stored = async () => (JSON.parse((await redis.get(keys.document('pin-d')))!) as { pin_text: string }).pin_text;
    await publish(3, doc(3, '2026-12-02T06:00:01.000Z', 'new owner v3'));
    await publish(2, doc(2, '2026-12-02T06:00:09.000Z', 'zombie v2 "version":9')); // older version: refused
    expect(await stored()).toBe('new owner v3');
    await publish(3, doc(3, '2026-12-02T06:00:00.500Z', 'zombie v3, built earlier')); // same version, built before
    expect(await stored()).toBe('new owner v3');
    await publish(4, doc(4, '2026-12-02T06:00:02.000Z', 'v4'));
    expect(await stored()).toBe('v4');
    await publish(3, null); // a stale tombstone of v3
    expect(await stored()).toBe('v4');
    // The rebuild replays pins.enriched up to its snapshot: v2 neither lowers the state's version nor the document.
    await s.restorePublished(1, 'pin-d', 'h4', 4, doc(4, '2026-12-02T06:00:02.000Z', 'v4'));
    await redis.hset(keys.enrich.pin(1, 'pin-d'), 'ver', '4');
    await s.restorePublished(1, 'pin-d', 'h2', 2, doc(2, '2026-12-02T06:00:00.000Z', 'v2'));
    expect(await stored()).toBe('v4');
    expect(await redis.hmget(keys.enrich.pin(1, 'pin-d'), 'hash', 'ver')).toEqual(['h4', '4']);
    await publish(4, null); // the tombstone of v4
    expect(await redis.get(keys.document('pin-d'))).toBeNull();
    // Late writes of documents the tombstone ended are refused, not taken for the pin's first
    // document: a zombie's v4 built after it, the rebuild's v3.
    await publish(4, doc(4, '2026-12-02T06:00:03.000Z', 'zombie v4 after the tombstone'));
    await s.restorePublished(1, 'pin-d', 'h3', 3, doc(3, '2026-12-02T06:00:01.000Z', 'rebuild v3'));
    expect(await redis.get(keys.document('pin-d'))).toBeNull();
    await publish(3, null); // an older tombstone does not lower what the marker says it ended
    await publish(4, doc(4, '2026-12-02T06:00:04.000Z', 'zombie v4 again'));
    expect(await redis.get(keys.document('pin-d'))).toBeNull();
    // The stamp is looked for in the document's tail first; one whose version and updated_at
    // come before a long text (not how pinrich writes them) is still ordered by them.
    const early = (version: number, at: string, text: string) => JSON.stringify({ version, updated_at: at, pin_id: 'pin-d', pin_text: text.repeat(50) });
    await publish(6, early(6, '2026-12-02T06:00:05.000Z', 'v6 keys first '));
    await publish(5, doc(5, '2026-12-02T06:00:09.000Z', 'v5 later, older version')); // refused
    expect(await stored()).toMatch(/^v6 keys first /);
    await publish(6, early(6, '2026-12-02T06:00:04.000Z', 'v6 built earlier ')); // refused
    expect(await stored()).toMatch(/^v6 keys first /);
    await publish(7, doc(7, '2026-12-02T06:00:06.000Z', 'v7'));
    expect(await stored()).toBe('v7');
  });

  it('orders each document of a many-pin commit on its own (one script run for many on one server)', async () => {
    const s = store();
    const keys = redisKeys(config.redisKeyPrefix);
    // More pins than one set-document run takes, so a commit spans several runs.
    const pins = Array.from({ length: 450 }, (_, i) => `pin-many-${i}`);
    const doc = (pin: string, version: number, text: string) => JSON.stringify({ schema_version: 1, pin_id: pin, pin_text: text, version, updated_at: '2026-12-03T08:00:00.000Z' });
    const commit = (version: (i: number) => number, text: (i: number) => string | null) =>
      s.commitFlushes(pins.map((pinId, i) => ({ partition: 2, pin: { pinId, gen: 'x' } as StoredPin, published: { hash: `h${version(i)}`, version: version(i), doc: text(i) === null ? null : doc(pinId, version(i), text(i)!) }, queries: [] })));
    await commit(() => 5, (i) => `first ${i}`);
    // Every third pin gets an older version (refused), every third a tombstone of an older one
    // (refused), the rest a newer version; then a tombstone of the current version deletes.
    await commit((i) => (i % 3 === 2 ? 6 : 4), (i) => (i % 3 === 1 ? null : `second ${i}`));
    // One GET per pin: on the cluster the documents are in many slots.
    const stored = async () => (await Promise.all(pins.map((p) => redis.get(keys.document(p))))).map((d) => (d === null ? null : (JSON.parse(d) as { pin_text: string }).pin_text));
    expect(await stored()).toEqual(pins.map((_, i) => (i % 3 === 2 ? `second ${i}` : `first ${i}`)));
    // Version 5 everywhere: below the v6 documents (refused, tombstone or not), equal to the
    // others (the same build time: written; a tombstone of it deletes).
    await commit(() => 5, (i) => (i % 2 === 0 ? null : `third ${i}`));
    expect(await stored()).toEqual(pins.map((_, i) => (i % 3 === 2 ? `second ${i}` : i % 2 === 0 ? null : `third ${i}`)));
  });
});
