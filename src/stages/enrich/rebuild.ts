/**
 * Rebuilding the enrich worker's Redis state from Kafka, and telling whether it must be rebuilt.
 *
 * Redis keeps nothing across a restart here (no persistence, by design of the local stack and
 * of many cache-style deployments), but the enrich state in it is not a cache: it is the
 * aggregate of every pin event, engagement event and caption ever consumed, and the consumer
 * group's committed offsets say those records are done. After Redis comes back empty, carrying
 * on would publish documents built from a fraction of each pin's history. So:
 *
 * - the state carries a marker key (see adapters/redis/keys.ts), written
 *   when the state is known complete: on a fresh deployment (the enrich group has committed
 *   nothing yet) or at the end of a rebuild;
 * - while the marker is missing the enrich worker applies and publishes nothing and holds its
 *   offsets (loudly: an error log line every 10 s and on every batch), and the score worker
 *   holds pairs whose document is missing instead of dead-lettering them;
 * - `pinrich enrich rebuild` puts the state back from the topics, which hold the full history:
 *   1. snapshot the end offsets of every topic it reads;
 *   2. pins.enriched (compacted: the last document per pin) -> each pin's published version,
 *      content hash and published document (what the score worker reads), so the worker continues
 *      the version sequence and does not re-emit unchanged documents;
 *   3. pins.events, pins.captions, pins.engagement from the beginning through the enrich
 *      stage's own handle() (the same idempotent Lua scripts: stale pin events ignored,
 *      engagement deduplicated by event_id), which also marks every pin dirty so the worker
 *      re-checks it; a pin whose content did not change is not re-emitted (same hash);
 *   4. with pair mining on: relevance.pairs -> queries already published as pairs are not
 *      mined again;
 *   5. write the marker. The worker resumes from its committed offsets; records it applies a
 *      second time change nothing (idempotent), records after the snapshot are new.
 *
 * What it cannot do: engagement older than the dedup TTL is counted again if the input topic
 * still holds it twice (upstream duplicates further apart than the TTL); records already
 * deleted by topic retention are gone (size retention of the enrich inputs for rebuilds, or
 * keep Redis persistent). The caption and label caches are only caches: losing them costs
 * model calls again, never correctness, so they are not rebuilt.
 */
import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { EnrichedDocument } from '../../../schemas/enriched-document.js';
import { Pair } from '../../../schemas/pair.js';
import { createKafka } from '../../adapters/kafka/client.js';
import { createRedisFromConfig, pingRedis } from '../../adapters/redis/client.js';
import { createRedisEnrichStore } from '../../adapters/redis/enrich-state.js';
import { redisKeys } from '../../adapters/redis/keys.js';
import { topics as topicNames, type Config } from '../../config.js';
import { systemClock } from '../../runtime/clock.js';
import type { Logger } from '../../runtime/log.js';
import { inRecordOf, type InRecord } from '../../runtime/stage.js';
import type { EnrichStateStore } from './ports.js';
import { createEnrichStage } from './stage.js';

const parseJson = (bytes: Buffer): unknown => {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined; // fails the schema check that follows
  }
};

export type EnrichStateStatus = 'ready' | 'fresh' | 'lost';

/** Does the consumer group `groupId` have a committed offset on any partition of `topics`? */
async function hasCommittedOffsets(kafka: Kafka, groupId: string, topics: string[]): Promise<boolean> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const committed = await admin.fetchOffsets({ groupId, topics });
    return committed.some((t) => t.partitions.some((p) => p.offset !== '-1'));
  } finally {
    await admin.disconnect();
  }
}

/**
 * At worker start (enrich and score): is the enrich state complete? With no marker and no
 * committed enrich offsets this is a fresh deployment: the (empty) state is complete, and the
 * marker is written. With no marker but committed offsets, Redis has lost the state: 'lost'.
 */
export async function checkEnrichState(kafka: Kafka, store: Pick<EnrichStateStore, 'stateReady' | 'markStateReady'>, config: Config, log: Logger): Promise<EnrichStateStatus> {
  if (await store.stateReady()) return 'ready';
  const t = topicNames(config);
  if (await hasCommittedOffsets(kafka, `${config.groupPrefix}.enrich`, [t.pinEvents, t.engagement, t.captions])) {
    log.error('enrich state is missing from Redis but the enrich group has committed offsets: Redis lost its data. Run `pinrich enrich rebuild`; until then the enrich worker publishes nothing and the score worker holds pairs without a document', {
      group: `${config.groupPrefix}.enrich`,
    });
    return 'lost';
  }
  // Re-check after the offsets: a rebuild may have written the marker meanwhile (NX keeps it).
  const partitions = [...(await endOffsets(kafka, t.pinEvents)).keys()];
  await store.markStateReady({ source: 'fresh', at: new Date().toISOString() }, partitions, true);
  return 'fresh';
}

/** End offset (high watermark) of every partition of `topic`. */
async function endOffsets(kafka: Kafka, topic: string): Promise<Map<number, bigint>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, BigInt(p.high)]));
  } finally {
    await admin.disconnect();
  }
}

/**
 * Read `topic` from the beginning up to (not including) `ends`, handing each fetched batch of
 * one partition to `onBatch` in offset order. Uses a throw-away consumer group that commits
 * nothing (kafkajs has no manual assignment) and deletes it afterwards.
 */
async function readTopicTo(kafka: Kafka, groupId: string, topic: string, ends: Map<number, bigint>, onBatch: (records: InRecord[]) => Promise<void>): Promise<number> {
  const pending = new Set([...ends].filter(([, end]) => end > 0n).map(([p]) => p));
  if (pending.size === 0) return 0;
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, allowAutoTopicCreation: false });
  let count = 0;
  let finish!: (err?: unknown) => void;
  const done = new Promise<void>((resolve, reject) => (finish = (err) => (err ? reject(err) : resolve())));
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    // Done by the fetch position, which kafkajs reports after each batch, also one it hands
    // nothing of: pins.enriched is written in transactions, so its end may be a commit marker or
    // an aborted transaction, never a record eachBatch sees.
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      if (payload.topic !== topic || BigInt(payload.lastOffset) + 1n < (ends.get(payload.partition) ?? 0n)) return;
      pending.delete(payload.partition);
      if (pending.size === 0) finish();
    });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const end = ends.get(batch.partition) ?? 0n;
        const records: InRecord[] = batch.messages
          .filter((m) => BigInt(m.offset) < end)
          .map((m) => inRecordOf(batch.topic, batch.partition, m));
        try {
          if (records.length) await onBatch(records);
        } catch (err) {
          finish(err);
          throw err;
        }
        count += records.length;
      },
    });
    await done;
  } finally {
    await consumer.disconnect();
    const admin = kafka.admin();
    await admin.connect().then(() => admin.deleteGroups([groupId])).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }
  return count;
}

export interface RebuildReport {
  documents: number;
  pinEvents: number;
  captions: number;
  engagement: number;
  pairs: number;
  /** Records the enrich stage rejects (they went to the DLQ when first consumed). */
  rejected: number;
  ms: number;
}

/** `pinrich enrich rebuild`: replay the topics into Redis, then write the state marker. */
export async function rebuildEnrichState(config: Config, log: Logger, progress: (line: string) => void = () => {}): Promise<RebuildReport> {
  const started = Date.now();
  const t = topicNames(config);
  const kafka = createKafka(config, log, 'rebuild');
  const redis = createRedisFromConfig(config);
  try {
    await pingRedis(redis);
    const store = createRedisEnrichStore(redis, redisKeys(config.redisKeyPrefix), config.enrichDedupTtlSeconds, config.enrichMinePairs);
    const stage = createEnrichStage({
      store,
      topics: t,
      topK: config.enrichTopK,
      windowMs: config.enrichWindowMs,
      minePairs: config.enrichMinePairs,
      maxRecordBytes: config.maxRecordBytes,
      clock: systemClock,
      log,
      requireState: false,
      fence: false, // the workers hold while the state is missing: their epochs stay valid
      // A record on another partition than its pin's is skipped here (its outputs are not
      // published): the worker sent it on, or will, and its copy on the right partition is applied.
      inputPartitions: async (topic) => snapshot.get(topic)!.size,
    });
    const report: RebuildReport = { documents: 0, pinEvents: 0, captions: 0, engagement: 0, pairs: 0, rejected: 0, ms: 0 };
    const snapshot = new Map<string, Map<number, bigint>>();
    for (const topic of [t.enriched, t.pinEvents, t.captions, t.engagement, ...(config.enrichMinePairs ? [t.pairs] : [])]) {
      snapshot.set(topic, await endOffsets(kafka, topic));
    }
    const group = `${config.groupPrefix}.enrich-rebuild-${randomUUID().slice(0, 8)}`;
    const ctx = { signal: new AbortController().signal, heartbeat: async () => {} };

    // 2. Published documents: version, content hash and the document. Records of one pin are in
    // one partition (the same as its input partition: co-partitioned), read in order, so the last
    // one applied is the current one.
    // A tombstone ends the pin's last document: its version is that one's (kept per pin here).
    const lastVersion = new Map<string, number>();
    report.documents = await readTopicTo(kafka, `${group}-docs`, t.enriched, snapshot.get(t.enriched)!, async (records) => {
      await Promise.all(
        records.map(async (r) => {
          if (r.key === null) return;
          if (r.value === null) return store.restorePublished(r.partition, r.key, 'deleted', lastVersion.get(r.key) ?? 0, null);
          const doc = EnrichedDocument.safeParse(parseJson(r.value));
          if (!doc.success) return; // not ours to judge here; the topic is written by this worker only
          lastVersion.set(r.key, doc.data.version);
          await store.restorePublished(r.partition, r.key, doc.data.content_hash, doc.data.version, r.value.toString('utf8'));
        }),
      );
    });
    progress(`rebuild: ${report.documents} published documents restored`);

    // 3. Inputs, through the stage's own handle().
    const replay = (topic: string) =>
      readTopicTo(kafka, `${group}-${topic}`, topic, snapshot.get(topic)!, async (records) => {
        const result = await stage.handle(records, ctx);
        await stage.flushState();
        report.rejected += result.rejected.length;
      });
    report.pinEvents = await replay(t.pinEvents);
    progress(`rebuild: ${report.pinEvents} pin events replayed`);
    report.captions = await replay(t.captions);
    progress(`rebuild: ${report.captions} captions replayed`);
    report.engagement = await replay(t.engagement);
    progress(`rebuild: ${report.engagement} engagement events replayed`);

    // 4. Queries already published as pairs are not new.
    if (config.enrichMinePairs) {
      report.pairs = await readTopicTo(kafka, `${group}-pairs`, t.pairs, snapshot.get(t.pairs)!, async (records) => {
        // relevance.pairs is keyed by pin id and has the inputs' partition count: a pair's
        // partition is its pin's partition of the enrich state.
        const byPin = new Map<string, { partition: number; queries: string[] }>();
        for (const r of records) {
          if (r.value === null) continue;
          const pair = Pair.safeParse(parseJson(r.value));
          if (!pair.success || pair.data.source !== 'search_engagement') continue;
          const entry = byPin.get(pair.data.pin_id) ?? { partition: r.partition, queries: [] };
          entry.queries.push(pair.data.query);
          byPin.set(pair.data.pin_id, entry);
        }
        await Promise.all([...byPin].map(([pin, { partition, queries }]) => store.forgetNewQueries(partition, pin, queries)));
      });
      progress(`rebuild: ${report.pairs} published pairs read`);
    }

    // 5. The state is complete up to the snapshot; the worker takes it from here.
    await store.markStateReady({ source: 'rebuild', at: new Date().toISOString() }, [...snapshot.get(t.pinEvents)!.keys()]);
    report.ms = Date.now() - started;
    progress(`rebuild: done in ${(report.ms / 1000).toFixed(1)} s; the enrich worker resumes from its committed offsets`);
    return report;
  } finally {
    redis.disconnect();
  }
}
