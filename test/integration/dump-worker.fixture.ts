/**
 * A dump worker in its own process, configured from the environment, so a test can SIGKILL it
 * mid-stream (test/integration/dump.test.ts). Logs go to stderr as JSON lines.
 */
import { createKafka, createPublisher } from '../../src/adapters/kafka/client.js';
import { loadConfig } from '../../src/config.js';
import { systemClock } from '../../src/runtime/clock.js';
import { createLogger } from '../../src/runtime/log.js';
import { startWorker } from '../../src/runtime/worker.js';
import { createDumpStageFromConfig, dumpWorkerOptions } from '../../src/stages/dump/wire.js';

const config = loadConfig(process.env);
const log = createLogger('info', { worker: 'dump' });
const kafka = createKafka(config, log);
const publisher = await createPublisher(kafka);
const stage = await createDumpStageFromConfig(config, log, systemClock);
const worker = await startWorker({ ...dumpWorkerOptions(config), kafka, stage, publisher, log, clock: systemClock });
await worker.started;
log.info('dump worker started');
