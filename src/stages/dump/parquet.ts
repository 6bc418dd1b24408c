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

/** One open block's rows, held in DuckDB (columnar, off the JS heap) until it is written. */
export interface BlockTable {
  /** Append rows (in offset order). */
  append(rows: readonly LabelRow[]): Promise<void>;
  /** Delete the rows at or after `offset`; resolves with how many rows are left. */
  truncateFrom(offset: bigint): Promise<number>;
  /** Every row held, as one Parquet file (zstd), in insertion order. */
  write(): Promise<Uint8Array>;
  /** Free the table. */
  drop(): Promise<void>;
}

export interface ParquetWriter {
  /** The rows as one Parquet file (zstd), in the given order. */
  write(rows: readonly LabelRow[]): Promise<Uint8Array>;
  /** A new, empty block table. */
  open(): Promise<BlockTable>;
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
  const copy = (table: string) => serial(() => copyToParquet(conn, table, join(dir, `part-${++seq}.parquet`)));
  return {
    write: (rows) =>
      serial(async () => {
        const table = `rows_${++seq}`;
        await conn.run(`CREATE TABLE ${table} (${LABEL_COLUMNS_DDL})`);
        try {
          await appendRows(conn, table, rows);
          return await copyToParquet(conn, table, join(dir, `part-${++seq}.parquet`));
        } finally {
          await conn.run(`DROP TABLE IF EXISTS ${table}`);
        }
      }),
    async open() {
      const table = `block_${++seq}`;
      await serial(() => conn.run(`CREATE TABLE ${table} (${LABEL_COLUMNS_DDL})`));
      return {
        append: (rows) => serial(() => appendRows(conn, table, rows)),
        truncateFrom: (offset) =>
          serial(async () => {
            await conn.run(`DELETE FROM ${table} WHERE kafka_offset >= ${BigInt(offset)}`);
            const left = await conn.runAndReadAll(`SELECT count(*)::INTEGER FROM ${table}`);
            return Number(left.getRows()[0]![0]);
          }),
        write: () => copy(table),
        drop: () => serial(() => conn.run(`DROP TABLE IF EXISTS ${table}`).then(() => undefined)),
      };
    },
    close() {
      conn.closeSync();
      instance.closeSync();
      void rm(dir, { recursive: true, force: true });
    },
  };
}

async function appendRows(conn: DuckDBConnection, table: string, rows: readonly LabelRow[]): Promise<void> {
  if (rows.length === 0) return;
  const appender = await conn.createAppender(table);
  try {
    for (const row of rows) {
      for (let c = 0; c < COLUMN_NAMES.length; c++) {
        const v = row[COLUMN_NAMES[c]!];
        if (v === null) appender.appendNull();
        else APPENDERS[c]!(appender, v);
      }
      appender.endRow();
    }
    appender.flushSync();
  } finally {
    appender.closeSync();
  }
}

async function copyToParquet(conn: DuckDBConnection, table: string, file: string): Promise<Uint8Array> {
  try {
    await conn.run(`COPY ${table} TO '${file.replace(/'/g, "''")}' (FORMAT parquet, COMPRESSION zstd)`);
    return new Uint8Array(await readFile(file));
  } finally {
    await rm(file, { force: true });
  }
}

type Append = (a: DuckDBAppender, v: string | number | bigint) => void;
const COLUMN_NAMES: readonly ColumnName[] = PARQUET_LABEL_COLUMNS.map((c) => c.name);
/** One appender call per column, chosen once from the layout (not per cell). */
const APPENDERS: readonly Append[] = PARQUET_LABEL_COLUMNS.map((col): Append => {
  switch (col.type as string) {
    case 'VARCHAR':
      return (a, v) => a.appendVarchar(typeof v === 'string' ? v : String(v));
    case 'TINYINT':
      return (a, v) => a.appendTinyInt(Number(v));
    case 'INTEGER':
      return (a, v) => a.appendInteger(Number(v));
    case 'BIGINT':
      return (a, v) => a.appendBigInt(typeof v === 'bigint' ? v : BigInt(v));
    case 'DOUBLE':
      return (a, v) => a.appendDouble(Number(v));
    case 'TIMESTAMP':
      return (a, v) => a.appendTimestamp(timestampValue(BigInt(v) * 1000n));
    default:
      throw new Error(`parquet-label column type ${col.type} has no appender mapping`);
  }
});
