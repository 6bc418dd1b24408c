/**
 * `pinrich demo`: the main job end to end on the local embedded stack.
 *
 * Starts (or reuses) the local stack, creates a fresh set of topics (and S3 prefix and Redis
 * prefix) for this run, starts the project's own OpenAI-compatible server as the model
 * stand-in (unless PINRICH_VLM_BASE_URL / PINRICH_TEACHER_BASE_URL point at real models),
 * publishes a generated sample, and runs the whole loop with every worker in this process:
 *
 *   1. caption + enrich: enriched documents on pins.enriched; pairs mined from search engagement;
 *   2. sampled negatives (a query of another pin) added to relevance.pairs;
 *   3. score: teacher labels on relevance.labels;  dump: Parquet on S3;
 *   4. labels sync + a closing SQL query over the dumps (labels by level and language).
 *
 * Shows progress and ends with a summary (optionally as JSON) and three example documents.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Kafka, logLevel } from 'kafkajs';
import { createProducer } from '../adapters/kafka/client.js';
import { startApp } from '../app.js';
import { createTopics } from '../adapters/kafka/admin.js';
import { dlqTopic, loadConfig, topics as topicNames, type Config } from '../config.js';
import { redisKeys } from '../adapters/redis/keys.js';
import { createLogger } from '../runtime/log.js';
import { startModelServer, type ModelServer } from '../model-server/server.js';
import { stackEnv, stackUp } from '../stack/index.js';
import { LLAMA_CPP_VERSION, startLlamaServer, type LlamaServer } from '../stack/llama.js';
import { generateSample } from './sample.js';
import type { EnrichedDocument } from '../../schemas/enriched-document.js';
import type { Pair } from '../../schemas/pair.js';
import { pairIdOf } from '../core/document.js';
import { foldText } from '../core/text.js';
import { runLabelsCommand } from '../labels/command.js';
import { currentVersions } from '../labels/query.js';
import { cachePaths, listParquetFiles } from '../labels/sync.js';

export interface DemoOptions {
  pins: number;
  events: number;
  summaryFile?: string;
  /**
   * `llama`: the teacher is a real model — SmolLM2-135M-Instruct on llama.cpp's llama-server,
   * built and cached on first use (src/stack/llama.ts) — instead of the stand-in.
   */
  teacher?: string | undefined;
  /**
   * Write a graded relevance set for the run's pairs to this CSV (pair_id, pin_id, query,
   * grade): grade 5 for a query mined from the pin's own search engagement (the sample draws
   * those from the pin's topic), 1 for a sampled negative (a query of a pin in another
   * language); then print `pinrich labels eval` of the teacher's labels against it.
   */
  goldenFile?: string | undefined;
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
  let llama: LlamaServer | undefined;
  if (opts.teacher !== undefined && opts.teacher !== 'llama') throw new Error(`--teacher takes "llama" (got ${JSON.stringify(opts.teacher)})`);
  if (opts.teacher === 'llama') {
    out('  teacher: starting llama-server with SmolLM2-135M-Instruct (built and cached on first use; see src/stack/llama.ts)');
    llama = await startLlamaServer({ parallel: 4, log: (l) => out(`  ${l}`) });
    env.PINRICH_TEACHER_BASE_URL = llama.baseUrl;
    env.PINRICH_TEACHER_MODEL = llama.model;
    // Four slots: more requests in flight would only queue in the server past their timeout.
    env.PINRICH_TEACHER_CONCURRENCY ??= '4';
    env.PINRICH_MODEL_TIMEOUT_MS ??= '120000';
  }
  if (!env.PINRICH_VLM_BASE_URL || !env.PINRICH_TEACHER_BASE_URL) {
    modelServer = await startModelServer();
  }
  for (const [role, key, what] of [
    ['VLM', 'PINRICH_VLM', 'captions'],
    ['teacher', 'PINRICH_TEACHER', 'relevance labels'],
  ] as const) {
    if (!env[`${key}_BASE_URL`]) {
      env[`${key}_BASE_URL`] = modelServer!.baseUrl;
      out(`  ${role}: STAND-IN — pinrich's own OpenAI-compatible test server at ${modelServer!.baseUrl} writes the ${what}.`);
      out(`         Set ${key}_BASE_URL (and ${key}_MODEL, ${key}_API_KEY) to use a real ${role}.`);
    } else {
      out(`  ${role}: ${env[`${key}_BASE_URL`]} (${env[`${key}_MODEL`] ?? 'default model'})`);
    }
  }
  env.PINRICH_ENRICH_MINE_PAIRS ??= 'true';
  env.PINRICH_S3_PREFIX = `${env.PINRICH_S3_PREFIX ?? ''}${run}/`;
  // The demo is small: flush dumps after 2 s instead of waiting for 50,000 rows or a minute.
  env.PINRICH_DUMP_FLUSH_AGE_MS ??= '2000';
  env.PINRICH_SCORE_DOC_RETRY_MS ??= '500';
  const config: Config = loadConfig(env);
  const t = topicNames(config);
  const kafka = new Kafka({ clientId: 'pinrich-demo', brokers: [...config.kafkaBrokers], logLevel: logLevel.NOTHING });
  const created = await createTopics(kafka, config);
  out(`  topics: ${created.length} created with prefix "${config.topicPrefix}" (${config.topicPartitions} partitions each)`);

  const sample = generateSample({ pins: opts.pins, events: opts.events });
  const f = sample.facts;
  out(`  sample: ${f.pins} pins in ${f.languages.length} languages, ${f.repinnedImages} re-pinned images, ${f.hostileImageUrls} hostile image URLs,`);
  out(`          ${f.engagementEvents} engagement events (+${f.duplicateEngagement} redelivered duplicates), ${f.deletedPins} deletes, ${f.malformedPinRecords + f.malformedEngagementRecords} malformed records`);

  const producer = createProducer(kafka);
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
  const app = await startApp(config, ['caption', 'enrich', 'score', 'dump'], log);
  const expectedEnrichInputs = () => sample.pinEvents.length + sample.engagement.length + (app.workers.caption?.stats().outputs ?? 0);
  const progress = setInterval(() => {
    const c = app.workers.caption!.stats();
    const e = app.workers.enrich!.stats();
    const st = app.stats();
    out(
      `  … caption ${c.records}/${sample.pinEvents.length} events → ${c.outputs} captions | enrich ${e.records}/${expectedEnrichInputs()} records, ` +
        `${st.enrich?.documents ?? 0} documents, ${st.enrich?.pairs ?? 0} pairs | score ${st.score?.labels ?? 0} labels | dump ${st.dump?.rows ?? 0} rows`,
    );
  }, 2_000);
  // A real teacher on two shared cores labels a few pairs a second: give it longer.
  const deadline = Date.now() + (llama ? 40 : 10) * 60_000;
  try {
    // Done when the caption worker consumed every pin record, the enrich worker every input
    // record (including every caption), and no pin is left waiting in a coalescing window.
    for (;;) {
      const c = app.workers.caption!.stats();
      const e = app.workers.enrich!.stats();
      if (c.records >= sample.pinEvents.length && e.records >= expectedEnrichInputs()) {
        const dirty = await Promise.all([...Array(config.topicPartitions).keys()].map((p) => app.redis.zcard(redisKeys(config.redisKeyPrefix).enrich.dirty(p))));
        if (dirty.every((n) => n === 0)) break;
      }
      if (Date.now() > deadline) throw new Error(`demo did not finish within ${llama ? 40 : 10} minutes`);
      await new Promise((r) => setTimeout(r, 250));
    }
    out(`  enrichment done: ${app.stats().enrich?.documents ?? 0} document versions, ${app.stats().enrich?.pairs ?? 0} pairs mined`);
    // Sampled negatives: each pin paired with a query engaged on a pin of another language.
    const docsSoFar = [...latestValues(await readAll(kafka, t.enriched)).values()].filter((v): v is string => v !== null).map((v) => JSON.parse(v) as EnrichedDocument);
    const negatives = sampleNegatives(docsSoFar, Math.ceil(docsSoFar.length / 3), new Date().toISOString());
    const producer2 = createProducer(kafka);
    await producer2.connect();
    await producer2.send({ topic: t.pairs, acks: -1, messages: negatives.map((p) => ({ key: p.pin_id, value: JSON.stringify(p) })) });
    await producer2.disconnect();
    out(`  published ${negatives.length} sampled negative pairs`);

    // Scoring is done when the score worker consumed every pair; dumping when S3 holds one row per label.
    // Counted as records, not offsets: the mined pairs are written in the enrich worker's
    // transactions, whose commit markers take offsets too.
    const pairTotal = (await readAll(kafka, t.pairs)).length;
    await waitUntil(deadline, async () => (app.workers.score!.stats().records >= pairTotal ? true : undefined));
    const labelTotal = (await readAll(kafka, t.labels)).length;
    out(`  scored ${pairTotal} pairs → ${labelTotal} labels; waiting for the dump worker to write them to S3`);
    await waitUntil(deadline, async () => ((app.stats().dump?.rows ?? 0) >= labelTotal ? true : undefined));
    await waitUntil(deadline, async () => ((await countDumpedRows(config)) === labelTotal ? true : undefined), 1_000);
  } finally {
    clearInterval(progress);
  }
  const stats = app.stats();
  await app.stop();

  // Read the results back from Kafka, as a downstream indexer would.
  const enriched = await readAll(kafka, t.enriched);
  const latest = latestValues(enriched);
  const docs = [...latest.values()].filter((v): v is string => v !== null).map((v) => JSON.parse(v) as Record<string, unknown> & { language: string; caption: string | null; board_titles: unknown[]; engaged_queries: unknown[]; language_source: string });
  const tombstones = [...latest.values()].filter((v) => v === null).length;
  const deadLetters: Record<string, Record<string, number>> = {};
  for (const topic of [t.pinEvents, t.engagement, t.captions, t.pairs, t.labels]) {
    for (const m of await readAll(kafka, dlqTopic(topic))) {
      const code = (JSON.parse(m.value ?? '{}') as { error_code?: string }).error_code ?? 'unknown';
      (deadLetters[topic.slice(config.topicPrefix.length)] ??= {})[code] = ((deadLetters[topic.slice(config.topicPrefix.length)] ?? {})[code] ?? 0) + 1;
    }
  }
  const pairs = (await readAll(kafka, t.pairs)).map((m) => JSON.parse(m.value ?? '{}') as { source?: string });
  const labels = (await readAll(kafka, t.labels)).map((m) => JSON.parse(m.value ?? '{}') as { pair_id: string; label: number; label_source: string; distribution: number[] | null; usage: { prompt_tokens: number; completion_tokens: number; cached_prompt_tokens: number } });
  const dumped = await dumpObjects(config);
  const languages: Record<string, number> = {};
  for (const d of docs) languages[d.language] = (languages[d.language] ?? 0) + 1;
  const cap = stats.caption!;
  const summary = {
    run,
    models: {
      vlm: config.vlmBaseUrl === modelServer?.baseUrl ? 'stand-in (pinrich model server)' : `${config.vlmModel} at ${config.vlmBaseUrl}`,
      teacher: llama
        ? `${config.teacherModel} on llama.cpp llama-server ${LLAMA_CPP_VERSION} at ${config.teacherBaseUrl} (a real model; PINRICH_TEACHER_API=${config.teacherApi})`
        : config.teacherBaseUrl === modelServer?.baseUrl
          ? 'stand-in (pinrich model server)'
          : `${config.teacherModel} at ${config.teacherBaseUrl}`,
    },
    pins: f.pins,
    pin_records_published: sample.pinEvents.length,
    engagement_records_published: sample.engagement.length,
    enriched_documents: docs.length,
    enriched_versions_published: enriched.filter((m) => m.value !== null).length,
    tombstones,
    captions: { ok: cap.ok, failed: cap.failed, failed_by_code: cap.failedByCode, cache_hits: cap.cacheHits },
    model_requests: modelServer ? modelServer.count() : cap.modelCalls + stats.score!.modelCalls,
    engagement: { counted: stats.enrich!.engagementEvents, duplicates_ignored: stats.enrich!.duplicateEngagements, for_deleted_pins: stats.enrich!.ignoredEngagements },
    dead_letters: deadLetters,
    pairs: {
      total: pairs.length,
      mined_from_search: pairs.filter((p) => p.source === 'search_engagement').length,
      sampled_negatives: pairs.filter((p) => p.source === 'sampled_negative').length,
    },
    labels: {
      total: labels.length,
      by_level: Object.fromEntries([1, 2, 3, 4, 5].map((l) => [l, labels.filter((x) => x.label === l).length])),
      // Share of the scored pairs that got a label (the rest are dead-lettered with a reason).
      labelled_percent: pairs.length > 0 ? Math.round((10_000 * new Set(labels.map((x) => x.pair_id)).size) / pairs.length) / 100 : null,
      soft_labels: labels.filter((x) => x.distribution !== null).length,
      by_source: Object.fromEntries([...new Set(labels.map((x) => x.label_source))].sort().map((s) => [s, labels.filter((x) => x.label_source === s).length])),
      teacher_model_calls: stats.score!.modelCalls,
      label_cache_hits: stats.score!.cacheHits,
    },
    dump: { objects: dumped.objects, rows: dumped.rows, bucket: config.s3Bucket, prefix: `${config.s3Prefix}labels/` },
    tokens: {
      caption_model_requests: modelServer ? modelServer.count({ kind: 'caption' }) : cap.modelCalls,
      teacher_model_requests: modelServer ? modelServer.count({ kind: 'teacher' }) : stats.score!.modelCalls,
      teacher_prompt_tokens: stats.score!.promptTokens,
      teacher_cached_prompt_tokens: stats.score!.cachedPromptTokens,
      teacher_completion_tokens: labels.reduce((a, x) => a + (x.usage?.completion_tokens ?? 0), 0),
    },
    languages,
    languages_detected: docs.filter((d) => d.language_source === 'detected').length,
    seconds: Math.round((Date.now() - t0) / 100) / 10,
  };
  await modelServer?.close();
  await llama?.stop();

  out('');
  out('summary');
  out(JSON.stringify(summary, null, 2));
  out('');
  const examples = pickExamples(docs);
  out(`three example enriched documents (of ${docs.length}):`);
  for (const d of examples) out(JSON.stringify(d, null, 2));
  out('');
  const sql = `PIVOT (SELECT language, label FROM labels) ON label IN (1, 2, 3, 4, 5) USING count(*) GROUP BY language ORDER BY language`;
  out(`labels by level (columns) and language, from the Parquet dumps on S3 (pinrich labels query):`);
  out(`  ${sql}`);
  await runLabelsCommand(['query', sql], config, (s) => process.stdout.write(s.endsWith('\n') ? s : s + '\n'));
  if (opts.goldenFile) {
    const allPairs = (await readAll(kafka, t.pairs)).map((m) => JSON.parse(m.value ?? '{}') as Pair);
    const csv = ['pair_id,pin_id,query,grade,source'];
    const quote = (v: string) => `"${v.replace(/"/g, '""')}"`;
    for (const p of allPairs) csv.push([p.pair_id, quote(p.pin_id), quote(p.query), p.source === 'sampled_negative' ? 1 : 5, p.source].join(','));
    writeFileSync(opts.goldenFile, csv.join('\n') + '\n');
    out('');
    out(`graded relevance set of the ${allPairs.length} pairs written to ${opts.goldenFile}; the teacher's labels against it (pinrich labels eval):`);
    await runLabelsCommand(['eval', '--golden', opts.goldenFile], config, (s) => process.stdout.write(s.endsWith('\n') ? s : s + '\n'));
  }
  if (opts.summaryFile) {
    writeFileSync(opts.summaryFile, JSON.stringify(summary, null, 2) + '\n');
    out(`summary written to ${opts.summaryFile}`);
  }
  out('');
  for (const line of exploreLines(config, run, examples[0]?.pin_id as string | undefined, Object.keys(deadLetters))) out(line);
  return summary;
}

/**
 * The closing lines: commands that explore this run's output, each runnable when pasted as
 * printed. The demo's own topic, Redis and S3 prefixes travel on each line as variables; the
 * services come from the local stack, which every pinrich command finds by itself (or from the
 * PINRICH_* service variables of the shell that ran the demo, which the pasted line inherits).
 */
function exploreLines(config: Config, run: string, examplePin: string | undefined, deadLetterTopics: string[]): string[] {
  const q = (v: string) => (/^[\w.,:/@%+=-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`);
  const topics = `PINRICH_TOPIC_PREFIX=${q(config.topicPrefix)}`;
  const dumps = `PINRICH_S3_PREFIX=${q(config.s3Prefix)}`;
  const lines = [
    `explore this run's output (paste any line as printed; the PINRICH_* prefixes select this run, ${run}):`,
    `  ${dumps} npx pinrich labels sync`,
    `  ${dumps} npx pinrich labels query "select language, label, count(*) as n from labels group by all order by all"`,
    `  ${dumps} npx pinrich labels query "select query, pin_id, label, expected_score from labels order by expected_score desc limit 5"`,
    `  ${dumps} PINRICH_REDIS_PREFIX=${q(config.redisKeyPrefix)} npx pinrich labels export --distill ${q(`/tmp/${run}-distill.parquet`)}`,
    ...(examplePin ? [`  ${topics} npx pinrich topics tail pins.enriched --key ${q(examplePin)}`] : []),
    `  ${topics} npx pinrich topics tail pins.enriched --limit 3`,
    `  ${topics} npx pinrich topics tail relevance.labels --limit 3`,
    // Only dead-letter topics that received something: each of these lines prints records.
    ...deadLetterTopics.map((t) => `  ${topics} npx pinrich topics tail ${q(dlqTopic(t))} --limit 3`),
  ];
  return lines;
}

function latestValues(records: Array<{ key: string; value: string | null }>): Map<string, string | null> {
  const latest = new Map<string, string | null>();
  for (const m of records) latest.set(m.key, m.value);
  return latest;
}

/** Pair a third of the pins with a query engaged on a pin of another language: likely irrelevant. */
function sampleNegatives(docs: EnrichedDocument[], n: number, nowIso: string): Pair[] {
  const withQueries = docs.filter((d) => d.engaged_queries.length > 0);
  const out: Pair[] = [];
  for (let i = 0; i < docs.length && out.length < n; i += 3) {
    const doc = docs[i]!;
    const other = withQueries.find((o, j) => o.language !== doc.language && j % 7 === i % 7) ?? withQueries.find((o) => o.language !== doc.language);
    if (!other) continue;
    const query = other.engaged_queries[i % other.engaged_queries.length]!.text;
    if (doc.engaged_queries.some((q) => q.text === query)) continue;
    out.push({ schema: 'pair', schema_version: 1, pair_id: pairIdOf(doc.pin_id, foldText(query)), pin_id: doc.pin_id, query, source: 'sampled_negative', language: doc.language, created_at: nowIso });
  }
  return out;
}

async function waitUntil(deadline: number, check: () => Promise<true | undefined>, everyMs = 250): Promise<void> {
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('demo did not finish in time');
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Rows in the current dump objects of this run (read back through the local label cache). */
async function countDumpedRows(config: Config): Promise<number> {
  const lines: string[] = [];
  const sync = await runLabelsCommand(['sync'], config, () => {});
  if (sync !== 0) return -1;
  const code = await runLabelsCommand(['query', 'select count(*) as n from labels', '--format', 'json'], config, (s) => lines.push(s));
  if (code !== 0) return -1;
  // Before the first object is synced the query also prints a note ahead of its JSON: skip it.
  const text = lines.join('');
  const parsed = JSON.parse(text.slice(text.indexOf('['))) as Array<{ n: number }>;
  return Number(parsed[0]?.n ?? 0);
}

async function dumpObjects(config: Config): Promise<{ objects: number; rows: number }> {
  const files = await listParquetFiles(cachePaths(config).labelsDir);
  return { objects: currentVersions(files).length, rows: await countDumpedRows(config) };
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
    // Done by the fetch position, which kafkajs reports after each batch, also one it hands
    // nothing of: pins.enriched is written in transactions, so its end is a commit marker that
    // eachBatch never sees (counting the records handed to it would wait forever).
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      if (BigInt(payload.lastOffset) + 1n >= (remaining.get(payload.partition) ?? 0n)) remaining.delete(payload.partition);
      if (remaining.size === 0) resolve();
    });
    void consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) out.push({ key: m.key?.toString() ?? '', value: m.value?.toString() ?? null });
      },
    });
  });
  await consumer.disconnect();
  return out;
}
