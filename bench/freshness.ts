/**
 * freshness: time from an engagement event being handed to the producer to the first document
 * on pins.enriched that counts it, through one enrich worker process, at steady rates ramped up
 * in one run: 5,000 events/s, 7,500, then 10,000 (the headline figure) and higher. A document with
 * engagement_count = c covers the first c events of its pin (one producer, one partition per
 * pin: events of a pin arrive in order), so every event gets an exact latency, attributed to
 * the step it was produced in. Per step p50/p99 after a 2 s warm-up; the second figure is the
 * highest step whose p99 stays <= 1 s (and whose rate the producer achieved).
 *
 * The enrich coalescing window (PINRICH_ENRICH_WINDOW_MS) is a floor under this figure by
 * design; the run uses the setting named in its settings.
 *
 * Each step also reports how many cores the worker, Redis, the broker and this process (the
 * producer and the reader) kept busy, and the whole machine (`details.perStep[].coresBusy`): on a
 * small machine the figure is bound by the cores all of them share.
 *
 *   tsx bench/freshness.ts [--quick]      BENCH_FRESHNESS_STEPS=10000,30000 to choose the steps
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { Kafka, logLevel } from 'kafkajs';
import { createProducer } from '../src/adapters/kafka/client.js';
import { createRedisFromConfig } from '../src/adapters/redis/client.js';
import { redisKeys } from '../src/adapters/redis/keys.js';
import { stackStatus } from '../src/stack/index.js';
import { benchEnv, benchStack, configOf, createLagProbe, dropRun, figure, loadBacklog, redisCpuSeconds, round, setupTopics, standalone, startWorkerChild, waitUntil, type BenchOptions, type BenchResult } from './lib.js';
import { engagementMessage, pinEventMessage } from './data.js';
import { benchRedisOverride, commandStats, commandStatsPerEvent, cpuSecondsOf } from './enrich.js';

/**
 * CPU seconds so far of each process on the measured path, and of the whole machine: per step,
 * the difference over the step's wall time says how many of the machine's cores each one kept
 * busy at that rate (the worker, Redis, the broker, and this process: the producer and the reader).
 */
interface CpuMark {
  at: number;
  worker: number;
  redis: number;
  broker: number;
  bench: number;
  machineBusy: number;
}
function machineBusySeconds(): number {
  // /proc/stat's first line: user nice system idle iowait irq softirq steal, in USER_HZ (100/s);
  // busy = all but idle and iowait (steal included: cores this VM wanted and did not get).
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) / 100;
}

const ENGAGEMENT_COUNT = /"engagement_count":(\d+)/;

export async function runFreshness(opts: BenchOptions): Promise<BenchResult> {
  // The ramp starts below the headline rate, so a machine that cannot hold 10,000 events/s still
  // says which rate it can; the headline figures are those of the 10,000 step (else the first).
  const steps = (process.env.BENCH_FRESHNESS_STEPS ?? (opts.quick ? '5000,10000,20000' : '5000,7500,10000,12500,15000,20000,30000')).split(',').map(Number);
  const seconds = opts.quick ? 8 : 15; // per step
  const warmupMs = 2_000;
  const pins = 20_000;
  const windowMs = Number(process.env.BENCH_FRESHNESS_WINDOW_MS ?? 250);
  const stack = await benchStack(opts.log);
  const env = benchEnv(stack, { PINRICH_ENRICH_WINDOW_MS: String(windowMs), ...benchRedisOverride() });
  const config = configOf(env);
  const t = await setupTopics(config);
  const runId = config.redisKeyPrefix.replace(/\W/g, '');
  await loadBacklog(config, t.pinEvents, pins, pinEventMessage);
  const redis = createRedisFromConfig(config);
  const probe = await createLagProbe(config);
  const kafka = new Kafka({ clientId: 'pinrich-bench-fresh', brokers: [...config.kafkaBrokers], logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `${config.groupPrefix}.fresh-reader`, maxWaitTimeInMs: 20, minBytes: 1 });
  const producer = createProducer(kafka);
  const child = await startWorkerChild('enrich', env, { profile: opts.profile });
  // The local stack's broker (none when Kafka is external: its CPU is then not counted).
  const brokerPid = (await stackStatus()).services.find((s) => s.name === 'kafka')?.pid;
  const cpuMark = async (): Promise<CpuMark> => {
    const redisCpu = await redisCpuSeconds(redis);
    const own = process.cpuUsage();
    return {
      at: Date.now() / 1000,
      worker: cpuSecondsOf(child.pid),
      redis: redisCpu,
      broker: brokerPid ? cpuSecondsOf(brokerPid) : NaN,
      bench: (own.user + own.system) / 1e6,
      machineBusy: machineBusySeconds(),
    };
  };
  let stopping: ReturnType<typeof child.stop> | undefined;
  const stopChild = () => (stopping ??= child.stop()).catch(() => undefined); // once: a second stop() would wait for an exit that happened
  try {
    // Let the worker take in the pins and publish their first documents before the clock starts.
    await waitUntil('pins to be enriched', async () => {
      if ((await probe.lag(`${config.groupPrefix}.enrich`, [t.pinEvents])) > 0) return false;
      const pipe = redis.pipeline();
      for (let p = 0; p < config.topicPartitions; p++) pipe.zcard(redisKeys(config.redisKeyPrefix).enrich.dirty(p));
      return ((await pipe.exec()) ?? []).every(([, n]) => Number(n) === 0);
    }, 120_000);

    const sentAt = new Map<string, number[]>(); // pin -> produce times of its events, in order
    const sentStep = new Map<string, number[]>(); // pin -> step of each of its events (-1: warm-up)
    const covered = new Map<string, number>(); // pin -> events already covered by a document
    const latencies: number[][] = steps.map(() => []);
    // The same latencies by the second of its step an event was produced in: a p99 far above
    // the p50 comes from a few seconds or from all of them, and which seconds.
    const bySecond: number[][][] = steps.map(() => []);
    const stepStarts: number[] = [];
    let startAt = 0;
    await consumer.connect();
    await consumer.subscribe({ topic: t.enriched, fromBeginning: false });
    let joined!: () => void;
    const isJoined = new Promise<void>((r) => (joined = r));
    consumer.on(consumer.events.GROUP_JOIN, () => joined());
    // The reader shares the machine with what it measures, so it does as little as it can: no
    // offset commits (nothing reads them back) and only the one field it needs from each document
    // (a JSON string value cannot hold an unescaped `"engagement_count":`, so the match is the field).
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const now = Date.now();
        for (const m of batch.messages) {
          if (!m.key || !m.value) continue;
          const pin = m.key.toString();
          const count = Number(ENGAGEMENT_COUNT.exec(m.value.toString('latin1'))?.[1] ?? NaN);
          if (!(count >= 0)) throw new Error(`freshness: a document on ${t.enriched} without engagement_count: ${m.value.toString().slice(0, 200)}`);
          const times = sentAt.get(pin);
          if (!times) continue;
          const stepOf = sentStep.get(pin)!;
          const from = covered.get(pin) ?? 0;
          for (let i = from; i < Math.min(count, times.length); i++) {
            const step = stepOf[i]!;
            if (step < 0) continue;
            const latency = now - times[i]!;
            latencies[step]!.push(latency);
            (bySecond[step]![Math.floor((times[i]! - stepStarts[step]!) / 1000)] ??= []).push(latency);
          }
          if (count > from) covered.set(pin, count);
        }
      },
    });
    await isJoined;
    await new Promise((r) => setTimeout(r, 1_000)); // the reader's first fetch is in place
    await producer.connect();
    const achieved: number[] = [];
    const expected: number[] = steps.map(() => 0);
    let seq = 0;
    let inFlight = 0;
    startAt = Date.now();
    const cpuBefore = cpuSecondsOf(child.pid);
    const redisBefore = await commandStats(redis);
    const marks: CpuMark[] = [];
    for (const [step, stepRate] of steps.entries()) {
      opts.log(`freshness: producing ${stepRate.toLocaleString('en')} events/s for ${seconds} s (window ${windowMs} ms)`);
      const stepStart = Date.now();
      stepStarts[step] = stepStart;
      marks.push(await cpuMark());
      const total = stepRate * seconds;
      let sent = 0;
      while (sent < total) {
        // At most 2,000 per request (a late timer must not make one oversized request).
        const due = Math.min(total, sent + 2_000, Math.floor(((Date.now() - stepStart) / 1000) * stepRate));
        if (due > sent) {
          const messages = [];
          const measured = Date.now() >= stepStart + warmupMs;
          for (; sent < due; sent++) {
            const pin = (seq * 7919) % pins; // spread over every pin
            const m = engagementMessage(seq++, pins, runId, pin, Date.now());
            const key = m.key as string;
            if (!sentAt.has(key)) {
              sentAt.set(key, []);
              sentStep.set(key, []);
            }
            sentAt.get(key)!.push(Date.now());
            sentStep.get(key)!.push(measured ? step : -1);
            if (measured) expected[step]!++;
            messages.push(m);
          }
          inFlight++;
          producer
            .send({ topic: t.engagement, acks: 1, messages })
            .catch((err: unknown) => opts.log(`freshness: send failed: ${String(err)}`))
            .finally(() => inFlight--);
        }
        // A bounded number of requests in flight: on a starved machine the producer falls short
        // of the rate (reported as the achieved rate) instead of queueing sends for minutes.
        do await new Promise((r) => setTimeout(r, 5));
        while (inFlight >= 8);
      }
      achieved.push(total / ((Date.now() - stepStart) / 1000));
    }
    marks.push(await cpuMark());
    // Wait for the tail to be covered (bounded).
    const expectedAll = expected.reduce((a, b) => a + b, 0);
    await waitUntil('freshness tail', async () => latencies.reduce((n, l) => n + l.length, 0) >= expectedAll, 60_000).catch(() => undefined);
    const producedAll = steps.reduce((n, r) => n + r * seconds, 0);
    const cpuSeconds = cpuSecondsOf(child.pid) - cpuBefore;
    const redisPerEvent = commandStatsPerEvent(redisBefore, await commandStats(redis), producedAll);
    const pct = (l: number[], q: number) => l[Math.min(l.length - 1, Math.floor(q * l.length))] ?? NaN;
    const perStep = steps.map((stepRate, i) => {
      const l = latencies[i]!.sort((a, b) => a - b);
      const p99BySecond = Array.from(bySecond[i]!, (s) => (s ? pct(s.sort((a, b) => a - b), 0.99) : null));
      // Cores each process kept busy during the step, and the whole machine (of os.cpus().length).
      const [a, b] = [marks[i]!, marks[i + 1]!];
      const wall = b.at - a.at;
      const cores = (k: Exclude<keyof CpuMark, 'at'>) => round((b[k] - a[k]) / wall, 2);
      const coresBusy = { worker: cores('worker'), redis: cores('redis'), broker: cores('broker'), bench: cores('bench'), machine: cores('machineBusy') };
      return { rate: stepRate, achieved: round(achieved[i]!), p50: pct(l, 0.5), p99: pct(l, 0.99), max: l[l.length - 1], covered: l.length, expected: expected[i]!, p99BySecond, coresBusy };
    });
    // The highest step that kept p99 <= 1 s, every event covered, and its rate achieved.
    let sustained = 0;
    for (const s of perStep) {
      if (s.p99 <= 1_000 && s.covered >= s.expected && s.achieved >= 0.95 * s.rate) sustained = s.rate;
      else break;
    }
    const first = perStep.find((s) => s.rate === 10_000) ?? perStep[0]!;
    const rate = first.rate;
    const settings = { steps: steps.join(","), secondsPerStep: seconds, warmupMs, pins, windowMs, tickMs: 100, partitions: config.topicPartitions, measuredEvents: first.covered, expectedEvents: first.expected };
    const busy = first.coresBusy;
    const coresSettings = { ...settings, worker: busy.worker, redis: busy.redis, broker: busy.broker, benchProducerAndReader: busy.bench, cores: cpus().length };
    const command = `tsx bench/freshness.ts (PINRICH_ENRICH_WINDOW_MS=${windowMs}; worker: node bench/child.ts enrich)`;
    return {
      bench: 'freshness',
      figures: [
        figure({ name: `freshness p50 at ${rate.toLocaleString('en')} events/s (event produced -> document on pins.enriched)`, value: first.p50, unit: 'ms', command, settings }),
        figure({ name: `freshness p99 at ${rate.toLocaleString('en')} events/s`, value: first.p99, unit: 'ms', command, settings, target: { op: '<=', value: 1_000 } }),
        figure({ name: 'freshness achieved produce rate', value: first.achieved, unit: 'events/s', command, settings }),
        figure({ name: `freshness: machine cores busy at ${rate.toLocaleString('en')} events/s (worker, Redis, broker, this bench's producer and reader)`, value: busy.machine, unit: 'cores', command, settings: coresSettings }),
        figure({ name: 'highest steady rate with freshness p99 <= 1 s (ramped in one run)', value: sustained, unit: 'events/s', command, settings, target: { op: '>=', value: 30_000 } }),
      ],
      profile: (await stopChild())?.profile,
      details: { perStep, cpuSeconds: round(cpuSeconds, 2), cpuUsPerEvent: round((cpuSeconds / producedAll) * 1e6, 2), redisPerEvent },
    };
  } finally {
    await stopChild();
    await producer.disconnect().catch(() => undefined);
    await consumer.disconnect().catch(() => undefined);
    await probe.close();
    redis.disconnect();
    await dropRun(config, opts.log);
  }
}

standalone(import.meta.url, runFreshness);
