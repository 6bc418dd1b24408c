/**
 * DuckDB's allocator returns freed memory at once (src/adapters/duckdb/instance.ts). Each case
 * runs in a child process, because jemalloc reads its settings once per process, when DuckDB's
 * native module loads: after the modules that use DuckDB are imported, the memory a Parquet COPY
 * of ~130 MB of rows used must be back with the system once the table is dropped (when the
 * module loaded before the setting, ~330 MB of it stayed resident here); an operator's own
 * DUCKDB_JE_MALLOC_CONF is left as it is; and no source module loads DuckDB but the adapter.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DUCKDB_ALLOCATOR_CONF } from '../../src/adapters/duckdb/instance.js';

const ROOT = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'pinrich-duckdb-alloc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** In a fresh node: open a database through openDuckDB, write and drop a large table 3 times. */
function run(env: Record<string, string | undefined>): { startMb: number; endMb: number; conf: string | null } {
  // The modules a worker or `labels query` loads before it opens a database, then the adapter.
  const imports = ['src/app.ts', 'src/stages/dump/stage.ts', 'src/stages/dump/parquet.ts', 'src/labels/command.ts', 'src/labels/query.ts'];
  const script = `
    ${imports.map((m) => `import ${JSON.stringify(join(ROOT, m))};`).join('\n')}
    import { openDuckDB } from ${JSON.stringify(join(ROOT, 'src/adapters/duckdb/instance.ts'))};
    const rss = () => process.memoryUsage().rss / 1048576;
    const instance = await openDuckDB({ threads: '1' });
    const conn = await instance.connect();
    const startMb = rss();
    for (let i = 0; i < 3; i++) {
      await conn.run("CREATE TABLE t AS SELECT range AS a, repeat('x', 200) || range::VARCHAR AS b FROM range(500000)");
      await conn.run(${JSON.stringify(`COPY t TO '${join(dir, 'x.parquet')}' (FORMAT parquet, COMPRESSION zstd)`)});
      await conn.run('DROP TABLE t');
    }
    console.log(JSON.stringify({ startMb, endMb: rss(), conf: process.env.DUCKDB_JE_MALLOC_CONF ?? null }));
  `;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: ROOT,
    env: { ...process.env, DUCKDB_JE_MALLOC_CONF: undefined, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(child.status, child.stderr).toBe(0);
  return JSON.parse(child.stdout.trim().split('\n').pop()!);
}

describe('DuckDB allocator settings', () => {
  it('give the memory of finished statements back to the system', () => {
    const r = run({});
    expect(r.conf).toBe(DUCKDB_ALLOCATOR_CONF);
    // Each round's table and COPY peak at ~130-280 MB; retained, the RSS ends ~300 MB up.
    expect(r.endMb - r.startMb).toBeLessThan(100);
  }, 90_000);

  it('are in place before DuckDB loads: only the adapter imports its module as a value', () => {
    const offenders: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (p.endsWith('.ts') && !p.endsWith(join('adapters', 'duckdb', 'instance.ts'))) {
          const text = readFileSync(p, 'utf8');
          if (/^import (?!type )[^;]*from '@duckdb\/node-api'/m.test(text) || /import\('@duckdb\/node-api'\)/.test(text)) offenders.push(p);
        }
      }
    };
    walk(join(ROOT, 'src'));
    expect(offenders).toEqual([]);
  });

  it("keep an operator's own DUCKDB_JE_MALLOC_CONF", () => {
    const r = run({ DUCKDB_JE_MALLOC_CONF: 'dirty_decay_ms:5000' });
    expect(r.conf).toBe('dirty_decay_ms:5000');
  }, 90_000);
});
