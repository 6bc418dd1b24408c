/**
 * The soak: all four workers together (caption, enrich, score, dump), each in its own process
 * started as `pinrich run <worker>` starts it (bench/child.ts, the shipped heap settings), for
 * 30 minutes at a steady load: new pins, engagement on the pins so far, and pairs on pins
 * already enriched, produced at fixed rates. Every few seconds it samples each worker's RSS and
 * each consumer group's lag, then reports per worker RSS after the warm-up vs at the end, the
 * least-squares slope of RSS (MB/hour) and of lag (records/min) over the samples after the
 * warm-up, and whether each is flat. Writes soak.json, soak.md and soak.svg (RSS and lag over
 * time) to bench/results.
 *
 *   npm run bench -- --soak [--soak-minutes N]      (or: tsx bench/soak.ts [--soak-minutes N])
 *
 * The rates are modest on purpose (a shared 2-core machine carries the stack too): the soak
 * looks for growth over time, not for throughput.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CompressionTypes, type Message } from 'kafkajs';
import { createProducer } from '../src/adapters/kafka/client.js';
import { topics as topicNames, type Config } from '../src/config.js';
import { groupIdOf, WORKER_NAMES, WORKERS, type WorkerName } from '../src/workers.js';
import { engagementMessage, pairMessage, pinEventMessage } from './data.js';
import { benchEnv, benchKafka, benchStack, configOf, createLagProbe, isMain, machine, mb, procStatusBytes, RESULTS_DIR, round, setupTopics, startWorkerChild, type WorkerChild } from './lib.js';
import { lineChartSvg } from './plot.js';
import { startModelServerProcess } from './score.js';

/** Records per second produced to each input topic. */
export interface SoakRates {
  pins: number;
  engagement: number;
  pairs: number;
}

export const DEFAULT_SOAK_RATES: SoakRates = { pins: 20, engagement: 400, pairs: 60 };

export interface SoakOptions {
  minutes: number;
  /** Seconds between samples (default 5). */
  sampleSeconds?: number;
  /** Minutes left out of the slopes (default: 5, or a fifth of a shorter run). */
  warmupMinutes?: number;
  rates?: Partial<SoakRates>;
  /** Where soak.json, soak.md and soak.svg go (default bench/results). */
  outDir?: string;
  log: (line: string) => void;
}

export interface SoakSample {
  /** Seconds since the workers joined and the load started. */
  t: number;
  rssMB: Record<WorkerName, number>;
  /** Records on the group's input topics not yet committed. */
  lag: Record<WorkerName, number>;
  /** Records each worker has handled so far. */
  records: Record<WorkerName, number>;
}

export interface WorkerVerdict {
  rssStartMB: number;
  rssEndMB: number;
  rssPeakMB: number;
  rssSlopeMBPerHour: number;
  rssFlat: boolean;
  lagStart: number;
  lagEnd: number;
  lagMax: number;
  lagSlopePerMin: number;
  lagFlat: boolean;
  /** Records per second the worker handled after the warm-up. */
  recordsPerSecond: number;
}

export interface SoakReport {
  startedAt: string;
  minutes: number;
  sampleSeconds: number;
  warmupMinutes: number;
  rates: SoakRates;
  produced: SoakRates;
  machine: Record<string, string | number>;
  heap: string;
  workers: Record<WorkerName, WorkerVerdict>;
  flat: boolean;
  samples: SoakSample[];
  files: { json: string; md: string; svg: string };
}

/** Least-squares slope of y over x (0 with fewer than two distinct x). */
export function slope(points: ReadonlyArray<readonly [number, number]>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

const median = (xs: number[]) => {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/**
 * Per-worker figures from the samples after the warm-up. "Start" and "end" are medians over the
 * first and last minute of that span (a fifth of it in a short run), so one GC sawtooth does not
 * decide them. Flat means: the growth the slope predicts over the measured span (a fall is no
 * growth: a worker catching up after its start is flat) stays within
 * max(10 MB, 5 % of the starting RSS) for RSS, and within max(200 records, 10 s of the group's
 * own throughput) for lag.
 */
export function verdicts(samples: readonly SoakSample[], warmupSeconds: number): Record<WorkerName, WorkerVerdict> {
  const after = samples.filter((s) => s.t >= warmupSeconds);
  const span = after.length > 1 ? after.at(-1)!.t - after[0]!.t : 0;
  const edge = Math.min(60, Math.max(span / 5, 1));
  const first = after.filter((s) => s.t <= after[0]!.t + edge);
  const last = after.filter((s) => s.t >= after.at(-1)!.t - edge);
  const out = {} as Record<WorkerName, WorkerVerdict>;
  for (const w of WORKER_NAMES) {
    const rssSlope = slope(after.map((s) => [s.t / 3600, s.rssMB[w]] as const)); // MB/hour
    const lagSlope = slope(after.map((s) => [s.t / 60, s.lag[w]] as const)); // records/min
    const rssStartMB = median(first.map((s) => s.rssMB[w]));
    const handled = after.length > 1 ? after.at(-1)!.records[w] - after[0]!.records[w] : 0;
    const recordsPerSecond = span > 0 ? handled / span : 0;
    out[w] = {
      rssStartMB: round(rssStartMB, 1),
      rssEndMB: round(median(last.map((s) => s.rssMB[w])), 1),
      rssPeakMB: round(Math.max(0, ...samples.map((s) => s.rssMB[w])), 1),
      rssSlopeMBPerHour: round(rssSlope, 1),
      rssFlat: rssSlope * (span / 3600) <= Math.max(10, 0.05 * rssStartMB),
      lagStart: Math.round(median(first.map((s) => s.lag[w]))),
      lagEnd: Math.round(median(last.map((s) => s.lag[w]))),
      lagMax: Math.max(0, ...samples.map((s) => s.lag[w])),
      lagSlopePerMin: round(lagSlope, 1),
      lagFlat: lagSlope * (span / 60) <= Math.max(200, 10 * recordsPerSecond),
      recordsPerSecond: round(recordsPerSecond, 1),
    };
  }
  return out;
}

/**
 * Produces the steady load: each tick, whatever the rates say should have been sent by now.
 * Engagement falls on the pins produced so far; pair k is on pin floor(k / pairsPerPin), and
 * pairsPerPin = pairs rate / pins rate keeps it `seedPins` behind the newest pin (enriched by then).
 */
function startLoad(config: Config, rates: SoakRates, seedPins: number, runId: string, log: (l: string) => void) {
  const t = topicNames(config);
  const producer = createProducer(benchKafka(config), { allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 });
  const produced: SoakRates = { pins: seedPins, engagement: 0, pairs: 0 };
  const pairsPerPin = Math.max(1, Math.round(rates.pairs / Math.max(rates.pins, 1e-9)));
  let started = 0;
  let stopping = false;
  let failures = 0;
  const send = (topic: string, messages: Message[]) => (messages.length ? producer.send({ topic, acks: -1, compression: CompressionTypes.None, messages }) : Promise.resolve());
  const batch = (from: number, to: number, make: (i: number) => Message) => Array.from({ length: to - from }, (_, j) => make(from + j));
  const loop = (async () => {
    await producer.connect();
    await send(t.pinEvents, batch(0, seedPins, pinEventMessage));
    started = Date.now();
    while (!stopping) {
      const s = (Date.now() - started) / 1000;
      const want = { pins: seedPins + Math.floor(rates.pins * s), engagement: Math.floor(rates.engagement * s), pairs: Math.floor(rates.pairs * s) };
      try {
        await Promise.all([
          send(t.pinEvents, batch(produced.pins, want.pins, pinEventMessage)),
          send(t.engagement, batch(produced.engagement, want.engagement, (e) => engagementMessage(e, want.pins, runId))),
          send(t.pairs, batch(produced.pairs, want.pairs, (k) => pairMessage(k, pairsPerPin))),
        ]);
        Object.assign(produced, want);
      } catch (err) {
        // A send that failed is sent again next tick (the idempotent producer dedups a partial write).
        if (++failures <= 5) log(`soak: produce failed (${err instanceof Error ? err.message : String(err)}); retrying`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  return {
    /** Resolves once the seed pins are on the topic and the clock of the rates starts. */
    ready: async () => {
      while (!started) await new Promise((r) => setTimeout(r, 50));
    },
    produced: () => ({ ...produced }),
    stop: async () => {
      stopping = true;
      await loop;
      await producer.disconnect();
    },
  };
}

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const rates = { ...DEFAULT_SOAK_RATES, ...opts.rates };
  const sampleSeconds = opts.sampleSeconds ?? 5;
  const warmupMinutes = opts.warmupMinutes ?? Math.min(5, opts.minutes / 5);
  const outDir = opts.outDir ?? RESULTS_DIR;
  const stack = await benchStack(opts.log);
  const server = await startModelServerProcess(0);
  const env = benchEnv(stack, {
    PINRICH_VLM_BASE_URL: server.baseUrl,
    PINRICH_TEACHER_BASE_URL: server.baseUrl,
    // The dump commits a block's offsets when the block seals: blocks of 50,000 rows would take
    // most of an hour to fill at this rate, and its lag would only grow until then. Blocks of
    // 500 seal every ~30 s per partition, so its lag is a sawtooth, flat over time.
    PINRICH_DUMP_FLUSH_ROWS: '500',
    PINRICH_SCORE_DOC_RETRY_MS: '500',
  });
  const config = configOf(env);
  await setupTopics(config);
  const runId = config.redisKeyPrefix.replace(/\W/g, '');
  const probe = await createLagProbe(config);
  const children: Partial<Record<WorkerName, WorkerChild>> = {};
  const t = topicNames(config);
  let load: ReturnType<typeof startLoad> | undefined;
  const samples: SoakSample[] = [];
  const startedAt = new Date().toISOString();
  try {
    for (const w of WORKER_NAMES) {
      children[w] = await startWorkerChild(w, env);
      opts.log(`soak: ${w} worker ${children[w]!.pid} joined`);
    }
    load = startLoad(config, rates, 1_000, runId, opts.log);
    await load.ready();
    const t0 = Date.now();
    const end = t0 + opts.minutes * 60_000;
    let skipped = 0;
    opts.log(`soak: ${opts.minutes} min at ${JSON.stringify(rates)} records/s, a sample every ${sampleSeconds} s`);
    for (let next = t0; next <= end; next += sampleSeconds * 1000) {
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())));
      const sample: SoakSample = { t: round((Date.now() - t0) / 1000, 1), rssMB: {} as SoakSample['rssMB'], lag: {} as SoakSample['lag'], records: {} as SoakSample['records'] };
      try {
        for (const w of WORKER_NAMES) {
          const child = children[w]!;
          const rss = procStatusBytes(child.pid, 'VmRSS');
          if (!rss) throw new Error(`soak: the ${w} worker (pid ${child.pid}) is gone`);
          sample.rssMB[w] = mb(rss);
          sample.lag[w] = await probe.lag(groupIdOf(config, w), WORKERS[w].inputs(t));
          sample.records[w] = child.last()?.records ?? 0;
        }
      } catch (err) {
        // A broker busy on a loaded machine may fail one lag read (coordinator not found): that
        // sample is skipped; a worker that is gone ends the soak.
        if (err instanceof Error && err.message.includes('is gone')) throw err;
        if (++skipped <= 5) opts.log(`soak: sample at ${sample.t} s skipped (${err instanceof Error ? err.message : String(err)})`);
        continue;
      }
      samples.push(sample);
      if (samples.length % Math.max(1, Math.round(60 / sampleSeconds)) === 0) {
        opts.log(`soak: ${round(sample.t / 60, 1)} min  rss ${WORKER_NAMES.map((w) => `${w} ${sample.rssMB[w]}`).join(', ')} MB  lag ${WORKER_NAMES.map((w) => `${w} ${sample.lag[w]}`).join(', ')}`);
      }
    }
    // Written before the workers stop, so a worker that hangs on its way out loses no figures.
    const workers = verdicts(samples, warmupMinutes * 60);
    const report: SoakReport = {
      startedAt,
      minutes: opts.minutes,
      sampleSeconds,
      warmupMinutes,
      rates,
      produced: load.produced(),
      machine: machine(),
      heap: `shipped settings (bin/heap.js) unless overridden: ${JSON.stringify({ PINRICH_HEAP_MB: process.env.PINRICH_HEAP_MB ?? null, NODE_OPTIONS: process.env.NODE_OPTIONS ?? null })}`,
      workers,
      flat: WORKER_NAMES.every((w) => workers[w].rssFlat && workers[w].lagFlat),
      samples,
      files: { json: join(outDir, 'soak.json'), md: join(outDir, 'soak.md'), svg: join(outDir, 'soak.svg') },
    };
    mkdirSync(outDir, { recursive: true });
    writeFileSync(report.files.json, JSON.stringify(report, null, 2) + '\n');
    writeFileSync(report.files.md, soakMarkdown(report));
    writeFileSync(report.files.svg, soakSvg(report));
    opts.log(`soak: ${report.flat ? 'flat' : 'NOT flat'}; wrote ${report.files.json}, soak.md, soak.svg`);
    return report;
  } finally {
    await load?.stop();
    const stopping = [...WORKER_NAMES].reverse().map((w) => children[w]?.stop().catch(() => undefined));
    await Promise.race([Promise.all(stopping), new Promise((r) => setTimeout(r, 90_000).unref())]);
    await probe.close();
    await server.stop();
  }
}

export function soakSvg(r: SoakReport): string {
  const min = (s: SoakSample) => s.t / 60;
  const shade = { until: r.warmupMinutes, label: 'warm-up' };
  return lineChartSvg({
    title: `pinrich soak: ${r.minutes} min, ${r.rates.pins} pins/s, ${r.rates.engagement} engagement/s, ${r.rates.pairs} pairs/s (${r.startedAt})`,
    xLabel: 'minutes',
    panels: [
      { title: 'RSS per worker (slope after the warm-up)', yLabel: 'RSS (MB)', shade, series: WORKER_NAMES.map((w) => ({ name: `${w}: ${r.workers[w].rssSlopeMBPerHour} MB/h${r.workers[w].rssFlat ? ', flat' : ', NOT flat'}`, points: r.samples.map((s) => [min(s), s.rssMB[w]]) })) },
      { title: 'Consumer lag per group (slope after the warm-up)', yLabel: 'lag (records)', shade, series: WORKER_NAMES.map((w) => ({ name: `${w}: ${r.workers[w].lagSlopePerMin}/min${r.workers[w].lagFlat ? ', flat' : ', NOT flat'}`, points: r.samples.map((s) => [min(s), s.lag[w]]) })) },
    ],
  });
}

export function soakMarkdown(r: SoakReport): string {
  const yes = (b: boolean) => (b ? 'flat' : '**not flat**');
  const lines = [
    '# pinrich soak',
    '',
    `Run ${r.startedAt}: all four workers, each in its own process with the shipped heap settings, for ${r.minutes} min`,
    `at ${r.rates.pins} pins/s, ${r.rates.engagement} engagement events/s and ${r.rates.pairs} pairs/s (produced: ${JSON.stringify(r.produced)});`,
    `a sample every ${r.sampleSeconds} s; slopes by least squares over the samples after a ${r.warmupMinutes}-min warm-up. Machine: ${JSON.stringify(r.machine)}, shared.`,
    `Command: \`npm run bench -- --soak --soak-minutes ${r.minutes}\`. Plot: soak.svg. Verdict: **${r.flat ? 'flat' : 'not flat'}**.`,
    '',
    '| worker | RSS after warm-up | RSS at end | peak | RSS slope | RSS | lag after warm-up | lag at end | max | lag slope | lag | handled |',
    '|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|',
  ];
  for (const w of WORKER_NAMES) {
    const v = r.workers[w];
    lines.push(`| ${w} | ${v.rssStartMB} MB | ${v.rssEndMB} MB | ${v.rssPeakMB} MB | ${v.rssSlopeMBPerHour} MB/h | ${yes(v.rssFlat)} | ${v.lagStart} | ${v.lagEnd} | ${v.lagMax} | ${v.lagSlopePerMin} /min | ${yes(v.lagFlat)} | ${v.recordsPerSecond} records/s |`);
  }
  lines.push(
    '',
    'Flat: the growth the slope predicts over the measured span is within max(10 MB, 5 % of the RSS after warm-up) for RSS, and within',
    "max(200 records, 10 s of the group's throughput) for lag. Start and end are medians over the first and last minute after the warm-up.",
    'The dump commits a block of offsets when the block seals (PINRICH_DUMP_FLUSH_ROWS=500 here, ~30 s per partition at this rate),',
    'so its lag is a sawtooth up to about one block per partition.',
  );
  return lines.join('\n') + '\n';
}

/** `--soak-minutes N` from argv (default 30). */
export function soakMinutes(argv: readonly string[]): number {
  const i = argv.indexOf('--soak-minutes');
  if (i < 0) return 30;
  const n = Number(argv[i + 1]);
  if (!(n > 0)) throw new Error(`--soak-minutes takes a positive number of minutes, got ${argv[i + 1]}`);
  return n;
}

if (isMain(import.meta.url)) {
  runSoak({ minutes: soakMinutes(process.argv), log: (l) => process.stderr.write(l + '\n') }).then(
    (r) => process.exit(r.samples.length ? 0 : 1),
    (err: unknown) => {
      process.stderr.write(`soak failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
