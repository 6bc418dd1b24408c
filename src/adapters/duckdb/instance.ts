/**
 * pinrich's one way to DuckDB (the dump's Parquet writer, `labels query`): the DuckDB module is
 * loaded here, after its allocator has been told to give memory back to the system as soon as
 * DuckDB frees it.
 *
 * DuckDB on Linux allocates through its own statically linked jemalloc, which by default keeps
 * freed pages for ~10 s per arena before returning them, and keeps them longer while allocations
 * keep coming. A dump worker reads a few MiB of JSON per insert and builds each object's Parquet
 * in memory, so those retained pages grew its RSS by ~120–280 MB above what DuckDB itself held
 * (`duckdb_memory()`), and in steps over a 30-min soak. With both decay times at 0 the pages go
 * back at once: peak RSS in bench/dump.ts 431–440 MB -> 347–359 MB, RSS after the run 342–385 ->
 * 212–229 MB, for ~10 % more CPU per row (bench/results/dump-levers.md).
 *
 * jemalloc reads its settings from DUCKDB_JE_MALLOC_CONF (jemalloc's MALLOC_CONF under DuckDB's
 * name) once, when the native module loads. Hence the module is imported only here, on first
 * use, after the variable is set (unless the operator set one of their own); anywhere else,
 * import only its types (test/unit/duckdb-allocator.test.ts checks both).
 */
import type * as DuckDB from '@duckdb/node-api';

export type DuckDBModule = typeof DuckDB;

/** DuckDB's jemalloc settings pinrich ships: freed pages go back to the system at once. */
export const DUCKDB_ALLOCATOR_CONF = 'dirty_decay_ms:0,muzzy_decay_ms:0';

let loaded: Promise<DuckDBModule> | undefined;

/** The DuckDB module, loaded with pinrich's allocator settings in place. */
export function loadDuckDB(): Promise<DuckDBModule> {
  process.env.DUCKDB_JE_MALLOC_CONF ??= DUCKDB_ALLOCATOR_CONF;
  return (loaded ??= import('@duckdb/node-api'));
}

/** A new in-memory DuckDB database. */
export async function openDuckDB(options?: Record<string, string>): Promise<DuckDB.DuckDBInstance> {
  const { DuckDBInstance } = await loadDuckDB();
  return DuckDBInstance.create(':memory:', options);
}
