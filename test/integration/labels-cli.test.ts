/**
 * `pinrich labels sync|query|eval|export` on the real stack: labels go through Kafka and the
 * dump worker to s3rver, then the commands run on the synced local cache.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createKafka, createPublisher } from '../../src/adapters/kafka/client.js';
import { createRedisFromConfig } from '../../src/adapters/redis/client.js';
import { redisKeys } from '../../src/adapters/redis/keys.js';
import { loadConfig, type Config } from '../../src/config.js';
import { runLabelsCommand } from '../../src/labels/command.js';
import { systemClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { startWorker } from '../../src/runtime/worker.js';
import { createDumpStageFromConfig, dumpWorkerOptions } from '../../src/stages/dump/wire.js';
import { stackEnv } from '../../src/stack/index.js';
import { produce, setupTopics, stack, testConfig, waitFor } from '../support/harness.js';
import { makeLabel, readAllDumpObjects, useStackS3Credentials } from '../support/labels.js';

// Teacher labels of the metrics fixture (test/unit/label-metrics.test.ts): human [1,2,3,4,5]
// against teacher [1,3,3,5,4]; the first three pairs are English, the last two German.
const LABELS = [
  makeLabel({ pin_id: 'pin-1', query: 'red shoes', label: 1, language: 'en', distribution: [0.7, 0.2, 0.05, 0.03, 0.02] }),
  makeLabel({ pin_id: 'pin-2', query: 'blue shoes', label: 3, language: 'en', distribution: null }),
  makeLabel({ pin_id: 'pin-3', query: 'green shoes', label: 3, language: 'en', distribution: [0.1, 0.2, 0.4, 0.2, 0.1] }),
  makeLabel({ pin_id: 'pin-4', query: 'rote schuhe', label: 5, language: 'de', distribution: [0, 0.05, 0.05, 0.2, 0.7] }),
  makeLabel({ pin_id: 'pin-5', query: 'blaue schuhe', label: 4, language: 'de', distribution: [0.02, 0.03, 0.1, 0.6, 0.25] }),
];

describe.skipIf(!inject('stack'))('pinrich labels', () => {
  let config: Config;
  let dir: string;
  let stop: () => Promise<void> = async () => {};
  const run = async (...argv: string[]) => {
    let text = '';
    const code = await runLabelsCommand(argv, config, (s) => (text += s));
    return { code, text };
  };

  beforeAll(async () => {
    useStackS3Credentials(stack());
    dir = await mkdtemp(join(tmpdir(), 'pinrich-labels-test-'));
    config = testConfig({ PINRICH_LABELS_CACHE: join(dir, 'cache'), PINRICH_DUMP_FLUSH_AGE_MS: '200', PINRICH_TOPIC_PARTITIONS: '1' });
    const t = await setupTopics(config);
    await produce(config, t.labels, LABELS.map((l) => ({ key: l.pin_id, value: l })));
    const kafka = createKafka(config, silentLogger);
    const publisher = await createPublisher(kafka);
    const stage = await createDumpStageFromConfig(config, silentLogger, systemClock);
    const worker = await startWorker({ ...dumpWorkerOptions(config), kafka, stage, publisher, log: silentLogger, clock: systemClock });
    stop = async () => (await worker.stop(), await publisher.close());
    await waitFor('all labels dumped', async () => (await readAllDumpObjects(config)).reduce((n, o) => n + o.rows.length, 0) === LABELS.length);
    await stop();
  });
  afterAll(async () => {
    await stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('sync copies new objects, and a second sync copies none', async () => {
    const objects = (await readAllDumpObjects(config)).length;
    const first = await run('sync');
    expect(first.code).toBe(0);
    expect(first.text).toContain(`${objects} objects, ${objects} copied`);
    const second = await run('sync');
    expect(second.code).toBe(0);
    expect(second.text).toContain(`${objects} objects, 0 copied`);
    expect(second.text).toContain(`${objects} already cached`);
  });

  it('query returns the expected aggregate as JSON, CSV and a table', async () => {
    const sql = 'SELECT language, count(*) AS n, sum(label) AS s, round(avg(expected_score), 3) AS e FROM labels GROUP BY language ORDER BY language';
    const json = await run('query', sql, '--format', 'json');
    expect(json.code).toBe(0);
    // de: labels 5 + 4; expected scores 4.55 and 4.03 -> mean 4.29.
    // en: labels 1 + 3 + 3; expected scores 1.47, 3 (hard only: = label), 3.0 -> mean 2.49.
    expect(JSON.parse(json.text)).toEqual([
      { language: 'de', n: 2, s: 9, e: 4.29 },
      { language: 'en', n: 3, s: 7, e: 2.49 },
    ]);
    const csv = await run('query', sql, '--format', 'csv');
    expect(csv.text).toBe('language,n,s,e\nde,2,9,4.29\nen,3,7,2.49\n');
    const table = await run('query', 'SELECT count(*) AS rows, count(DISTINCT dt) AS days FROM labels');
    expect(table.text).toMatch(/rows \| days\n-+-\+-+\n\s+5 \|\s+1\n\(1 row\)/);
    const bad = await run('query', 'SELECT nope FROM labels');
    expect(bad.code).toBe(1);
  });

  it('eval reports the hand-computed agreement, overall and per language', async () => {
    const golden = join(dir, 'golden.csv');
    // Grades on a 0-4 scale mapped to 1..5 -> human [1,2,3,4,5]; one pair the teacher never saw.
    await writeFile(
      golden,
      'pair_id,grade\n' + LABELS.map((l, i) => `${l.pair_id},${i}`).join('\n') + '\n' + 'ffffffffffffffffffffffffffffffff,2\n',
    );
    const r = await run('eval', '--golden', golden, '--map', '0:1,1:2,2:3,3:4,4:5', '--format', 'json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.text);
    expect(report).toMatchObject({ goldenRows: 6, matched: 5, unmatched: 1, invalid: 0 });
    expect(report.overall.exact).toBeCloseTo(0.4, 12);
    expect(report.overall.withinOne).toBe(1);
    expect(report.overall.kappa).toBeCloseTo(16 / 19, 12); // see test/unit/label-metrics.test.ts
    expect(report.overall.spearman).toBeCloseTo(8.5 / Math.sqrt(95), 12);
    expect(report.confusion[1]).toEqual([0, 0, 1, 0, 0]);
    // en: h [1,2,3], t [1,3,3] -> exact 2/3; ranks t [1,2.5,2.5]: sxy 1.5, sxx 2, syy 1.5 -> rho 1.5/sqrt(3)
    expect(report.byLanguage.en.exact).toBeCloseTo(2 / 3, 12);
    expect(report.byLanguage.en.spearman).toBeCloseTo(1.5 / Math.sqrt(3), 12);
    // de: h [4,5], t [5,4] -> exact 0, rho -1
    expect(report.byLanguage.de).toMatchObject({ n: 2, exact: 0, withinOne: 1 });
    expect(report.byLanguage.de.spearman).toBeCloseTo(-1, 12);

    // JSONL keyed by query + pin_id, 0-3 scale mapped linearly: 0,1,2,3 -> 1,2,4,5 vs teacher 1,3,3,5.
    const jsonl = join(dir, 'golden.jsonl');
    await writeFile(jsonl, LABELS.slice(0, 4).map((l, i) => JSON.stringify({ query: ` ${l.query.toUpperCase()} `, pin_id: l.pin_id, rating: i })).join('\n'));
    const text = await run('eval', '--golden', jsonl, '--scale', '0-3');
    expect(text.code).toBe(0);
    expect(text.text).toMatch(/matched: 4/);
    expect(text.text).toMatch(/exact accuracy\s+0\.500/);
  });

  it('export --distill writes a readable Parquet training set with soft labels and pin text from Redis', async () => {
    const redis = createRedisFromConfig(config);
    const doc = (pin: string, hash: string) => JSON.stringify({ pin_id: pin, version: 3, pin_text: `text of ${pin}`, content_hash: hash });
    await redis.set(redisKeys(config.redisKeyPrefix).document('pin-1'), doc('pin-1', 'dh1')); // the document the teacher saw
    await redis.set(redisKeys(config.redisKeyPrefix).document('pin-4'), doc('pin-4', 'newer')); // changed since
    redis.disconnect();

    const out = join(dir, 'distill.parquet');
    const r = await run('export', '--distill', out);
    expect(r.code).toBe(0);
    expect(r.text).toContain('wrote 5 rows');
    expect(r.text).toContain('2 of 5 rows from the enriched documents in Redis');
    const buf = await readFile(out);
    const rows = (await parquetReadObjects({ file: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer, compressors })) as Array<Record<string, unknown>>;
    const byPin = new Map(rows.map((row) => [row.pin_id as string, row]));
    expect(rows).toHaveLength(5);
    for (const l of LABELS) {
      const row = byPin.get(l.pin_id)!;
      const soft = l.distribution ?? [1, 2, 3, 4, 5].map((k) => (k === l.label ? 1 : 0)); // hard-only: one-hot
      expect([row.p1, row.p2, row.p3, row.p4, row.p5]).toEqual(soft);
      expect(row).toMatchObject({ query: l.query, hard_label: l.label, teacher_model: 'teacher-x', prompt_version: 'v3', doc_version: 1, doc_hash: 'dh1', label_source: l.label_source });
      expect(new Date(row.labeled_at as Date).toISOString()).toBe(l.labeled_at);
    }
    expect(byPin.get('pin-1')).toMatchObject({ pin_text: 'text of pin-1', pin_text_matches_label: true, pin_doc_version: 3 });
    expect(byPin.get('pin-4')).toMatchObject({ pin_text: 'text of pin-4', pin_text_matches_label: false });
    expect(byPin.get('pin-2')).toMatchObject({ pin_text: null, pin_text_matches_label: null });

    // Redis unreachable: the export still works, pin_text is NULL, and it says so.
    const saved = config;
    config = loadConfig({ ...stackEnv(stack()), PINRICH_S3_PREFIX: config.s3Prefix, PINRICH_LABELS_CACHE: config.labelsCache, PINRICH_REDIS_URL: 'redis://127.0.0.1:1' });
    try {
      const r2 = await run('export', '--distill', join(dir, 'distill-no-redis.parquet'));
      expect(r2.code).toBe(0);
      expect(r2.text).toContain('Redis is unreachable; pin_text is NULL in every row');
    } finally {
      config = saved;
    }
  });
});
