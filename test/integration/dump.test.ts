/**
 * The dump worker on the real stack: Kafka (relevance.labels) -> Parquet objects on s3rver,
 * read back with hyparquet (no DuckDB), including a worker SIGKILLed mid-stream.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createKafka, createPublisher } from '../../src/adapters/kafka/client.js';
import { createS3 } from '../../src/adapters/s3/client.js';
import { dlqTopic, loadConfig, type Config } from '../../src/config.js';
import { systemClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { startWorker, type Worker } from '../../src/runtime/worker.js';
import { parseDumpObjectName } from '../../src/stages/dump/stage.js';
import { createDumpStageFromConfig, dumpWorkerOptions } from '../../src/stages/dump/wire.js';
import { stackEnv } from '../../src/stack/index.js';
import { produce, readToEnd, readUntil, setupTopics, stack, waitFor } from '../support/harness.js';
import { makeLabel, readAllDumpObjects, useStackS3Credentials, type DumpObject } from '../support/labels.js';

const FIXTURE = fileURLToPath(new URL('./dump-worker.fixture.ts', import.meta.url));

/** Env (for a child worker) and the same config for this process; fresh prefixes. */
function dumpEnv(over: Record<string, string>): { env: Record<string, string>; config: Config } {
  const id = randomUUID().slice(0, 8);
  const env = {
    ...stackEnv(stack()),
    PINRICH_TOPIC_PREFIX: `t-${id}.`,
    PINRICH_REDIS_PREFIX: `t-${id}:`,
    PINRICH_GROUP_PREFIX: `t-${id}`,
    PINRICH_S3_PREFIX: `t-${id}/`,
    PINRICH_TOPIC_PARTITIONS: '2',
    PINRICH_LOG_LEVEL: 'warn',
    ...over,
  };
  return { env, config: loadConfig(env) };
}

const running: Array<{ stop(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.allSettled(running.splice(0).map((r) => r.stop()));
});

async function startInProcess(config: Config): Promise<Worker> {
  const kafka = createKafka(config, silentLogger);
  const publisher = await createPublisher(kafka);
  const stage = await createDumpStageFromConfig(config, silentLogger, systemClock);
  const worker = await startWorker({ ...dumpWorkerOptions(config), kafka, stage, publisher, log: silentLogger, clock: systemClock });
  running.push({ stop: async () => (await worker.stop(), await publisher.close()) });
  await worker.started;
  return worker;
}

/** A dump worker in a child process; `writes` counts its "dump object written" log lines. */
function startChild(env: Record<string, string>) {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: { ...process.env, ...env, PINRICH_LOG_LEVEL: 'info' },
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const state = { writes: [] as Array<{ key: string; sealed: boolean }>, stderr: '' };
  let pending = '';
  child.stderr!.on('data', (d: Buffer) => {
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      state.stderr += line + '\n';
      if (line.includes('"dump object written"')) {
        const j = JSON.parse(line) as { key: string; sealed: boolean };
        state.writes.push({ key: j.key, sealed: j.sealed });
      }
    }
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  running.push({ stop: async () => (child.kill('SIGKILL'), await exited) });
  return { child, state, exited };
}

/** (partition, offset) of every row of every object, and the row count. */
function rowIndex(objects: DumpObject[]) {
  const ids = objects.flatMap((o) => o.rows.map((r) => `${String(r.kafka_partition)}:${String(r.kafka_offset)}`));
  return { total: ids.length, unique: new Set(ids).size };
}

describe.skipIf(!inject('stack'))('dump worker', () => {
  beforeAll(() => useStackS3Credentials(stack()));
  it(
    'after a SIGKILL mid-stream and a restart, every label is in exactly one object',
    async () => {
      const FLUSH = 25;
      const { env, config } = dumpEnv({ PINRICH_DUMP_FLUSH_ROWS: String(FLUSH), PINRICH_DUMP_FLUSH_AGE_MS: '300' });
      const t = await setupTopics(config);
      const label = (i: number) => makeLabel({ pin_id: `pin-${i % 17}`, query: `query number ${i}`, labeled_at: `2026-11-28T${String(8 + Math.floor(i / 60)).padStart(2, '0')}:00:00.000Z` });

      // Phase 1: 110 labels and 2 records that are not labels.
      await produce(config, t.labels, [
        ...Array.from({ length: 60 }, (_, i) => ({ key: `pin-${i % 17}`, value: label(i) })),
        { key: 'pin-1', value: '{"not": "a label"' },
        ...Array.from({ length: 50 }, (_, i) => ({ key: `pin-${(60 + i) % 17}`, value: label(60 + i) })),
        { key: 'pin-2', value: { schema: 'label', schema_version: 99 } },
      ]);
      const a = startChild(env);
      // Wait until the tail of phase 1 was age-flushed as a partial (uncommitted) version ...
      await waitFor('a partial object from the first worker', async () => a.state.writes.some((w) => !w.sealed), 60_000).catch((err) => {
        throw new Error(`${(err as Error).message}\n${a.state.stderr.slice(-3_000)}`);
      });
      // ... then produce more and kill it right after its next write: mid-stream, offsets uncommitted.
      const before = a.state.writes.length;
      await produce(config, t.labels, Array.from({ length: 110 }, (_, i) => ({ key: `pin-${(110 + i) % 17}`, value: label(110 + i) })));
      await waitFor('a write after phase 2', async () => a.state.writes.length > before, 60_000);
      a.child.kill('SIGKILL');
      await a.exited;

      const afterKill = await readAllDumpObjects(config);
      const killed = rowIndex(afterKill);
      expect(killed.unique).toBeLessThan(220); // it really died mid-stream

      // Restart (in this process) and let it catch up.
      await startInProcess(config);
      let objects: DumpObject[] = [];
      await waitFor(
        'every label exactly once',
        async () => {
          objects = await readAllDumpObjects(config);
          const { total, unique } = rowIndex(objects);
          return total === 220 && unique === 220;
        },
        120_000,
        500,
      ).catch(() => undefined);
      const { total, unique } = rowIndex(objects);
      expect({ total, unique }).toEqual({ total: 220, unique: 220 });

      // Every object lies inside one aligned block, named by its partition and first-last offsets.
      for (const o of objects) {
        const name = parseDumpObjectName(o.key.slice(o.key.lastIndexOf('/') + 1))!;
        expect(name.topic).toBe(t.labels);
        expect(o.key.startsWith(`${config.s3Prefix}labels/dt=2026-11-28/hour=`)).toBe(true);
        const offsets = o.rows.map((r) => BigInt(r.kafka_offset as bigint));
        expect(offsets.every((x) => x >= name.first && x <= name.last)).toBe(true);
        expect(new Set(offsets.map((x) => x / BigInt(FLUSH))).size).toBe(1);
        expect(o.rows.every((r) => r.kafka_partition === name.partition)).toBe(true);
      }
      // The input was exactly what was produced: 222 records, none written twice by a retry.
      expect((await readToEnd(config, t.labels)).length).toBe(222);
      // The produced labels, each once (pair ids are unique per label here).
      expect(new Set(objects.flatMap((o) => o.rows.map((r) => r.query))).size).toBe(220);

      // The two bad records went to the dead-letter topic (possibly more than once: at-least-once).
      const dead = await readUntil(config, dlqTopic(t.labels), (rs) => new Set(rs.map((r) => r.value && JSON.parse(r.value).source.offset)).size >= 2, 30_000);
      const codes = new Set(dead.map((r) => JSON.parse(r.value!).error_code));
      expect(codes).toEqual(new Set(['malformed_json', 'unknown_schema_version']));
    },
    300_000,
  );

  it('writes zstd Parquet whose values an independent reader (hyparquet) reads back exactly', async () => {
    const { config } = dumpEnv({ PINRICH_DUMP_FLUSH_ROWS: '1000', PINRICH_DUMP_FLUSH_AGE_MS: '200', PINRICH_TOPIC_PARTITIONS: '1' });
    const t = await setupTopics(config);
    const labels = [
      makeLabel({ pin_id: 'pin-a', query: 'red shoes', label: 4, distribution: [0.01, 0.04, 0.15, 0.5, 0.3] }),
      makeLabel({ pin_id: 'pin-b', query: 'café au lait ☕ 東京', language: 'fr', label: 2, distribution: null, labeled_at: '2026-11-28T23:59:59.123Z' }),
      makeLabel({ pin_id: 'pin-c', query: 'kitchen "ideas", with comma', label: 1, distribution: [0.9, 0.05, 0.03, 0.01, 0.01], doc_version: 7, doc_hash: 'abc' }),
    ];
    await produce(config, t.labels, labels.map((l) => ({ key: l.pin_id, value: l })));
    await startInProcess(config);
    const objects = await waitFor('one object with 3 rows', async () => {
      const os = await readAllDumpObjects(config);
      return os.length === 1 && os[0]!.rows.length === 3 ? os : undefined;
    });
    const [obj] = objects;
    expect(obj!.key).toBe(`${config.s3Prefix}labels/dt=2026-11-28/hour=10/${t.labels}-p0-0-2.parquet`);

    // The file really is zstd-compressed Parquet.
    const got = await createS3(config).get(obj!.key);
    const { parquetMetadata } = await import('hyparquet');
    const meta = parquetMetadata(got!.body.buffer.slice(got!.body.byteOffset, got!.body.byteOffset + got!.body.byteLength) as ArrayBuffer);
    expect(new Set(meta.row_groups.flatMap((g) => g.columns.map((c) => c.meta_data?.codec)))).toEqual(new Set(['ZSTD']));

    const rows = obj!.rows;
    labels.forEach((l, i) => {
      const r = rows[i]!;
      expect(r).toMatchObject({
        pair_id: l.pair_id,
        pin_id: l.pin_id,
        query: l.query,
        language: l.language,
        label: l.label,
        p1: l.distribution?.[0] ?? null,
        p2: l.distribution?.[1] ?? null,
        p3: l.distribution?.[2] ?? null,
        p4: l.distribution?.[3] ?? null,
        p5: l.distribution?.[4] ?? null,
        expected_score: l.expected_score,
        label_source: l.label_source,
        teacher_model: 'teacher-x',
        prompt_version: 'v3',
        prompt_hash: 'ph1',
        doc_version: l.doc_version,
        doc_hash: l.doc_hash,
        prompt_tokens: 120,
        completion_tokens: 1,
        cached_prompt_tokens: 64,
        latency_ms: 12.5,
        kafka_topic: t.labels,
        kafka_partition: 0,
        kafka_offset: BigInt(i),
      });
      expect(new Date(r.labeled_at as Date).toISOString()).toBe(l.labeled_at);
    });
  });
});
