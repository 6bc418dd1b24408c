/**
 * Label rows -> Parquet bytes (zstd), through an in-memory DuckDB: rows go into a scratch
 * table with an appender, `COPY ... (FORMAT parquet, COMPRESSION zstd)` writes a temp file, and
 * its bytes are returned for upload. The column layout is schemas/parquet-label.ts, in order.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DuckDBInstance, timestampValue, type DuckDBAppender, type DuckDBConnection } from '@duckdb/node-api';
import type { Label } from '../../../schemas/label.js';
import { PARQUET_LABEL_COLUMNS } from '../../../schemas/parquet-label.js';
import type { InRecord } from '../../runtime/stage.js';

type ColumnName = (typeof PARQUET_LABEL_COLUMNS)[number]['name'];
/** One Parquet row: every column of schemas/parquet-label.ts. Timestamps are ms since epoch. */
export type LabelRow = { [K in ColumnName]: string | number | bigint | null };

/** The row for one label record. */
export function labelRow(label: Label, record: Pick<InRecord, 'topic' | 'partition' | 'offset'>): LabelRow {
  const p = label.distribution;
  return {
    pair_id: label.pair_id,
    pin_id: label.pin_id,
    query: label.query,
    language: label.language,
    label: label.label,
    p1: p ? p[0]! : null,
    p2: p ? p[1]! : null,
    p3: p ? p[2]! : null,
    p4: p ? p[3]! : null,
    p5: p ? p[4]! : null,
    expected_score: label.expected_score,
    label_source: label.label_source,
    teacher_model: label.teacher.model,
    prompt_version: label.teacher.prompt_version,
    prompt_hash: label.teacher.prompt_hash,
    doc_version: label.doc_version,
    doc_hash: label.doc_hash,
    prompt_tokens: label.usage.prompt_tokens,
    completion_tokens: label.usage.completion_tokens,
    cached_prompt_tokens: label.usage.cached_prompt_tokens,
    latency_ms: label.latency_ms,
    labeled_at: Date.parse(label.labeled_at),
    kafka_topic: record.topic,
    kafka_partition: record.partition,
    kafka_offset: BigInt(record.offset),
  };
}

export interface ParquetWriter {
  /** The rows as one Parquet file (zstd), in the given order. */
  write(rows: readonly LabelRow[]): Promise<Uint8Array>;
  close(): void;
}

/** The DDL column list of the label layout, e.g. `"pair_id" VARCHAR, ...`. */
export const LABEL_COLUMNS_DDL = PARQUET_LABEL_COLUMNS.map((c) => `"${c.name}" ${c.type}`).join(', ');

export async function createParquetWriter(): Promise<ParquetWriter> {
  const instance = await DuckDBInstance.create(':memory:');
  const conn = await instance.connect();
  const dir = await mkdtemp(join(tmpdir(), 'pinrich-dump-'));
  let seq = 0;
  // One DuckDB connection: writes are serialised (a dump flushes one object at a time per partition anyway).
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };
  return {
    write: (rows) => serial(() => writeRows(conn, rows, join(dir, `part-${++seq}.parquet`), `rows_${seq}`)),
    close() {
      conn.closeSync();
      instance.closeSync();
      void rm(dir, { recursive: true, force: true });
    },
  };
}

async function writeRows(conn: DuckDBConnection, rows: readonly LabelRow[], file: string, table: string): Promise<Uint8Array> {
  await conn.run(`CREATE TABLE ${table} (${LABEL_COLUMNS_DDL})`);
  try {
    const appender = await conn.createAppender(table);
    try {
      for (const row of rows) {
        for (const col of PARQUET_LABEL_COLUMNS) append(appender, col.type, row[col.name]);
        appender.endRow();
      }
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
    await conn.run(`COPY ${table} TO '${file.replace(/'/g, "''")}' (FORMAT parquet, COMPRESSION zstd)`);
    return new Uint8Array(await readFile(file));
  } finally {
    await conn.run(`DROP TABLE IF EXISTS ${table}`);
    await rm(file, { force: true });
  }
}

function append(a: DuckDBAppender, type: string, v: string | number | bigint | null): void {
  if (v === null) return a.appendNull();
  switch (type) {
    case 'VARCHAR':
      return a.appendVarchar(String(v));
    case 'TINYINT':
      return a.appendTinyInt(Number(v));
    case 'INTEGER':
      return a.appendInteger(Number(v));
    case 'BIGINT':
      return a.appendBigInt(BigInt(v));
    case 'DOUBLE':
      return a.appendDouble(Number(v));
    case 'TIMESTAMP':
      return a.appendTimestamp(timestampValue(BigInt(v) * 1000n));
    default:
      throw new Error(`parquet-label column type ${type} has no appender mapping`);
  }
}
