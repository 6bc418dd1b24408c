/**
 * The enrich worker as a real process: SIGKILL mid-stream loses and double-counts nothing;
 * SIGTERM drains and leaves the consumer group cleanly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { createRedis } from '../../src/adapters/redis/client.js';
import { createRedisEnrichStore } from '../../src/adapters/redis/enrich-state.js';
import { redisKeys } from '../../src/adapters/redis/keys.js';
import { foldText } from '../../src/core/text.js';
import { loadConfig } from '../../src/config.js';
import { startModelServer } from '../../src/model-server/server.js';
import { createRandom } from '../../src/demo/sample.js';
import { caughtUp, latestByKey, produce, readToEnd, setupTopics, testEnv, testKafka, waitFor } from '../support/harness.js';

const T0 = Date.parse('2026-11-28T00:00:00Z');

function startWorkerProcess(env: Record<string, string>, worker = 'enrich'): ChildProcess {
  const child = spawn(process.execPath, ['bin/pinrich.js', 'run', worker], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', () => {}); // drain
  return child;
}

function makeWorkload(pins: number, events: number) {
  const r = createRandom(7);
  const pinEvents = Array.from({ length: pins }, (_, i) => ({
    key: `p${i}`,
    value: { schema: 'pin_event', schema_version: 1, type: 'created', pin_id: `p${i}`, event_time: new Date(T0).toISOString(), title: `Pin ${i}`, description: 'Easy weeknight pasta', language: 'en' },
  }));
  const engagement: Array<{ key: string; value: Record<string, unknown> }> = [];
  const expected = new Map<string, { boards: Record<string, number>; queries: Record<string, number>; engagements: number }>();
  for (let e = 0; e < events; e++) {
    const pin = `p${r.zipf(pins)}`;
    const search = r.next() < 0.5;
    const text = search ? r.pick(['Pasta Recipes', 'pasta  recipes', 'dinner ideas', 'lemon pasta']) : r.pick(['Dinner', 'Quick meals', 'QUICK MEALS']);
    const value = { schema: 'engagement_event', schema_version: 1, event_id: `ev-${e}`, pin_id: pin, event_time: new Date(T0 + e).toISOString(), user_id: 'u', ...(search ? { type: 'search_click', query: text } : { type: 'save', board_title: text }) };
    engagement.push({ key: pin, value });
    if (r.next() < 0.05) engagement.push({ key: pin, value }); // upstream duplicate
    const x = expected.get(pin) ?? { boards: {}, queries: {}, engagements: 0 };
    const bucket = search ? x.queries : x.boards;
    bucket[foldText(text)] = (bucket[foldText(text)] ?? 0) + 1;
    x.engagements++;
    expected.set(pin, x);
  }
  return { pinEvents, engagement, expected };
}

describe('enrich worker process', () => {
  it('leaves every count exactly right after being SIGKILLed mid-stream twice', async () => {
    // A short session timeout: the group notices the killed member sooner (the default is 30 s).
    // A 4 MiB buffer: several chunks of records wait in memory for each state flush (~5,600
    // records), so a kill finds fetched records whose offsets must not have been committed.
    const env = testEnv({ PINRICH_ENRICH_WINDOW_MS: '200', PINRICH_KAFKA_SESSION_TIMEOUT_MS: '6000', PINRICH_ENRICH_BUFFER_BYTES: String(4 * 1024 * 1024) });
    const config = loadConfig(env);
    const t = await setupTopics(config);
    // Enough events that the second kill still lands mid-stream at the worker's full speed
    // (~50,000 events/s): its target is at most half of them, so a second of work or more
    // remains after it even when the kill lands late.
    const events = 120_000;
    const { pinEvents, engagement, expected } = makeWorkload(40, events);
    await produce(config, t.pinEvents, pinEvents);
    await produce(config, t.engagement, engagement);

    const redis = createRedis(config.redisUrl);
    const store = createRedisEnrichStore(redis, redisKeys(config.redisKeyPrefix), 60, false);
    const partitions = [...Array(config.topicPartitions).keys()];
    const counted = async () => {
      let n = 0;
      for (const pin of expected.keys()) n += (await store.counts(pin, partitions)).engagements;
      return n;
    };
    const started = Date.now();
    const step = (what: string) => console.log(`[crash] ${what} at ${((Date.now() - started) / 1000).toFixed(1)} s`);
    try {
      for (const killAfter of [8_000, 16_000]) {
        const child = startWorkerProcess(env);
        const before = await counted();
        // Kill once this run has made progress, but (at this size) well before the end.
        await waitFor('progress', async () => (await counted()) >= Math.min(before + killAfter, events / 2), 90_000, 50);
        // Between two state flushes (one per 100 ms tick): the worker holds fetched records in
        // memory whose offsets must not have been committed.
        await new Promise((r) => setTimeout(r, 30 + Math.random() * 60));
        child.kill('SIGKILL');
        await once(child, 'exit');
        step(`SIGKILL with ${await counted()} events counted`);
      }
      expect(await counted()).toBeLessThan(events); // the kills really were mid-stream

      const child = startWorkerProcess(env);
      try {
        await waitFor('the group to catch up', () => caughtUp(config, `${config.groupPrefix}.enrich`, [t.pinEvents, t.engagement]), 120_000, 500);
        step('caught up');
        for (const [pin, want] of expected) expect(await store.counts(pin, partitions), pin).toEqual(want);
        // The published documents agree with the state (latest version per pin).
        const total = [...expected.values()].reduce((a, x) => a + x.engagements, 0);
        await waitFor('documents to reflect every event', async () => {
          // The whole topic up to its current end: an early stop would see stale versions.
          const docs = latestByKey(await readToEnd(config, t.enriched));
          const sum = [...docs.values()].reduce((a, v) => a + (v ? JSON.parse(v).engagement_count : 0), 0);
          return sum === total;
        }, 60_000, 1_000);
        step('documents reflect every event');
      } finally {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    } finally {
      redis.disconnect();
    }
  });

  it('on SIGTERM finishes in-flight work, commits, and leaves the group', async () => {
    // A slow model keeps caption calls in flight when SIGTERM lands: the worker must let them
    // finish, publish their captions and commit those records before it leaves the group.
    const server = await startModelServer();
    try {
      server.script({ kind: 'caption', match: 'slow-image', times: Infinity, reply: { delayMs: 2_500 } });
      const env = testEnv({ PINRICH_VLM_BASE_URL: server.baseUrl });
      const config = loadConfig(env);
      const t = await setupTopics(config);
      const pins = Array.from({ length: 6 }, (_, i) => ({
        key: `p${i}`,
        value: { schema: 'pin_event', schema_version: 1, type: 'created', pin_id: `p${i}`, event_time: new Date(T0).toISOString(), title: `Pin ${i}`, description: 'Easy weeknight pasta', image_url: `https://images.example.com/slow-image-${i}.jpg`, language: 'en' },
      }));
      await produce(config, t.pinEvents, pins);
      const child = startWorkerProcess(env, 'caption');
      const pending = () => server.requests().filter((r) => r.kind === 'caption' && r.status === 0);
      // Positive signal that work is in flight: requests at the model, none answered yet.
      await waitFor('caption calls in flight', async () => pending().length > 0, 120_000, 50);
      const inFlight = pending().length;
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      expect(code).toBe(0);
      // Every call the worker started was answered, none abandoned (499 = client went away).
      const calls = server.requests().filter((r) => r.kind === 'caption');
      expect(calls.length).toBeGreaterThanOrEqual(inFlight);
      expect(calls.map((r) => r.status)).toEqual(calls.map(() => 200));
      // Their captions are published ...
      const captions = (await readToEnd(config, t.captions)).map((r) => JSON.parse(r.value!) as { pin_id: string; status: string });
      const called = new Set(calls.map((r) => /slow-image-(\d+)/.exec(JSON.stringify(r.body))![1]).map((i) => `p${i}`));
      expect(new Set(captions.filter((c) => c.status === 'ok').map((c) => c.pin_id))).toEqual(called);
      // ... and their records committed: the group's offsets are past each captioned pin event.
      const source = await readToEnd(config, t.pinEvents);
      const admin = testKafka(config).admin();
      await admin.connect();
      try {
        const [committed] = await admin.fetchOffsets({ groupId: `${config.groupPrefix}.caption`, topics: [t.pinEvents] });
        const at = new Map(committed!.partitions.map((p) => [p.partition, BigInt(p.offset)]));
        for (const r of source.filter((r) => called.has(r.key!))) expect(at.get(r.partition)! > BigInt(r.offset)).toBe(true);
        const { groups } = await admin.describeGroups([`${config.groupPrefix}.caption`]);
        expect(groups[0]!.members).toHaveLength(0); // left the group, no session to time out
        expect(groups[0]!.state).toBe('Empty');
      } finally {
        await admin.disconnect();
      }
    } finally {
      await server.close();
    }
  });
});
