/**
 * Caption + enrich on the real local Kafka and Redis, with the project's own model server
 * behind the real openai client.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApp, type RunningApp } from '../../src/app.js';
import { partitionOf } from '../../src/adapters/kafka/partitioner.js';
import { createRedisFromConfig } from '../../src/adapters/redis/client.js';
import { createRedisDocumentReader } from '../../src/adapters/redis/documents.js';
import { createRedisEnrichStore } from '../../src/adapters/redis/enrich-state.js';
import { redisKeys } from '../../src/adapters/redis/keys.js';
import { dlqTopic, type Config } from '../../src/config.js';
import { silentLogger } from '../../src/runtime/log.js';
import { startModelServer, type ModelServer } from '../../src/model-server/server.js';
import { kafkaJarsLocation } from '../../src/stack/kafka.js';
import { llamaCacheRoot } from '../../src/stack/llama.js'; // the pinrich cache root, the Kafka jars' too
import { rebuildEnrichState } from '../../src/stages/enrich/rebuild.js';
import { deleteKeysWithPrefix, latestByKey, produce, readUntil, setupTopics, testConfig, waitFor } from '../support/harness.js';
import { ODDLY_SPELLED_REJECTED_URLS } from '../support/urls.js';

const T0 = Date.parse('2026-11-28T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const pinEvent = (id: string, extra: Record<string, unknown> = {}) => ({
  schema: 'pin_event',
  schema_version: 1,
  type: 'created',
  pin_id: id,
  event_time: iso(T0),
  title: `Title of ${id}`,
  description: 'Une recette facile de tarte aux pommes',
  image_url: `https://images.example.com/${id}.jpg`,
  language: 'fr',
  ...extra,
});
const save = (eventId: string, pinId: string, board: string) => ({ schema: 'engagement_event', schema_version: 1, event_id: eventId, pin_id: pinId, event_time: iso(T0 + 1), user_id: 'u1', type: 'save', board_title: board });
const click = (eventId: string, pinId: string, query: string) => ({ schema: 'engagement_event', schema_version: 1, event_id: eventId, pin_id: pinId, event_time: iso(T0 + 1), user_id: 'u1', type: 'search_click', query });

type Doc = { pin_id: string; version: number; caption: string | null; caption_status: string; board_titles: Array<{ text: string; count: number }>; engaged_queries: Array<{ text: string; count: number }>; engagement_count: number; language: string };

let server: ModelServer;
beforeAll(async () => {
  server = await startModelServer();
});
afterAll(async () => {
  await server.close();
});

async function start(config: Config, which: Array<'caption' | 'enrich'> = ['caption', 'enrich']): Promise<RunningApp> {
  return startApp(config, which, silentLogger, { tickMs: 50 });
}

/**
 * A pin id whose records land on the same partition as `pinId`'s (pinrich's partitioner): a
 * marker record produced after a test's input. Enrich flushes a partition's dirty pins oldest
 * first, so once the marker's document is on pins.enriched, anything still owed for `pinId` was
 * published before it: a positive signal that "nothing more follows", instead of a sleep.
 */
function markerFor(pinId: string, partitions: number): string {
  for (let i = 0; ; i++) if (partitionOf(`marker-${i}`, partitions) === partitionOf(pinId, partitions)) return `marker-${i}`;
}

/**
 * Produce `records` with Kafka's own Java console producer (the stack's Kafka jars), its batches
 * compressed with `codec`: another client than kafkajs, as producers outside pinrich are.
 */
async function javaProduce(config: Config, topic: string, codec: string, records: Array<{ key: string; value: unknown }>): Promise<void> {
  const libs = kafkaJarsLocation(join(import.meta.dirname, '..', '..', 'deploy', 'kafka', 'pom.xml'), llamaCacheRoot()).libsDir;
  const args = ['-Xmx256m', '-cp', `${libs}/*`, 'org.apache.kafka.tools.ConsoleProducer', '--bootstrap-server', config.kafkaBrokers.join(','), '--topic', topic];
  args.push('--compression-codec', codec, '--property', 'parse.key=true', '--property', 'key.separator=\t', '--producer-property', 'linger.ms=200');
  const child = spawn('java', args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin!.end(records.map((r) => `${r.key}\t${JSON.stringify(r.value)}\n`).join(''));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`java ConsoleProducer (${codec}) exited ${code}: ${stderr.slice(-2000)}`);
}

function docsOf(records: Array<{ key: string | null; value: string | null }>): Map<string, Doc | null> {
  const out = new Map<string, Doc | null>();
  for (const [k, v] of latestByKey(records as never)) out.set(k, v === null ? null : (JSON.parse(v) as Doc));
  return out;
}

describe('caption worker', () => {
  it('captions a re-pinned image once, and every pin gets its caption', async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl });
    const t = await setupTopics(config);
    const before = server.count({ kind: 'caption' });
    const shared = 'https://images.example.com/shared-red-velvet-cake.jpg';
    await produce(config, t.pinEvents, [
      { key: 'a', value: pinEvent('a', { image_url: shared }) },
      { key: 'b', value: pinEvent('b', { image_url: shared }) },
      { key: 'c', value: pinEvent('c') },
    ]);
    const app = await start(config, ['caption']);
    try {
      await readUntil(config, t.captions, (r) => r.length >= 3);
      // A later re-pin, in another batch, is served from the Redis cache.
      await produce(config, t.pinEvents, [{ key: 'd', value: pinEvent('d', { image_url: shared }) }]);
      const captions = (await readUntil(config, t.captions, (r) => r.length >= 4)).map((r) => JSON.parse(r.value!));
      expect(server.count({ kind: 'caption' }) - before).toBe(2); // two distinct images
      const byPin = Object.fromEntries(captions.map((c) => [c.pin_id, c]));
      expect(Object.keys(byPin).sort()).toEqual(['a', 'b', 'c', 'd']);
      for (const c of captions) expect(c.status).toBe('ok');
      expect(byPin.a.text).toBe(byPin.d.text);
      expect(byPin.d.cached).toBe(true);
      expect(byPin.a.image_key).toBe(byPin.d.image_key);
      expect(app.stats().caption!.cacheHits).toBeGreaterThanOrEqual(2);
    } finally {
      await app.stop();
    }
  });

  it('describes an image once even when its re-pins sit in partitions handled concurrently', async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl, PINRICH_TOPIC_PARTITIONS: '4' });
    const t = await setupTopics(config);
    const image = 'https://images.example.com/slow-shared-image.jpg';
    // A slow answer keeps the first call in flight while the other partitions' batches arrive.
    server.script({ kind: 'caption', match: 'slow-shared-image', times: 1, reply: { delayMs: 1_500, then: { text: 'A slow shared image.' } } });
    const keys = ['k1', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'k8'];
    await produce(config, t.pinEvents, keys.map((k) => ({ key: k, value: pinEvent(k, { image_url: image }) })));
    const app = await start(config, ['caption']);
    try {
      const recs = await readUntil(config, t.captions, (r) => r.length >= keys.length);
      expect(new Set(recs.map((r) => r.partition)).size).toBeGreaterThan(1); // the pins really span partitions
      const captions = recs.map((r) => JSON.parse(r.value!));
      expect(captions.every((c) => c.status === 'ok' && c.text === 'A slow shared image.')).toBe(true);
      expect(server.requests().filter((r) => JSON.stringify(r.body).includes('slow-shared-image')).length).toBe(1);
    } finally {
      await app.stop();
    }
  });

  it('retries a 429 (honouring Retry-After) and then captions', async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl });
    const t = await setupTopics(config);
    server.script({ kind: 'caption', match: 'rate-limited-pin', times: 1, reply: { status: 429, retryAfterMs: 300 } });
    const app = await start(config, ['caption']);
    try {
      const started = Date.now();
      await produce(config, t.pinEvents, [{ key: 'r', value: pinEvent('r', { image_url: 'https://images.example.com/rate-limited-pin.jpg' }) }]);
      const [c] = (await readUntil(config, t.captions, (r) => r.length >= 1)).map((r) => JSON.parse(r.value!));
      expect(c.status).toBe('ok');
      expect(c.text).toBeTruthy();
      expect(Date.now() - started).toBeGreaterThanOrEqual(300);
      const served = server.requests().filter((r) => JSON.stringify(r.body).includes('rate-limited-pin'));
      expect(served.map((r) => r.status)).toEqual([429, 200]);
    } finally {
      await app.stop();
    }
  });

  it('gives a failed caption on persistent 500s, and the pin is still enriched', async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl, PINRICH_MODEL_MAX_ATTEMPTS: '3' });
    const t = await setupTopics(config);
    server.script({ kind: 'caption', match: 'broken-image', times: 3, reply: { status: 500 } });
    const app = await start(config);
    try {
      await produce(config, t.pinEvents, [{ key: 'x', value: pinEvent('x', { image_url: 'https://images.example.com/broken-image.jpg' }) }]);
      const [c] = (await readUntil(config, t.captions, (r) => r.length >= 1)).map((r) => JSON.parse(r.value!));
      expect(c.status).toBe('failed');
      expect(c.error_code).toBe('model_unavailable');
      expect(c.reason).toMatch(/500/);
      expect(server.requests().filter((r) => JSON.stringify(r.body).includes('broken-image')).length).toBe(3);
      const docs = docsOf(await readUntil(config, t.enriched, (r) => r.some((m) => m.value && JSON.parse(m.value).caption_status === 'failed')));
      const doc = docs.get('x')!;
      expect(doc.caption).toBeNull();
      expect(doc.caption_status).toBe('failed');
      expect(doc.pin_id).toBe('x');
    } finally {
      await app.stop();
    }
  });

  it('captions requests queued behind the shared rate limit for longer than the model timeout (back-pressure, not "aborted")', async () => {
    // 1 request/s with a burst of 1: the fifth image waits ~4 s for its token, four times the
    // 1 s per-request timeout, which must start only when its HTTP request does.
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl, PINRICH_VLM_RPS: '1', PINRICH_MODEL_TIMEOUT_MS: '1000', PINRICH_MODEL_MAX_ATTEMPTS: '1' });
    const t = await setupTopics(config);
    const ids = ['rl-0', 'rl-1', 'rl-2', 'rl-3', 'rl-4'];
    await produce(config, t.pinEvents, ids.map((id) => ({ key: id, value: pinEvent(id, { image_url: `https://images.example.com/${id}.jpg` }) })));
    const app = await start(config, ['caption']);
    try {
      const captions = (await readUntil(config, t.captions, (r) => r.length >= ids.length)).map((r) => JSON.parse(r.value!));
      expect(captions.map((c) => [c.pin_id, c.status, c.error_code]).sort()).toEqual(ids.map((id) => [id, 'ok', null]));
    } finally {
      await app.stop();
    }
  });

  it('rejects internal image URLs without calling the model', async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl });
    const t = await setupTopics(config);
    const before = server.count({ kind: 'caption' });
    const app = await start(config, ['caption']);
    try {
      await produce(config, t.pinEvents, [{ key: 'm', value: pinEvent('m', { image_url: 'http://169.254.169.254/latest/meta-data/' }) }]);
      const [c] = (await readUntil(config, t.captions, (r) => r.length >= 1)).map((r) => JSON.parse(r.value!));
      expect(c.status).toBe('failed');
      expect(c.error_code).toBe('url_rejected');
      expect(server.count({ kind: 'caption' })).toBe(before);
    } finally {
      await app.stop();
    }
  });
});

describe('caption and enrich together', () => {
  it('enriches a pin whose rejected image URL is spelled unlike its parsed form with caption_status "failed", never "pending"', async () => {
    const urls = ODDLY_SPELLED_REJECTED_URLS;
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl });
    const t = await setupTopics(config);
    const before = server.count({ kind: 'caption' });
    const ids = urls.map((_, i) => `hostile-${i}`);
    await produce(config, t.pinEvents, urls.map((url, i) => ({ key: ids[i]!, value: pinEvent(ids[i]!, { image_url: url }) })));
    const app = await start(config);
    try {
      expect(app.heapFlags).toEqual([]); // two workers in one process: V8's own growing factor
      // Positive signal: enrich has applied every caption, then flushed later markers on each
      // of the pins' partitions (oldest dirty pins first), so each pin's last document is out.
      await waitFor('enrich to apply the captions', async () => (app.stats().enrich?.captions ?? 0) >= ids.length);
      const markers = [...new Set(ids.map((id) => markerFor(id, config.topicPartitions)))];
      await produce(config, t.pinEvents, markers.map((m) => ({ key: m, value: pinEvent(m, { image_url: undefined }) })));
      const docs = docsOf(await readUntil(config, t.enriched, (r) => markers.every((m) => r.some((x) => x.key === m))));
      expect(ids.map((id) => docs.get(id)!.caption_status)).toEqual(ids.map(() => 'failed'));
      expect(server.count({ kind: 'caption' })).toBe(before);
    } finally {
      await app.stop();
    }
  });
});

describe('enrich worker', () => {
  it('counts a duplicated engagement event once, keeps top-K, and mines one pair per query', async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl, PINRICH_ENRICH_TOP_K: '2', PINRICH_ENRICH_MINE_PAIRS: 'true' });
    const t = await setupTopics(config);
    await produce(config, t.pinEvents, [{ key: 'p', value: pinEvent('p') }]);
    await produce(config, t.engagement, [
      { key: 'p', value: save('e1', 'p', 'Desserts') },
      { key: 'p', value: save('e1', 'p', 'Desserts') }, // redelivered duplicate
      { key: 'p', value: save('e2', 'p', '  DESSERTS ') }, // same board after normalisation
      { key: 'p', value: save('e3', 'p', 'Automne') },
      { key: 'p', value: save('e4', 'p', 'Zzz') },
      { key: 'p', value: click('e5', 'p', 'Tarte aux pommes') },
      { key: 'p', value: click('e6', 'p', 'tarte  aux POMMES') },
      { key: 'p', value: click('e6', 'p', 'tarte  aux POMMES') }, // duplicate
    ]);
    const app = await start(config);
    try {
      const done = (r: Array<{ value: string | null }>) => r.some((m) => m.value && JSON.parse(m.value).engagement_count === 6 && JSON.parse(m.value).caption_status === 'ok');
      const doc = docsOf(await readUntil(config, t.enriched, done)).get('p')!;
      expect(doc.board_titles).toEqual([
        { text: 'desserts', count: 2 },
        { text: 'automne', count: 1 },
      ]);
      expect(doc.engaged_queries).toEqual([{ text: 'tarte aux pommes', count: 2 }]);
      expect(doc.engagement_count).toBe(6);
      expect(doc.language).toBe('fr');
      expect(doc.caption).toBeTruthy();
      const pairs = (await readUntil(config, t.pairs, (r) => r.length >= 1)).map((r) => JSON.parse(r.value!));
      expect(pairs.map((p) => p.query)).toEqual(['tarte aux pommes']);
      expect(app.stats().enrich!.duplicateEngagements).toBe(2);
    } finally {
      await app.stop();
    }
  });

  it('applies records that arrive on another partition than their pin\'s on the pin\'s own partition (sent on there), each once', async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl });
    const t = await setupTopics(config);
    const pin = 'pin-sent-on';
    const home = partitionOf(pin, config.topicPartitions);
    const away = (home + 1) % config.topicPartitions; // as a producer hashing keys otherwise (librdkafka's CRC32) would put them
    const sentAt = Date.now() - 3_600_000; // the producer's timestamp of one record: its copy keeps it
    // The pin event, one save and a duplicated click arrive away from the pin's partition, one save at home.
    await produce(config, t.pinEvents, [{ key: pin, value: pinEvent(pin), partition: away }]);
    await produce(config, t.engagement, [
      { key: pin, value: save('so-1', pin, 'Desserts'), partition: away, headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' }, timestamp: String(sentAt) },
      { key: pin, value: save('so-2', pin, 'Desserts'), partition: home },
      { key: pin, value: click('so-3', pin, 'tarte'), partition: away },
      { key: pin, value: click('so-3', pin, 'tarte'), partition: away }, // a duplicate, also away
    ]);
    const app = await start(config);
    try {
      const done = (r: Array<{ value: string | null }>) => r.some((m) => m.value && JSON.parse(m.value).engagement_count === 3);
      const records = await readUntil(config, t.enriched, done);
      const doc = docsOf(records).get(pin)!;
      expect(doc.board_titles).toEqual([{ text: 'desserts', count: 2 }]);
      expect(doc.engaged_queries).toEqual([{ text: 'tarte', count: 1 }]);
      expect(doc.engagement_count).toBe(3);
      // One document stream for the pin, on its own partition: its state was not split.
      expect(new Set(records.filter((r) => r.key === pin).map((r) => r.partition))).toEqual(new Set([home]));
      expect(app.stats().enrich!.rerouted).toBeGreaterThanOrEqual(4);
      // The copies are on the pin's partition of each input topic.
      const sentOn = (await readUntil(config, t.engagement, (r) => r.filter((m) => m.partition === home).length >= 4)).filter((m) => m.partition === home);
      expect(new Set(sentOn.map((m) => JSON.parse(m.value!).event_id))).toEqual(new Set(['so-1', 'so-2', 'so-3']));
      // A copy keeps its original's headers and timestamp.
      const copied = sentOn.find((m) => JSON.parse(m.value!).event_id === 'so-1')!;
      expect(copied.headers).toEqual({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
      expect(copied.timestamp).toBe(String(sentAt));
    } finally {
      await app.stop();
    }
    // `enrich rebuild` from the topics into an emptied Redis: the copies are applied, the
    // originals away from the pin's partition are not (they would be counted twice, apart).
    const redis = createRedisFromConfig(config);
    try {
      await deleteKeysWithPrefix(redis, config.redisKeyPrefix);
      await rebuildEnrichState(config, silentLogger);
      const store = createRedisEnrichStore(redis, config.redisKeyPrefix, config.enrichDedupTtlSeconds, false);
      expect(await store.counts(pin, [home])).toEqual({ boards: { desserts: 2 }, queries: { tarte: 1 }, engagements: 3 });
      expect(await store.counts(pin, [away])).toEqual({ boards: {}, queries: {}, engagements: 0 });
    } finally {
      redis.disconnect();
    }
  });

  it("reads engagement that another producer compressed (Kafka's Java producer: snappy, lz4, zstd, gzip)", async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl });
    const t = await setupTopics(config);
    const pin = 'pin-compressed';
    await produce(config, t.pinEvents, [{ key: pin, value: pinEvent(pin) }]);
    const codecs = ['snappy', 'lz4', 'zstd', 'gzip'];
    for (const codec of codecs) await javaProduce(config, t.engagement, codec, [1, 2, 3].map((i) => ({ key: pin, value: save(`${codec}-${i}`, pin, `Board ${codec}`) })));
    const app = await start(config);
    try {
      const done = (r: Array<{ value: string | null }>) => r.some((m) => m.value && JSON.parse(m.value).engagement_count === 12);
      const doc = docsOf(await readUntil(config, t.enriched, done)).get(pin)!;
      expect(doc.board_titles.map((b) => [b.text, b.count]).sort()).toEqual(codecs.map((c) => [`board ${c}`, 3]).sort());
      expect(app.stats().enrich!.engagementEvents).toBe(12);
    } finally {
      await app.stop();
    }
  }, 120_000);

  it('coalesces a burst of engagement within the window into one new version', async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl, PINRICH_ENRICH_WINDOW_MS: '1500' });
    const t = await setupTopics(config);
    await produce(config, t.pinEvents, [{ key: 'b', value: pinEvent('b', { image_url: undefined }) }]);
    const app = await start(config, ['enrich']);
    try {
      // The enrich worker alone in its process: it set its heap growing factor (src/runtime/heap.ts).
      expect(app.heapFlags).toEqual(['--heap-growing-percent=200']);
      const v1 = await readUntil(config, t.enriched, (r) => r.length >= 1);
      expect(JSON.parse(v1[0]!.value!).version).toBe(1);
      await produce(config, t.engagement, Array.from({ length: 50 }, (_, i) => ({ key: 'b', value: click(`burst-${i}`, 'b', `query ${i % 5}`) })));
      await readUntil(config, t.enriched, (r) => r.some((m) => JSON.parse(m.value!).engagement_count === 50));
      // Nothing more may follow for b: read on until a later marker's document is published.
      const marker = markerFor('b', config.topicPartitions);
      await produce(config, t.pinEvents, [{ key: marker, value: pinEvent(marker, { image_url: undefined }) }]);
      const after = await readUntil(config, t.enriched, (r) => r.some((m) => m.key === marker));
      const versions = after.filter((m) => m.key === 'b').map((m) => JSON.parse(m.value!).version);
      expect(versions).toEqual([1, 2]);
    } finally {
      await app.stop();
    }
  });

  it('does not re-emit an unchanged document (a redelivered pin event)', async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl });
    const t = await setupTopics(config);
    const event = pinEvent('u', { image_url: undefined });
    await produce(config, t.pinEvents, [{ key: 'u', value: event }]);
    const app = await start(config, ['enrich']);
    try {
      await readUntil(config, t.enriched, (r) => r.length >= 1);
      await produce(config, t.pinEvents, [{ key: 'u', value: event }]);
      // Applied, flushed, found identical by content hash: nothing published.
      await waitFor('the redelivered event to be flushed', async () => app.stats().enrich!.unchanged >= 1);
      await produce(config, t.engagement, [{ key: 'u', value: save('u1', 'u', 'Board') }]);
      await readUntil(config, t.enriched, (r) => r.length >= 2);
      // Nothing more may follow for u: read on until a later marker's document is published.
      const marker = markerFor('u', config.topicPartitions);
      await produce(config, t.pinEvents, [{ key: marker, value: pinEvent(marker, { image_url: undefined }) }]);
      const all = await readUntil(config, t.enriched, (r) => r.some((m) => m.key === marker));
      // v1 for the pin, v2 for the save; the redelivered event changed nothing.
      expect(all.filter((m) => m.key === 'u').map((m) => JSON.parse(m.value!).version)).toEqual([1, 2]);
    } finally {
      await app.stop();
    }
  });

  it('turns a deleted pin into a tombstone and ignores its later engagement', async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl });
    const t = await setupTopics(config);
    await produce(config, t.pinEvents, [{ key: 'd', value: pinEvent('d', { image_url: undefined }) }]);
    const app = await start(config, ['enrich']);
    try {
      await readUntil(config, t.enriched, (r) => r.length >= 1);
      await produce(config, t.pinEvents, [{ key: 'd', value: { schema: 'pin_event', schema_version: 1, type: 'deleted', pin_id: 'd', event_time: iso(T0 + 5) } }]);
      const recs = await readUntil(config, t.enriched, (r) => r.some((m) => m.value === null));
      expect(recs.at(-1)).toMatchObject({ key: 'd', value: null });
      await produce(config, t.engagement, [{ key: 'd', value: save('late', 'd', 'Whatever') }]);
      await waitFor('the late event to be consumed', async () => app.stats().enrich!.ignoredEngagements === 1);
      const redis = createRedisFromConfig(config);
      expect(await createRedisDocumentReader(redis, redisKeys(config.redisKeyPrefix)).getDocument('d')).toBeNull();
      redis.disconnect();
    } finally {
      await app.stop();
    }
  });

  it('dead-letters malformed JSON, schema violations and unknown versions with the reason, and keeps going', async () => {
    const config = testConfig({ PINRICH_VLM_BASE_URL: server.baseUrl });
    const t = await setupTopics(config);
    const bad = [
      { key: 'k1', value: '{"schema":"pin_event", oops' },
      { key: 'k2', value: { ...pinEvent('k2'), title: 17 } },
      { key: 'k3', value: { ...pinEvent('k3'), schema_version: 99 } },
    ];
    await produce(config, t.pinEvents, [...bad, { key: 'ok', value: pinEvent('ok', { image_url: undefined }) }]);
    await produce(config, t.engagement, [{ key: 'ok', value: Buffer.from([0xc3, 0x28]) }]);
    const app = await start(config);
    try {
      const dl = (await readUntil(config, dlqTopic(t.pinEvents), (r) => r.length >= 6)).map((r) => JSON.parse(r.value!));
      // Both pin-event consumers (caption and enrich) dead-letter each bad record once.
      for (const stage of ['caption', 'enrich']) {
        // Dead-lettering is at-least-once too: a batch redelivered after a rebalance may dead-letter
        // a record again, with the same source coordinates. Count each source record once.
        const bySource = new Map(dl.filter((d) => d.stage === stage).map((d) => [`${d.source.partition}:${d.source.offset}`, d]));
        const mine = [...bySource.values()].sort((a, b) => (a.raw_key < b.raw_key ? -1 : 1));
        expect(mine.map((d) => d.error_code)).toEqual(['malformed_json', 'schema_violation', 'unknown_schema_version']);
        expect(mine[1].reason).toMatch(/^title: /);
        expect(mine[2].reason).toMatch(/version 99/);
        expect(Buffer.from(mine[0].raw_value_base64, 'base64').toString()).toBe(bad[0]!.value);
        expect(mine[0].source.topic).toBe(t.pinEvents);
      }
      const eng = (await readUntil(config, dlqTopic(t.engagement), (r) => r.length >= 1)).map((r) => JSON.parse(r.value!));
      expect(eng[0].error_code).toBe('invalid_utf8');
      expect(Buffer.from(eng[0].raw_value_base64, 'base64')).toEqual(Buffer.from([0xc3, 0x28]));
      // The good record behind the bad ones is processed.
      const docs = docsOf(await readUntil(config, t.enriched, (r) => r.some((m) => m.key === 'ok')));
      expect(docs.get('ok')?.pin_id).toBe('ok');
    } finally {
      await app.stop();
    }
  });
});
