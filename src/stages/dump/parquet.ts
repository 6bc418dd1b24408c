/**
 * Label records -> Parquet bytes (zstd), through an in-memory DuckDB: a batch of records goes
 * into the block's scratch table with one `read_ndjson` statement, `COPY ... (FORMAT parquet,
 * COMPRESSION zstd)` writes a temp file, and its bytes are returned for upload. The column
 * layout is schemas/parquet-label.ts, in order.
 *
 * ## Why the records' own text goes to DuckDB
 *
 * The appender is one native call per cell (25 per row), ~10 µs of main-thread CPU per row, as
 * much as decoding it. Instead, each record's value — the exact text the decoder parsed and
 * checked (src/stages/dump/decode-label.ts) — is wrapped in a line `{"o":"<offset>","t":<ms>,
 * "v":<value>}` (`labelLine`; one UTF-8 encoding per batch on the way to the file), and DuckDB
 * reads a few MiB of lines per statement in C++, off the main thread; figures in
 * bench/results/dump-levers.md. Two guards keep DuckDB reading the same values the contract did:
 * - a record the fast check did not accept as it is (defaults applied, lone surrogates made
 *   well-formed) goes in as `JSON.stringify` of its decoded value instead of its text;
 * - DuckDB refuses a batch it would read otherwise than `JSON.parse` (a duplicate key, which
 *   JavaScript resolves to the last one): the batch is then appended cell by cell from the
 *   values `JSON.parse` reads from its lines (`appendRowsOneByOne`), so a record never becomes
 *   a different row.
 * `labeled_at` is the decoder's `Date.parse` (ms) and the offset Kafka's decimal string, not
 * DuckDB's reading of either.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DuckDBAppender, DuckDBConnection } from '@duckdb/node-api';
import { loadDuckDB, type DuckDBModule } from '../../adapters/duckdb/instance.js';
import type { Label } from '../../../schemas/label.js';
import { PARQUET_LABEL_COLUMNS } from '../../../schemas/parquet-label.js';

type ColumnName = (typeof PARQUET_LABEL_COLUMNS)[number]['name'];
/** One Parquet row: every column of schemas/parquet-label.ts. Timestamps are ms since epoch. */
export type LabelRow = { [K in ColumnName]: string | number | bigint | null };

/**
 * The NDJSON line of one decoded label record: `{"o":"<offset>","t":<labeled_at ms>,"v":<value>}`.
 * `text` is the record's value when it is exactly what `label` was read from (the fast check's
 * verdict); otherwise the decoded value is written out. A string: a batch's lines are joined and
 * encoded to UTF-8 once, on their way to the file (one native call per batch, not three per line).
 */
export function labelLine(label: Label, text: string | undefined, offset: string): string {
  return `{"o":"${offset}","t":${Date.parse(label.labeled_at)},"v":${text ?? JSON.stringify(label)}}\n`;
}

/** Where a block's rows come from: the `kafka_topic` and `kafka_partition` of every row. */
export interface Source {
  topic: string;
  partition: number;
}

/** The row for one label record. */
export function labelRow(label: Label, record: Source & { offset: string }): LabelRow {
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
  /** Append the rows of these `labelLine`s (in offset order). */
  append(lines: readonly string[]): Promise<void>;
  /** Delete the rows at or after `offset`; resolves with how many rows are left. */
  truncateFrom(offset: bigint): Promise<number>;
  /** Every row held, as one Parquet file (zstd), in insertion order. */
  write(): Promise<Uint8Array>;
  /** Free the table. */
  drop(): Promise<void>;
}

export interface ParquetWriter {
  /** The rows of these `labelLine`s as one Parquet file (zstd), in the given order. */
  write(source: Source, lines: readonly string[]): Promise<Uint8Array>;
  /** A new, empty block table for rows of `source`. */
  open(source: Source): Promise<BlockTable>;
  /** Batches DuckDB refused as NDJSON and that were appended cell by cell instead. */
  stats(): { cellByCellBatches: number };
  close(): void;
}

/** The DDL column list of the label layout, e.g. `"pair_id" VARCHAR, ...`. */
export const LABEL_COLUMNS_DDL = PARQUET_LABEL_COLUMNS.map((c) => `"${c.name}" ${c.type}`).join(', ');

export async function createParquetWriter(): Promise<ParquetWriter> {
  // One thread: DuckDB's work (JSON reading, zstd) is off the main thread either way, and a
  // second thread spent more CPU per row than it saved on a machine shared with Kafka.
  const duckdb = await loadDuckDB();
  const instance = await duckdb.DuckDBInstance.create(':memory:', { threads: '1' });
  const appenders = appendersOf(duckdb.timestampValue);
  const conn = await instance.connect();
  // The blocks' tables in a compressed in-memory database: four 50,000-row blocks took ~70 MB
  // less RSS than in the default (uncompressed) one, at no CPU cost we could measure.
  await conn.run("ATTACH ':memory:' AS blocks (COMPRESS)");
  await conn.run('USE blocks');
  const dir = await mkdtemp(join(tmpdir(), 'pinrich-dump-'));
  let seq = 0;
  let cellByCellBatches = 0;
  // One DuckDB connection: writes are serialised (a dump flushes one object at a time per partition anyway).
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };
  const copy = (table: string) => copyToParquet(conn, table, join(dir, `part-${++seq}.parquet`));
  async function append(table: string, source: Source, lines: readonly string[]): Promise<void> {
    if (lines.length === 0) return;
    if (await insertNdjson(conn, table, source, lines, join(dir, `rows-${++seq}.ndjson`))) return;
    cellByCellBatches++;
    await appendRowsOneByOne(conn, table, lines.map((l) => rowOfLine(l, source)), appenders);
  }
  return {
    write: (source, lines) =>
      serial(async () => {
        const table = `rows_${++seq}`;
        await conn.run(`CREATE TABLE ${table} (${LABEL_COLUMNS_DDL})`);
        try {
          await append(table, source, lines);
          return await copy(table);
        } finally {
          await conn.run(`DROP TABLE IF EXISTS ${table}`);
        }
      }),
    async open(source) {
      const table = `block_${++seq}`;
      await serial(() => conn.run(`CREATE TABLE ${table} (${LABEL_COLUMNS_DDL})`));
      return {
        append: (lines) => serial(() => append(table, source, lines)),
        truncateFrom: (offset) =>
          serial(async () => {
            await conn.run(`DELETE FROM ${table} WHERE kafka_offset >= ${BigInt(offset)}`);
            const left = await conn.runAndReadAll(`SELECT count(*)::INTEGER FROM ${table}`);
            return Number(left.getRows()[0]![0]);
          }),
        write: () => serial(() => copy(table)),
        drop: () => serial(() => conn.run(`DROP TABLE IF EXISTS ${table}`).then(() => undefined)),
      };
    },
    stats: () => ({ cellByCellBatches }),
    close() {
      conn.closeSync();
      instance.closeSync();
      void rm(dir, { recursive: true, force: true });
    },
  };
}

/** The row of a line as JavaScript reads it (the last of duplicate keys, as the decoder did). */
function rowOfLine(line: string, source: Source): LabelRow {
  const { o, v } = JSON.parse(line) as { o: string; v: Label };
  return labelRow(v, { ...source, offset: o });
}

/**
 * Insert the lines' rows into `table` with one statement, from the NDJSON file `file` (removed
 * after). False when DuckDB refuses the batch's JSON (nothing was inserted: a statement is atomic).
 */
async function insertNdjson(conn: DuckDBConnection, table: string, source: Source, lines: readonly string[], file: string): Promise<boolean> {
  try {
    await writeFile(file, lines.join(''));
    const from = `read_ndjson(${sqlString(file)}, columns = {o: 'VARCHAR', t: 'BIGINT', v: '${VALUE_STRUCT}'}, format = 'newline_delimited')`;
    // Any refusal (a duplicate key, a count beyond INTEGER): the caller appends cell by cell,
    // which either stores the batch or fails the way it always did.
    return await conn.run(`INSERT INTO ${table} SELECT ${selectList(source)} FROM ${from}`).then(
      () => true,
      () => false,
    );
  } finally {
    await rm(file, { force: true });
  }
}

/** The parts of a label the rows take, as DuckDB types (fields not named are ignored). */
const VALUE_STRUCT =
  'STRUCT(pair_id VARCHAR, pin_id VARCHAR, query VARCHAR, language VARCHAR, label TINYINT, distribution DOUBLE[], ' +
  'expected_score DOUBLE, label_source VARCHAR, teacher STRUCT(model VARCHAR, prompt_version VARCHAR, prompt_hash VARCHAR), ' +
  'doc_version INTEGER, doc_hash VARCHAR, usage STRUCT(prompt_tokens INTEGER, completion_tokens INTEGER, cached_prompt_tokens INTEGER), latency_ms DOUBLE)';

/** Each column's expression over a line `{o, t, v}`: what `labelRow` computes, in SQL. */
const COLUMN_SQL: { readonly [K in ColumnName]: (s: Source) => string } = {
  pair_id: () => 'v.pair_id',
  pin_id: () => 'v.pin_id',
  query: () => 'v.query',
  language: () => 'v.language',
  label: () => 'v.label',
  p1: () => 'v.distribution[1]',
  p2: () => 'v.distribution[2]',
  p3: () => 'v.distribution[3]',
  p4: () => 'v.distribution[4]',
  p5: () => 'v.distribution[5]',
  expected_score: () => 'v.expected_score',
  label_source: () => 'v.label_source',
  teacher_model: () => 'v.teacher.model',
  prompt_version: () => 'v.teacher.prompt_version',
  prompt_hash: () => 'v.teacher.prompt_hash',
  doc_version: () => 'v.doc_version',
  doc_hash: () => 'v.doc_hash',
  prompt_tokens: () => 'v.usage.prompt_tokens',
  completion_tokens: () => 'v.usage.completion_tokens',
  cached_prompt_tokens: () => 'v.usage.cached_prompt_tokens',
  latency_ms: () => 'v.latency_ms',
  labeled_at: () => 'epoch_ms(t)',
  kafka_topic: (s) => sqlString(s.topic),
  kafka_partition: (s) => String(Math.trunc(s.partition)),
  kafka_offset: () => 'CAST(o AS BIGINT)',
};
const selectList = (s: Source) => PARQUET_LABEL_COLUMNS.map((c) => COLUMN_SQL[c.name](s)).join(', ');
const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** The appender, one cell at a time: for a batch DuckDB's JSON reader refused. */
async function appendRowsOneByOne(conn: DuckDBConnection, table: string, rows: readonly LabelRow[], appenders: readonly Append[]): Promise<void> {
  const appender = await conn.createAppender(table);
  try {
    for (const row of rows) {
      for (let c = 0; c < COLUMN_NAMES.length; c++) {
        const v = row[COLUMN_NAMES[c]!];
        if (v === null) appender.appendNull();
        else appenders[c]!(appender, v);
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
    await conn.run(`COPY ${table} TO ${sqlString(file)} (FORMAT parquet, COMPRESSION zstd)`);
    return new Uint8Array(await readFile(file));
  } finally {
    await rm(file, { force: true });
  }
}

type Append = (a: DuckDBAppender, v: string | number | bigint) => void;
const COLUMN_NAMES: readonly ColumnName[] = PARQUET_LABEL_COLUMNS.map((c) => c.name);
/** One appender call per column, chosen once from the layout (not per cell). */
const appendersOf = (timestampValue: DuckDBModule['timestampValue']): readonly Append[] =>
  PARQUET_LABEL_COLUMNS.map((col): Append => {
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
