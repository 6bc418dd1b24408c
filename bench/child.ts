/**
 * One pinrich worker in its own process, for the benchmarks: exactly the production wiring
 * (startApp), configured from the environment, reporting over IPC when it has joined its group
 * and, every 200 ms, records handled, RSS and the stage's counters. Stops gracefully on
 * {type: 'stop'} (in-flight work finishes, offsets are committed) and exits.
 *
 *   node --import tsx bench/child.ts <enrich|score|dump>     (forked by bench/lib.ts)
 */
import { startApp, type WorkerName } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/runtime/log.js';

const worker = process.argv[2] as WorkerName;
const send = (m: unknown) => {
  // With a callback, a send to a parent that is gone reports the error here instead of throwing.
  if (process.connected) process.send?.(m, undefined, {}, () => {});
};

const config = loadConfig();
const log = createLogger(config.logLevel);
let records = 0;
const app = await startApp(config, [worker], log, {
  onBatch: (info) => {
    records += info.records;
  },
});
await app.workers[worker]!.started;
send({ type: 'ready', at: Date.now() });

const progress = () => {
  const mem = process.memoryUsage();
  send({ type: 'progress', at: Date.now(), records, rss: mem.rss, heapUsed: mem.heapUsed, stats: app.stats()[worker] });
};
const timer = setInterval(progress, 200);

process.on('message', (m: { type?: string }) => {
  if (m?.type !== 'stop') return;
  clearInterval(timer);
  void app.stop().then(() => {
    progress();
    send({ type: 'stopped', stats: app.stats()[worker] });
    // Let the IPC messages flush, then exit (so --cpu-prof writes its profile).
    setTimeout(() => process.exit(0), 100);
  });
});
process.on('disconnect', () => process.exit(1));
