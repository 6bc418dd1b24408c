/**
 * `pinrich demo`: the main job end to end on the local embedded stack.
 *
 * Starts (or reuses) the local stack, creates a fresh set of topics for this run, starts the
 * project's own OpenAI-compatible server as the model stand-in (unless PINRICH_VLM_BASE_URL
 * points at a real VLM), publishes a generated sample, runs the caption and enrich workers,
 * shows progress, and ends with a summary and three example enriched documents.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Kafka, logLevel } from 'kafkajs';
import { startApp } from '../app.js';
import { createTopics } from '../adapters/kafka/admin.js';
import { dlqTopic, loadConfig, topics as topicNames, type Config } from '../config.js';
import { createLogger } from '../runtime/log.js';
import { startModelServer, type ModelServer } from '../model-server/server.js';
import { stackEnv, stackUp } from '../stack/index.js';
import { generateSample } from './sample.js';

export interface DemoOptions {
  pins: number;
  events: number;
  summaryFile?: string;
  out: (line: string) => void;
}

export async function runDemo(opts: DemoOptions): Promise<Record<string, unknown>> {
  const { out } = opts;
  const t0 = Date.now();
  out('pinrich demo: enrichment end to end on the local stack');
  const endpoints = await stackUp({ log: (l) => out(`  stack: ${l}`) });
  out(`  stack: Kafka ${endpoints.kafkaBrokers.join(',')}, Redis ${endpoints.redisUrl}, S3 ${endpoints.s3.endpoint} (${endpoints.startedByUs ? 'started' : 'reused'})`);

  const run = `demo-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${randomUUID().slice(0, 4)}`;
  let modelServer: ModelServer | undefined;
  const env: Record<string, string | undefined> = { ...process.env, ...stackEnv(endpoints), PINRICH_TOPIC_PREFIX: `${run}.`, PINRICH_REDIS_PREFIX: `${run}:`, PINRICH_GROUP_PREFIX: run };
  // Keep any external service the user configured.
  for (const k of ['PINRICH_KAFKA_BROKERS', 'PINRICH_REDIS_URL', 'PINRICH_S3_ENDPOINT']) if (process.env[k]) env[k] = process.env[k];
  if (!env.PINRICH_VLM_BASE_URL) {
    modelServer = await startModelServer();
    env.PINRICH_VLM_BASE_URL = modelServer.baseUrl;
    out(`  model: STAND-IN — pinrich's own OpenAI-compatible test server at ${modelServer.baseUrl} writes the captions.`);
    out('         Set PINRICH_VLM_BASE_URL (and PINRICH_VLM_MODEL, PINRICH_VLM_API_KEY) to use a real VLM.');
  } else {
    out(`  model: ${env.PINRICH_VLM_BASE_URL} (${env.PINRICH_VLM_MODEL ?? 'default model'})`);
  }
  env.PINRICH_ENRICH_MINE_PAIRS ??= 'true';
  const config: Config = loadConfig(env);
  const t = topicNames(config);
  const kafka = new Kafka({ clientId: 'pinrich-demo', brokers: [...config.kafkaBrokers], logLevel: logLevel.NOTHING });
  const created = await createTopics(kafka, config);
  out(`  topics: ${created.length} created with prefix "${config.topicPrefix}" (${config.topicPartitions} partitions each)`);

  const sample = generateSample({ pins: opts.pins, events: opts.events });
  const f = sample.facts;
  out(`  sample: ${f.pins} pins in ${f.languages.length} languages, ${f.repinnedImages} re-pinned images, ${f.hostileImageUrls} hostile image URLs,`);
  out(`          ${f.engagementEvents} engagement events (+${f.duplicateEngagement} redelivered duplicates), ${f.deletedPins} deletes, ${f.malformedPinRecords + f.malformedEngagementRecords} malformed records`);

  const producer = kafka.producer();
  await producer.connect();
  const send = async (topic: string, records: Array<{ key: string; value: unknown }>) => {
    for (let i = 0; i < records.length; i += 2_000) {
      await producer.send({
        topic,
        acks: -1,
        messages: records.slice(i, i + 2_000).map((r) => ({ key: r.key, value: typeof r.value === 'string' || Buffer.isBuffer(r.value) ? r.value : JSON.stringify(r.value) })),
      });
    }
  };
  await send(t.pinEvents, sample.pinEvents);
  await send(t.engagement, sample.engagement);
  await producer.disconnect();
  out(`  published ${sample.pinEvents.length} pin records and ${sample.engagement.length} engagement records`);

  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const app = await startApp(config, ['caption', 'enrich'], log);
  const expectedEnrichInputs = () => sample.pinEvents.length + sample.engagement.length + (app.workers.caption?.stats().outputs ?? 0);
  const progress = setInterval(() => {
    const c = app.workers.caption!.stats();
    const e = app.workers.enrich!.stats();
    out(`  … caption ${c.records}/${sample.pinEvents.length} events → ${c.outputs} captions | enrich ${e.records}/${expectedEnrichInputs()} records, ${app.stats().enrich?.documents ?? 0} documents`);
  }, 2_000);
  try {
    // Done when the caption worker consumed every pin record, the enrich worker every input
    // record (including every caption), and no pin is left waiting in a coalescing window.
    const deadline = Date.now() + 10 * 60_000;
    for (;;) {
      const c = app.workers.caption!.stats();
      const e = app.workers.enrich!.stats();
      if (c.records >= sample.pinEvents.length && e.records >= expectedEnrichInputs()) {
        const dirty = await Promise.all([...Array(config.topicPartitions).keys()].map((p) => app.redis.zcard(`${config.redisKeyPrefix}dirty:${p}`)));
        if (dirty.every((n) => n === 0)) break;
      }
      if (Date.now() > deadline) throw new Error('demo did not finish within 10 minutes');
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    clearInterval(progress);
  }
  const stats = app.stats();
  await app.stop();

  // Read the results back from Kafka, as a downstream indexer would.
  const enriched = await readAll(kafka, t.enriched);
  const latest = new Map<string, string | null>();
  for (const m of enriched) latest.set(m.key, m.value);
  const docs = [...latest.values()].filter((v): v is string => v !== null).map((v) => JSON.parse(v) as Record<string, unknown> & { language: string; caption: string | null; board_titles: unknown[]; engaged_queries: unknown[]; language_source: string });
  const tombstones = [...latest.values()].filter((v) => v === null).length;
  const deadLetters: Record<string, Record<string, number>> = {};
  for (const topic of [t.pinEvents, t.engagement, t.captions]) {
    for (const m of await readAll(kafka, dlqTopic(topic))) {
      const code = (JSON.parse(m.value ?? '{}') as { error_code?: string }).error_code ?? 'unknown';
      (deadLetters[topic.slice(config.topicPrefix.length)] ??= {})[code] = ((deadLetters[topic.slice(config.topicPrefix.length)] ?? {})[code] ?? 0) + 1;
    }
  }
  const pairs = await readAll(kafka, t.pairs);
  const languages: Record<string, number> = {};
  for (const d of docs) languages[d.language] = (languages[d.language] ?? 0) + 1;
  const cap = stats.caption!;
  const summary = {
    run,
    model: modelServer ? 'stand-in (pinrich model server)' : config.vlmBaseUrl,
    pins: f.pins,
    pin_records_published: sample.pinEvents.length,
    engagement_records_published: sample.engagement.length,
    enriched_documents: docs.length,
    enriched_versions_published: enriched.filter((m) => m.value !== null).length,
    tombstones,
    captions: { ok: cap.ok, failed: cap.failed, failed_by_code: cap.failedByCode, cache_hits: cap.cacheHits },
    model_requests: modelServer ? modelServer.count({ kind: 'caption' }) : cap.modelCalls,
    engagement: { counted: stats.enrich!.engagementEvents, duplicates_ignored: stats.enrich!.duplicateEngagements, for_deleted_pins: stats.enrich!.ignoredEngagements },
    dead_letters: deadLetters,
    pairs_mined: pairs.length,
    languages,
    languages_detected: docs.filter((d) => d.language_source === 'detected').length,
    seconds: Math.round((Date.now() - t0) / 100) / 10,
  };
  await modelServer?.close();

  out('');
  out('summary');
  out(JSON.stringify(summary, null, 2));
  out('');
  const examples = pickExamples(docs);
  out(`three example enriched documents (of ${docs.length}):`);
  for (const d of examples) out(JSON.stringify(d, null, 2));
  if (opts.summaryFile) {
    writeFileSync(opts.summaryFile, JSON.stringify(summary, null, 2) + '\n');
    out(`summary written to ${opts.summaryFile}`);
  }
  return summary;
}

/** Three documents in different languages with a caption, boards and queries, if possible. */
function pickExamples<T extends { language: string; caption: string | null; board_titles: unknown[]; engaged_queries: unknown[] }>(docs: T[]): T[] {
  const rich = docs.filter((d) => d.caption && d.board_titles.length && d.engaged_queries.length);
  const out: T[] = [];
  for (const d of rich) {
    if (out.length < 3 && !out.some((o) => o.language === d.language)) out.push(d);
  }
  for (const d of docs) if (out.length < 3 && !out.includes(d)) out.push(d);
  return out;
}

/** Every record of a topic, from the beginning to the current end. */
async function readAll(kafka: Kafka, topic: string): Promise<Array<{ key: string; value: string | null }>> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const remaining = new Map(ends.filter((e) => BigInt(e.high) > BigInt(e.low)).map((e) => [e.partition, BigInt(e.high)]));
  const out: Array<{ key: string; value: string | null }> = [];
  if (remaining.size === 0) return out;
  const consumer = kafka.consumer({ groupId: `demo-reader-${randomUUID()}`, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve) => {
    void consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) out.push({ key: m.key?.toString() ?? '', value: m.value?.toString() ?? null });
        const last = BigInt(batch.lastOffset()) + 1n;
        if (last >= (remaining.get(batch.partition) ?? 0n)) remaining.delete(batch.partition);
        if (remaining.size === 0) resolve();
      },
    });
  });
  await consumer.disconnect();
  return out;
}
