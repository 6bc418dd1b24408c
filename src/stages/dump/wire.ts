/**
 * Builds the dump stage from the config with real clients (S3, an in-memory DuckDB), and the
 * worker options it is meant to run with (src/workers.ts). Tests start it with
 * `startWorker({ ...dumpWorkerOptions(config), kafka, stage, publisher, log, clock })`.
 */
import { createS3 } from '../../adapters/s3/client.js';
import type { Config } from '../../config.js';
import type { Clock } from '../../runtime/clock.js';
import type { Logger } from '../../runtime/log.js';
import type { Stage } from '../../runtime/stage.js';
import { createParquetWriter } from './parquet.js';
import { createDumpStage, type DumpStats } from './stage.js';
import { subscriptionOf } from '../../workers.js';

export async function createDumpStageFromConfig(config: Config, log: Logger, clock: Clock): Promise<Stage & { stats(): DumpStats }> {
  return createDumpStage({
    store: createS3(config),
    writer: await createParquetWriter(),
    s3Prefix: config.s3Prefix,
    flushRows: config.dumpFlushRows,
    flushAgeMs: config.dumpFlushAgeMs,
    maxRecordBytes: config.maxRecordBytes,
    clock,
    log,
  });
}

/** Consumer settings for the dump worker (group, topic, tick, batch size), from the worker registry. */
export function dumpWorkerOptions(config: Config) {
  return subscriptionOf('dump', config);
}
