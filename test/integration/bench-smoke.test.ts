/**
 * Smoke tests of the benchmark suite. No timing assertions: the figures depend on the machine;
 * `npm run bench` is where they are read.
 *
 * - dump, --quick: the sub-benchmark runs on the local stack and reports its figures with
 *   commands and settings;
 * - the Kafka Streams peer (bench/streams/) on a tiny input: its output topic holds, for every
 *   pin, the document a recount of the input gives (duplicates dropped, counts, top K with ties
 *   by text) — the peer does the same work as enrich, so its figure is a fair comparison;
 * - a run's keys and topics are dropped at its end (dropRun), another run's are left alone;
 * - the soak (bench/soak.ts) for seconds instead of 30 minutes: all four workers sampled, records
 *   flowing through each, the report, the markdown and the SVG plot written.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, inject, it } from 'vitest';
import { runDump } from '../../bench/dump.js';
import { engagementMessage, pinEventMessage, pinId } from '../../bench/data.js';
import { benchEnv, configOf, dropRun, loadBacklog, setupTopics } from '../../bench/lib.js';
import { createRedisFromConfig } from '../../src/adapters/redis/client.js';
import { runSoak, slope, verdicts, type SoakReport } from '../../bench/soak.js';
import { runStreamsPeer } from '../../bench/streams.js';
import { topK } from '../../src/core/document.js';
import { foldText } from '../../src/core/text.js';
import { WORKER_NAMES } from '../../src/workers.js';

describe.skipIf(!inject('stack'))('bench run clean-up', () => {
  it("drops the run's Redis keys and Kafka topics, and leaves another run's alone", async () => {
    const mine = configOf(benchEnv(inject('stack')));
    const other = configOf(benchEnv(inject('stack')));
    await setupTopics(mine);
    await setupTopics(other);
    const redis = createRedisFromConfig(mine);
    const admin = new Kafka({ brokers: [...mine.kafkaBrokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      await redis.set(`${mine.redisKeyPrefix}a`, '1');
      await redis.hset(`${mine.redisKeyPrefix}{p0}:meta`, 'ready', '1');
      await redis.set(`${other.redisKeyPrefix}a`, '1');
      await dropRun(mine, () => {});
      const topics = await admin.listTopics();
      expect(topics.filter((t) => t.startsWith(mine.topicPrefix))).toEqual([]);
      expect(topics.filter((t) => t.startsWith(other.topicPrefix)).length).toBeGreaterThan(0);
      expect(await redis.exists(`${mine.redisKeyPrefix}a`, `${mine.redisKeyPrefix}{p0}:meta`)).toBe(0);
      expect(await redis.get(`${other.redisKeyPrefix}a`)).toBe('1');
      await dropRun(other, () => {});
    } finally {
      await admin.disconnect();
      redis.disconnect();
    }
  });
});

describe.skipIf(!inject('stack'))('bench smoke (dump, --quick)', () => {
  it('produces a result with figures, commands, settings and targets', async () => {
    const r = await runDump({ quick: true, profile: false, log: () => {} });
    expect(r.bench).toBe('dump');
    const names = r.figures.map((f) => f.name);
    expect(names).toEqual(['dump throughput', 'dump peak RSS', 'dump peak anonymous memory (RSS less mapped files: V8 heap and native allocations)']);
    for (const f of r.figures) {
      expect(f.value).toBeGreaterThan(0);
      expect(f.unit).toMatch(/rows\/s|MB/);
      expect(f.command).toContain('bench/dump.ts');
      expect(f.settings.rows).toBe(50_000);
      if (f.name.includes('anonymous')) continue; // a breakdown of the RSS figure, no target of its own
      expect(f.target).toMatchObject({ op: expect.stringMatching(/^(>=|<=)$/), met: expect.any(Boolean) });
    }
    const [, rss, anon] = r.figures;
    expect(anon!.value).toBeLessThanOrEqual(rss!.value);
    // Every label of the backlog went through the worker and into sealed objects.
    expect(r.details).toMatchObject({ stats: { rows: 50_000, sealed: 4, rejected: 0 } });
  });
});

type Counted = Array<{ text: string; count: number }>;
interface Doc {
  pin_id: string;
  version: number;
  title: string;
  board_titles: Counted;
  engaged_queries: Counted;
  engagement_count: number;
  content_hash: string;
}

describe.skipIf(!inject('stack'))('bench smoke: the Kafka Streams peer does enrich\'s work', () => {
  it('publishes, per pin, the deduplicated counts and top K that a recount of the input gives', async () => {
    const PINS = 60;
    const EVENTS = 2_000;
    const DUPLICATES = 150;
    const env = benchEnv(inject('stack'));
    const config = configOf(env);
    const t = await setupTopics(config);
    const runId = config.redisKeyPrefix.replace(/\W/g, '');
    await loadBacklog(config, t.pinEvents, PINS, pinEventMessage);
    await loadBacklog(config, t.engagement, EVENTS, (i) => engagementMessage(i, PINS, runId));
    // Redeliveries: the same events (same event_id) a second time.
    const redelivered = (i: number) => (i * 13) % EVENTS;
    await loadBacklog(config, t.engagement, DUPLICATES, (i) => engagementMessage(redelivered(i), PINS, runId));

    const outputTopic = `${config.topicPrefix}streams-smoke.enriched`;
    const r = await runStreamsPeer({
      config,
      pinsTopic: t.pinEvents,
      engagementTopic: t.engagement,
      outputTopic,
      applicationId: `${config.groupPrefix}.streams-smoke`,
      guarantee: 'exactly_once_v2',
      expectedRecords: PINS + EVENTS + DUPLICATES,
      threads: 1,
      commitIntervalMs: 200,
      topK: 3,
      timeoutMs: 150_000,
      log: () => {},
    });
    expect(r.final).toMatchObject({ processed: PINS + EVENTS + DUPLICATES, duplicates: DUPLICATES, malformed: 0 });
    expect(r.seconds).toBeGreaterThan(0);
    expect(r.peakRss).toBeGreaterThan(0);

    // The recount, with pinrich's own normalisation and top-K rule.
    const seen = new Set<string>();
    const want = new Map<string, { boards: Map<string, number>; queries: Map<string, number>; n: number }>();
    for (let i = 0; i < EVENTS + DUPLICATES; i++) {
      const m = engagementMessage(i < EVENTS ? i : redelivered(i - EVENTS), PINS, runId);
      const e = JSON.parse(String(m.value)) as { event_id: string; pin_id: string; type: string; board_title?: string; query?: string };
      if (seen.has(e.event_id)) continue;
      seen.add(e.event_id);
      const s = want.get(e.pin_id) ?? { boards: new Map(), queries: new Map(), n: 0 };
      want.set(e.pin_id, s);
      const [map, text] = e.type === 'save' ? [s.boards, e.board_title!] : [s.queries, e.query!];
      map.set(foldText(text), (map.get(foldText(text)) ?? 0) + 1);
      s.n++;
    }
    const top = (m: Map<string, number> | undefined) => topK([...(m ?? [])].map(([text, count]) => ({ text, count })), 3);

    // Everything the peer committed to its output topic, in order per pin.
    const docs = new Map<string, Doc[]>();
    const kafka = new Kafka({ clientId: 'bench-smoke', brokers: [...config.kafkaBrokers], logLevel: logLevel.NOTHING });
    const consumer = kafka.consumer({ groupId: `${config.groupPrefix}.smoke-reader`, readUncommitted: false });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: outputTopic, fromBeginning: true });
      let received = 0;
      let wrongKeys = 0;
      const all = new Promise<void>((resolve) => {
        void consumer.run({
          eachMessage: async ({ message }) => {
            const d = JSON.parse(String(message.value)) as Doc;
            if (String(message.key) !== d.pin_id) wrongKeys++;
            docs.set(d.pin_id, [...(docs.get(d.pin_id) ?? []), d]);
            if (++received === r.final.documents) resolve();
          },
        });
      });
      await Promise.race([all, new Promise((_, reject) => setTimeout(() => reject(new Error(`read ${received} of ${r.final.documents} documents`)), 60_000))]);
      expect(wrongKeys).toBe(0);
    } finally {
      await consumer.disconnect();
    }

    expect(docs.size).toBe(PINS);
    let tiesSeen = 0;
    for (let p = 0; p < PINS; p++) {
      const id = pinId(p);
      const versions = docs.get(id)!;
      // Versions 1, 2, 3, ... and a new version only when the content changed.
      expect(versions.map((d) => d.version)).toEqual(versions.map((_, i) => i + 1));
      for (let i = 1; i < versions.length; i++) expect(versions[i]!.content_hash).not.toBe(versions[i - 1]!.content_hash);
      const last = versions[versions.length - 1]!;
      const s = want.get(id);
      expect(last.title).toBe(JSON.parse(String(pinEventMessage(p).value)).title);
      expect({ n: last.engagement_count, boards: last.board_titles, queries: last.engaged_queries }).toEqual({ n: s?.n ?? 0, boards: top(s?.boards), queries: top(s?.queries) });
      for (const list of [last.board_titles, last.engaged_queries]) for (let i = 1; i < list.length; i++) if (list[i]!.count === list[i - 1]!.count) tiesSeen++;
    }
    // The input is dense enough that equal counts occur: the tie rule was exercised.
    expect(tiesSeen).toBeGreaterThan(0);
  }, 240_000);
});

describe('soak figures', () => {
  it('slopes by least squares; a fall is flat, a rise beyond the allowance is not', () => {
    expect(slope([[0, 1], [1, 3], [2, 5]])).toBeCloseTo(2);
    expect(slope([[0, 5]])).toBe(0);
    const at = (t: number, rss: number, lag: number) => ({ t, rssMB: Object.fromEntries(WORKER_NAMES.map((w) => [w, rss])), lag: Object.fromEntries(WORKER_NAMES.map((w) => [w, lag])), records: Object.fromEntries(WORKER_NAMES.map((w) => [w, t])) }) as SoakReport['samples'][number];
    // One hour: RSS 200 -> 260 MB (60 MB/h, beyond max(10, 5 % of 200)); lag falling 1,000 -> 0.
    const rising = Array.from({ length: 61 }, (_, i) => at(i * 60, 200 + i, 1_000 - (i * 1_000) / 60));
    const v = verdicts(rising, 0).enrich;
    expect(v.rssSlopeMBPerHour).toBeCloseTo(60, 0);
    expect(v.rssFlat).toBe(false);
    expect(v.lagSlopePerMin).toBeLessThan(0);
    expect(v.lagFlat).toBe(true);
    const steady = Array.from({ length: 61 }, (_, i) => at(i * 60, 200 + (i % 2) * 8, 50));
    expect(verdicts(steady, 0).dump).toMatchObject({ rssFlat: true, lagFlat: true, rssStartMB: 204, lagEnd: 50 });
  });
});

describe.skipIf(!inject('stack'))('bench smoke: a soak of seconds', () => {
  it('samples every worker, moves records through all four, and writes the report and the plot', async () => {
    const outDir = mkdtempSync(join(tmpdir(), 'pinrich-soak-'));
    try {
      const r = await runSoak({ minutes: 0.5, sampleSeconds: 2, warmupMinutes: 0.1, outDir, log: () => {} });
      expect(r.samples.length).toBeGreaterThanOrEqual(12);
      for (const s of r.samples) for (const w of WORKER_NAMES) expect(s.rssMB[w], `${w} at ${s.t} s`).toBeGreaterThan(20);
      const last = r.samples.at(-1)!;
      // The load reached every worker: caption (pins), enrich (pins, engagement, captions),
      // score (pairs) and dump (the labels score wrote).
      for (const w of WORKER_NAMES) expect(last.records[w], w).toBeGreaterThan(0);
      expect(r.produced.engagement).toBeGreaterThan(0);
      for (const w of WORKER_NAMES) expect(r.workers[w]).toMatchObject({ rssStartMB: expect.any(Number), rssSlopeMBPerHour: expect.any(Number), lagSlopePerMin: expect.any(Number), rssFlat: expect.any(Boolean), lagFlat: expect.any(Boolean) });
      const json = JSON.parse(readFileSync(join(outDir, 'soak.json'), 'utf8')) as SoakReport;
      expect(json.samples.length).toBe(r.samples.length);
      const md = readFileSync(join(outDir, 'soak.md'), 'utf8');
      for (const w of WORKER_NAMES) expect(md).toMatch(new RegExp(`^\\| ${w} \\| [\\d.]+ MB`, 'm'));
      const svg = readFileSync(join(outDir, 'soak.svg'), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      // One line per worker in each of the two panels (RSS, lag), each through every sample.
      const lines = [...svg.matchAll(/<polyline [^>]*points="([^"]+)"/g)].map((m) => m[1]!.split(' ').length);
      expect(lines).toEqual(Array(2 * WORKER_NAMES.length).fill(r.samples.length));
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  }, 240_000);
});
