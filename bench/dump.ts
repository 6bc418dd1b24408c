/**
 * dump: label rows per second from relevance.labels into Parquet (zstd) objects on S3 (s3rver),
 * one dump worker process. The backlog is 50,000 rows per partition (12,500 with --quick) in
 * whole aligned blocks (one each, or PINRICH_DUMP_FLUSH_ROWS when set), so every block seals,
 * uploads and commits.
 * Timed window: worker joined -> every label offset committed (= every object on S3).
 *
 *   tsx bench/dump.ts [--quick] [--profile]
 */
import { benchEnv, dropRun, benchStack, configOf, createLagProbe, figure, loadBacklog, mb, round, setupTopics, standalone, startWorkerChild, waitUntil, type BenchOptions, type BenchResult } from './lib.js';
import { readFileSync } from 'node:fs';
import { labelMessage } from './data.js';

/**
 * CPU seconds (user + system) used so far by the process, or by its main thread alone (the JS
 * thread: DuckDB's and libuv's threads excluded), from /proc (0 if unreadable).
 */
function cpuSeconds(pid: number, mainThreadOnly = false): number {
  try {
    // Fields after the ")" of the command name: utime and stime are the 12th and 13th.
    const fields = readFileSync(mainThreadOnly ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

export async function runDump(opts: BenchOptions): Promise<BenchResult> {
  const stack = await benchStack(opts.log);
  // 50,000 rows per partition (12,500 with --quick) in one block each, or in whole blocks of
  // PINRICH_DUMP_FLUSH_ROWS when that is set (to measure another block size on the same backlog).
  const perPartition = opts.quick ? 12_500 : 50_000;
  const env = benchEnv(stack, { PINRICH_DUMP_FLUSH_ROWS: process.env.PINRICH_DUMP_FLUSH_ROWS || String(perPartition) });
  const config = configOf(env);
  const flushRows = config.dumpFlushRows;
  const rows = Math.ceil(perPartition / flushRows) * flushRows * config.topicPartitions;
  const t = await setupTopics(config);
  opts.log(`dump: loading ${rows.toLocaleString('en')} labels`);
  const load = await loadBacklog(config, t.labels, rows, (k) => labelMessage(k, config.topicPartitions));
  const probe = await createLagProbe(config);
  try {
    const child = await startWorkerChild('dump', env, { profile: opts.profile });
    const cpuAtReady = cpuSeconds(child.pid);
    const mainAtReady = cpuSeconds(child.pid, true);
    opts.log(`dump: worker ${child.pid} joined; timing`);
    const doneAt = await waitUntil('dump to catch up', async () => (await probe.lag(`${config.groupPrefix}.dump`, [t.labels])) === 0, 900_000);
    // Load-robust: the worker's own CPU time per row, start-up excluded (the machine is shared).
    // The main thread's share bounds the rate once DuckDB's threads have a core of their own.
    const cpuPerRowUs = ((cpuSeconds(child.pid) - cpuAtReady) / rows) * 1e6;
    const mainPerRowUs = ((cpuSeconds(child.pid, true) - mainAtReady) / rows) * 1e6;
    const stopped = await child.stop();
    const seconds = (doneAt - child.readyAt) / 1000;
    const settings = { rows, flushRows, partitions: config.topicPartitions, recordBytes: Math.round(load.bytes / rows), compression: 'zstd' };
    const command = 'tsx bench/dump.ts (worker: node bench/child.ts dump)';
    return {
      bench: 'dump',
      figures: [
        figure({ name: 'dump throughput', value: round(rows / seconds), unit: 'rows/s', command, settings, target: { op: '>=', value: 100_000 } }),
        figure({ name: 'dump peak RSS', value: mb(stopped.peakRss), unit: 'MB', command, settings, target: { op: '<=', value: 300 } }),
        // The RSS above counts the pages of mapped files the process touched (libduckdb.so is a
        // 70 MB file, and node's own binary): shared, and the kernel's to drop under pressure.
        figure({ name: 'dump peak anonymous memory (RSS less mapped files: V8 heap and native allocations)', value: mb(stopped.peakAnon), unit: 'MB', command, settings: { ...settings, sampledEveryMs: 100 } }),
      ],
      profile: stopped.profile,
      // CPU per row (µs): the load-robust measures (bench/results/dump-levers.md).
      details: { seconds: round(seconds, 2), workerCpuPerRowUs: round(cpuPerRowUs, 2), mainThreadCpuPerRowUs: round(mainPerRowUs, 2), stats: stopped.stats },
    };
  } finally {
    await probe.close();
    await dropRun(config, opts.log);
  }
}

standalone(import.meta.url, runDump);
