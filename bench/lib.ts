/**
 * Shared plumbing of the benchmark suite: the local stack, per-run topic/Redis prefixes, fast
 * backlog loading, workers in child processes (so RSS is per worker) and the "caught up" check
 * (the group's committed offsets reach the topic's end).
 *
 * Nothing here is measured itself: loading a backlog and waiting for group joins stay outside
 * every timed window.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Redis as IORedis } from 'ioredis';
import { CompressionTypes, Kafka, logLevel, type Message } from 'kafkajs';
// The `pinrich` bin's heap settings: workers here start as a user's `pinrich run <worker>` does.
import { heapFlags } from '../bin/heap.js';
import { createProducer } from '../src/adapters/kafka/client.js';
import { createTopics, waitForTopicLeaders } from '../src/adapters/kafka/admin.js';
import { createRedisFromConfig } from '../src/adapters/redis/client.js';
import { createS3 } from '../src/adapters/s3/client.js';
import { loadConfig, topics as topicNames, type Config, type Topics } from '../src/config.js';
import { stackEnv, stackUp, type StackEndpoints } from '../src/stack/index.js';
import type { WorkerName } from '../src/workers.js';

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = dirname(BENCH_DIR);
export const RESULTS_DIR = join(BENCH_DIR, 'results');

/** Options every sub-benchmark takes. */
export interface BenchOptions {
  quick: boolean;
  /** Run the measured worker under --cpu-prof and summarise its top self-time functions. */
  profile: boolean;
  log: (line: string) => void;
}

/** One measured figure, with what produced it. */
export interface Figure {
  name: string;
  value: number;
  unit: string;
  /** The command or code path that produced it, and its settings. */
  command: string;
  settings: Record<string, string | number | boolean>;
  target?: { op: '>=' | '<='; value: number; met: boolean };
  note?: string;
}

export interface BenchResult {
  bench: string;
  figures: Figure[];
  /** Top self-time functions of the measured worker, when profiled. */
  profile?: ProfileLine[];
  details?: Record<string, unknown>;
}

export function figure(f: Omit<Figure, 'target'> & { target?: { op: '>=' | '<='; value: number } }): Figure {
  const { target, ...rest } = f;
  if (!target) return rest;
  const met = target.op === '>=' ? f.value >= target.value : f.value <= target.value;
  return { ...rest, target: { ...target, met } };
}

let stackPromise: Promise<StackEndpoints> | undefined;
/** The same launcher as the tests: reuses a running local stack or starts one. */
export function benchStack(log: (l: string) => void): Promise<StackEndpoints> {
  stackPromise ??= stackUp({ log });
  return stackPromise;
}

/** Environment for a fresh, isolated pinrich "namespace" on the stack. */
export function benchEnv(stack: StackEndpoints, overrides: Record<string, string> = {}): Record<string, string> {
  const id = randomUUID().slice(0, 8);
  return {
    ...stackEnv(stack),
    PINRICH_TOPIC_PREFIX: `bench-${id}.`,
    PINRICH_REDIS_PREFIX: `bench-${id}:`,
    PINRICH_GROUP_PREFIX: `bench-${id}`,
    PINRICH_S3_PREFIX: `bench-${id}/`,
    PINRICH_TOPIC_PARTITIONS: '4',
    PINRICH_LOG_LEVEL: 'warn',
    ...overrides,
  };
}

/** Delete every Redis key under `prefix` (SCAN and UNLINK, a page at a time). */
export async function unlinkByPrefix(redis: Pick<IORedis, 'scan' | 'unlink'>, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 5_000);
    cursor = next;
    if (keys.length) await redis.unlink(...keys);
  } while (cursor !== '0');
}

/** Redis' own CPU seconds (user + system) in the text of an `INFO` reply that has its cpu section. */
export function infoCpuSeconds(info: string): number {
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN);
  return field('used_cpu_user') + field('used_cpu_sys');
}

/** Redis' own CPU seconds so far (`INFO cpu`): the work, not a loaded machine's time. */
export async function redisCpuSeconds(redis: Pick<IORedis, 'info'>): Promise<number> {
  return infoCpuSeconds(await redis.info('cpu'));
}

/**
 * Drop what a benchmark run left on the stack: its Redis keys (`PINRICH_REDIS_PREFIX`), its S3
 * objects (`PINRICH_S3_PREFIX`) and its Kafka topics (`PINRICH_TOPIC_PREFIX`). Without it every run kept its state: a full enrich run
 * leaves 50,000 pins' state in Redis (~0.5 GB) and ~0.5 GB of topics, and a dev stack reused for
 * a day of benchmarks held 4.8 GB in Redis, which slowed the later runs' Redis. BENCH_KEEP=1
 * keeps them (to inspect a run). Best effort: a failure is logged, not thrown.
 */
export async function dropRun(config: Config, log: (l: string) => void): Promise<void> {
  if (process.env.BENCH_KEEP === '1') return;
  const redis = createRedisFromConfig(config);
  const s3 = config.s3Prefix ? createS3(config) : undefined; // the run's objects (the dump's Parquet and manifests)
  try {
    await unlinkByPrefix(redis, config.redisKeyPrefix);
    if (s3) for await (const o of s3.list(config.s3Prefix)) await s3.delete(o.key);
    const admin = benchKafka(config).admin();
    await admin.connect();
    try {
      const topics = (await admin.listTopics()).filter((t) => t.startsWith(config.topicPrefix));
      if (topics.length) await admin.deleteTopics({ topics, timeout: 30_000 });
    } finally {
      await admin.disconnect();
    }
  } catch (err) {
    log(`bench: could not drop the run's keys, objects and topics (${String(err)}); BENCH_KEEP=1 skips this`);
  } finally {
    redis.disconnect();
    s3?.close();
  }
}

export function configOf(env: Record<string, string>): Config {
  return loadConfig(env);
}

export function benchKafka(config: Config): Kafka {
  return new Kafka({ clientId: 'pinrich-bench', brokers: [...config.kafkaBrokers], logLevel: logLevel.NOTHING });
}

export async function setupTopics(config: Config): Promise<Topics> {
  // createTopics waits (bounded) until every partition has a serving leader; a retry (which
  // creates nothing and waits again) is left for a broker that drops a connection meanwhile.
  for (let attempt = 1; ; attempt++) {
    try {
      await createTopics(benchKafka(config), config);
      return topicNames(config);
    } catch (err) {
      if (attempt >= 10) throw err;
      await new Promise((r) => setTimeout(r, 300 * attempt));
    }
  }
}

/** Create a plain topic (for Kafka's own tools and the client comparison). */
export async function createPlainTopic(config: Config, topic: string, partitions: number): Promise<void> {
  const admin = benchKafka(config).admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: false });
    // The same wait as createTopics: kafkajs' waitForLeaders may return before every leader serves.
    await waitForTopicLeaders(admin, [topic], { partitions: new Map([[topic, partitions]]) });
  } finally {
    await admin.disconnect();
  }
}

/**
 * Produce `count` records made by `make(i)`, each exactly once: batches of 5,000, four queued
 * at a time (this is backlog loading, not a measured figure). The producer is idempotent: right
 * after topic creation the broker may reject one partition of a request while writing the
 * others, and a plain producer's retry then wrote those others twice (phantom redeliveries that
 * change the counts a benchmark or the streams smoke test checks). The idempotent producer
 * retries under the same sequence numbers, which the broker deduplicates.
 */
export async function loadBacklog(
  config: Config,
  topic: string,
  count: number,
  make: (i: number) => Message,
  log?: (l: string) => void,
): Promise<{ ms: number; bytes: number }> {
  const producer = createProducer(benchKafka(config), { allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const started = Date.now();
  let bytes = 0;
  let next = 0;
  const BATCH = 5_000;
  const sendOne = async (): Promise<void> => {
    while (next < count) {
      const from = next;
      const to = Math.min(count, from + BATCH);
      next = to;
      const messages: Message[] = [];
      for (let i = from; i < to; i++) {
        const m = make(i);
        bytes += m.value ? (m.value as Buffer | string).length : 0;
        messages.push(m);
      }
      // No retry loop of our own: a resend would get new sequence numbers, so duplicates again.
      await producer.send({ topic, acks: -1, compression: CompressionTypes.None, messages });
      if (log && Math.floor(to / 200_000) !== Math.floor(from / 200_000)) log(`  loaded ${to.toLocaleString('en')} / ${count.toLocaleString('en')}`);
    }
  };
  try {
    await Promise.all([sendOne(), sendOne(), sendOne(), sendOne()]);
  } finally {
    await producer.disconnect();
  }
  return { ms: Date.now() - started, bytes };
}

/** Reads consumer-group lag with one long-lived admin connection. */
export interface LagProbe {
  /** Sum over partitions of (end offset - committed offset) of `groupId` on `topics`. */
  lag(groupId: string, topics: readonly string[]): Promise<number>;
  close(): Promise<void>;
}

export async function createLagProbe(config: Config): Promise<LagProbe> {
  const admin = benchKafka(config).admin();
  await admin.connect();
  return {
    async lag(groupId, topics) {
      let lag = 0;
      const committed = await admin.fetchOffsets({ groupId, topics: [...topics] });
      for (const t of committed) {
        const ends = await admin.fetchTopicOffsets(t.topic);
        for (const p of t.partitions) {
          const end = Number(ends.find((e) => e.partition === p.partition)?.high ?? 0);
          const at = Number(p.offset) < 0 ? 0 : Number(p.offset);
          lag += end - at;
        }
      }
      return lag;
    },
    close: () => admin.disconnect(),
  };
}

/** What the worker child reports over IPC. */
export interface ChildProgress {
  type: 'progress';
  at: number;
  records: number;
  rss: number;
  heapUsed: number;
  stats: Record<string, unknown> | undefined;
}

/** A pinrich worker running alone in a child process (bench/child.ts). */
export interface WorkerChild {
  pid: number;
  /** Epoch ms at which the worker had joined its group and was fetching. */
  readyAt: number;
  last(): ChildProgress | undefined;
  /** Peak RSS so far: the kernel's VmHWM of the child, bytes. */
  peakRss(): number;
  /** Graceful stop (finish in-flight work, commit, leave the group); resolves with the final stats. */
  stop(): Promise<{ stats: Record<string, unknown> | undefined; peakRss: number; peakAnon: number; profile?: ProfileLine[] }>;
}

/**
 * The kernel's VmHWM (peak RSS), VmRSS (RSS now) or RssAnon (of RSS now, what is not a mapped
 * file: heaps and native allocations) of process `pid`, bytes (0 once it is gone).
 */
export function procStatusBytes(pid: number, field: 'VmHWM' | 'VmRSS' | 'RssAnon'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Start `worker` in a child process with `env`; resolves once it has joined its group. */
export async function startWorkerChild(worker: WorkerName, env: Record<string, string>, opts: { profile?: boolean; profileName?: string } = {}): Promise<WorkerChild> {
  const profileDir = join(RESULTS_DIR, 'profiles', `${opts.profileName ?? worker}-${Date.now()}`);
  if (opts.profile) mkdirSync(profileDir, { recursive: true });
  const childEnv = { ...process.env, ...env };
  const child: ChildProcess = fork(join(BENCH_DIR, 'child.ts'), [worker], {
    env: childEnv,
    // The shipped heap settings (bin/heap.js), overridable as for users: PINRICH_HEAP_MB, or a
    // --max-old-space-size in NODE_OPTIONS.
    execArgv: ['--import', 'tsx', ...heapFlags(childEnv, [], ['run', worker]), ...(opts.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let last: ChildProgress | undefined;
  let peak = 0;
  // The kernel keeps no high-water mark of anonymous memory: sampled, so at most 100 ms late.
  let peakAnon = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, procStatusBytes(child.pid!, 'VmHWM'));
    peakAnon = Math.max(peakAnon, procStatusBytes(child.pid!, 'RssAnon'));
  }, 100);
  let stopped: ((v: { stats: Record<string, unknown> | undefined }) => void) | undefined;
  const readyAt = await new Promise<number>((resolve, reject) => {
    child.on('message', (m: { type: string; at?: number; stats?: Record<string, unknown> }) => {
      if (m.type === 'ready') resolve(m.at!);
      else if (m.type === 'progress') last = m as unknown as ChildProgress;
      else if (m.type === 'stopped') stopped?.({ stats: m.stats });
    });
    child.once('exit', (code) => reject(new Error(`${worker} child exited with ${code} before it was ready`)));
  });
  return {
    pid: child.pid!,
    readyAt,
    last: () => last,
    peakRss: () => Math.max(peak, procStatusBytes(child.pid!, 'VmHWM')),
    async stop() {
      peak = Math.max(peak, procStatusBytes(child.pid!, 'VmHWM'));
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      const final = new Promise<{ stats: Record<string, unknown> | undefined }>((r) => (stopped = r));
      child.send({ type: 'stop' });
      const res = await Promise.race([final, exited.then(() => ({ stats: last?.stats }))]);
      await exited;
      clearInterval(sampler);
      const profile = opts.profile ? summariseProfile(profileDir) : undefined;
      return { ...res, peakRss: peak, peakAnon, profile };
    },
  };
}

/** Poll until `done()` holds; returns the epoch ms at which it was first seen true. */
export async function waitUntil(what: string, done: () => Promise<boolean>, timeoutMs: number, everyMs = 100): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await done()) return Date.now();
    if (Date.now() > end) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface ProfileLine {
  selfPct: number;
  fn: string;
  where: string;
}

/** Top self-time functions of the .cpuprofile files in `dir` (V8's sampling profiler). */
export function summariseProfile(dir: string, top = 15): ProfileLine[] {
  const self = new Map<string, number>();
  let total = 0;
  let files: string[] = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return [];
  }
  for (const f of files) {
    const prof = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {
      nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }>;
    };
    for (const n of prof.nodes) {
      const hits = n.hitCount ?? 0;
      if (!hits) continue;
      const url = n.callFrame.url.replace(/^file:\/\//, '').replace(REPO_ROOT + '/', '');
      const key = `${n.callFrame.functionName || '(anonymous)'}\t${url}${url ? ':' + (n.callFrame.lineNumber + 1) : ''}`;
      self.set(key, (self.get(key) ?? 0) + hits);
      total += hits;
    }
  }
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, hits]) => {
      const [fn, where] = k.split('\t');
      return { selfPct: Math.round((hits / total) * 1000) / 10, fn: fn!, where: where ?? '' };
    });
}

export function machine(): Record<string, string | number> {
  return { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '?', memGiB: Math.round(totalmem() / 2 ** 30), node: process.version };
}

export const mb = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;
export const round = (n: number, digits = 0) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Parse the flags every sub-benchmark accepts when run on its own. */
export function parseFlags(argv: readonly string[]): { quick: boolean; profile: boolean; only: string[] } {
  const only: string[] = [];
  for (let i = 0; i < argv.length; i++) if (argv[i] === '--only' && argv[i + 1]) only.push(...argv[++i]!.split(','));
  return { quick: argv.includes('--quick'), profile: argv.includes('--profile'), only };
}

/** True when `metaUrl` is the module node was started with. */
export function isMain(metaUrl: string): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(metaUrl));
  } catch {
    return false;
  }
}

/** Run one sub-benchmark on its own: `tsx bench/<name>.ts [--quick] [--profile]`. */
export function standalone(metaUrl: string, run: (opts: BenchOptions) => Promise<BenchResult>): void {
  if (!isMain(metaUrl)) return;
  const flags = parseFlags(process.argv.slice(2));
  run({ quick: flags.quick, profile: flags.profile, log: (l) => process.stderr.write(l + '\n') }).then(
    (r) => {
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
