/**
 * `pinrich labels query "SQL"`: DuckDB over the local cache of label dumps, exposed as a view
 * `labels` (the columns of schemas/parquet-label.ts plus the hive partition columns dt, hour).
 *
 * Versions: the dump can leave, for a moment or after a crash, a partial object beside the larger
 * version that supersedes it (same topic, partition and first offset; see stages/dump/stage.ts).
 * The view reads only the largest version of each, so a row is never counted twice.
 */
import { basename, dirname } from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { openDuckDB } from '../adapters/duckdb/instance.js';
import { PARQUET_LABEL_COLUMNS } from '../../schemas/parquet-label.js';
import { parseDumpObjectName } from '../stages/dump/stage.js';
import { listParquetFiles } from './sync.js';

export interface LabelsDb {
  conn: DuckDBConnection;
  /** Files behind the view (after dropping superseded versions). */
  files: string[];
  close(): void;
}

/** The files to read: per (directory, topic, partition, first offset) only the largest `last`. */
export function currentVersions(files: readonly string[]): string[] {
  const best = new Map<string, { file: string; last: bigint }>();
  const out: string[] = [];
  for (const file of files) {
    const name = parseDumpObjectName(basename(file));
    if (!name) {
      out.push(file);
      continue;
    }
    const id = `${dirname(file)}\u0000${name.topic}\u0000${name.partition}\u0000${name.first}`;
    const seen = best.get(id);
    if (!seen || name.last > seen.last) best.set(id, { file, last: name.last });
  }
  return [...out, ...[...best.values()].map((b) => b.file)].sort();
}

const sqlString = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** An in-memory DuckDB with the view `labels` over the cached files under `labelsDir`. */
export async function openLabels(labelsDir: string): Promise<LabelsDb> {
  const files = currentVersions(await listParquetFiles(labelsDir));
  const instance = await openDuckDB();
  const conn = await instance.connect();
  try {
    if (files.length > 0) {
      await conn.run(`CREATE VIEW labels AS SELECT * FROM read_parquet([${files.map(sqlString).join(', ')}], hive_partitioning = true, union_by_name = true)`);
    } else {
      // No dumps cached yet: an empty view with the same columns, so queries still plan.
      const cols = PARQUET_LABEL_COLUMNS.map((c) => `CAST(NULL AS ${c.type}) AS "${c.name}"`).join(', ');
      await conn.run(`CREATE VIEW labels AS SELECT ${cols}, CAST(NULL AS DATE) AS dt, CAST(NULL AS BIGINT) AS hour WHERE false`);
    }
  } catch (err) {
    conn.closeSync();
    instance.closeSync();
    throw err;
  }
  return {
    conn,
    files,
    close() {
      conn.closeSync();
      instance.closeSync();
    },
  };
}

export type Cell = string | number | boolean | null | Cell[] | { [k: string]: Cell };

export interface QueryResult {
  columns: string[];
  types: string[];
  rows: Cell[][];
}

export async function runQuery(db: LabelsDb, sql: string): Promise<QueryResult> {
  const reader = await db.conn.runAndReadAll(sql);
  const types = reader.columnTypes().map(String);
  return {
    columns: reader.columnNames(),
    types,
    rows: reader.getRowsJS().map((row) => row.map((v, i) => plain(v, types[i]!))),
  };
}

/** DuckDB's JS values -> JSON-friendly values (BIGINT as number when exact, dates as ISO text). */
function plain(v: unknown, type: string): Cell {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Date) return type === 'DATE' ? v.toISOString().slice(0, 10) : v.toISOString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (Array.isArray(v)) return v.map((x) => plain(x, ''));
  if (typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x, '')]));
  if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return v;
  return String(v);
}

const text = (c: Cell): string => (c === null ? '' : typeof c === 'object' ? JSON.stringify(c) : String(c));

export function formatCsv(r: QueryResult): string {
  const esc = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  return [r.columns.map(esc).join(','), ...r.rows.map((row) => row.map((c) => esc(text(c))).join(','))].join('\n') + '\n';
}

export function formatJson(r: QueryResult): string {
  return JSON.stringify(r.rows.map((row) => Object.fromEntries(r.columns.map((c, i) => [c, row[i] ?? null]))), null, 2) + '\n';
}

/** An aligned text table; numbers right-aligned, NULL shown as such, long cells cut at 60 characters. */
export function formatTable(r: QueryResult): string {
  const cell = (c: Cell) => {
    const s = c === null ? 'NULL' : text(c).replace(/\s+/g, ' ');
    return s.length > 60 ? s.slice(0, 59) + '…' : s;
  };
  const body = r.rows.map((row) => row.map(cell));
  const widths = r.columns.map((c, i) => Math.max(c.length, ...body.map((row) => row[i]!.length)));
  const numeric = r.rows.length > 0 ? r.columns.map((_, i) => r.rows.every((row) => row[i] === null || typeof row[i] === 'number')) : r.columns.map(() => false);
  const line = (cells: string[]) => cells.map((s, i) => (numeric[i] ? s.padStart(widths[i]!) : s.padEnd(widths[i]!))).join(' | ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('-+-');
  return [line(r.columns), rule, ...body.map(line), `(${r.rows.length} row${r.rows.length === 1 ? '' : 's'})`].join('\n') + '\n';
}
