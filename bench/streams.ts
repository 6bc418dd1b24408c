/**
 * streams: the Kafka Streams peer of the enrich worker (bench/streams/, Java 17, kafka-streams of
 * the broker's Kafka version) on the same backlog as bench/enrich.ts — the same generator, the
 * same 1,000,000 engagement events (50,000 with --quick) over 50,000 pins, the same topic layout
 * — once with processing.guarantee=exactly_once_v2 and once with at_least_once, each on a fresh
 * application id (consumer group, changelog topics) and a fresh compacted output topic.
 *
 * Timed window, as bench/enrich.ts times enrich: from the first record the peer processes until
 * every input offset is committed (the application's group has no lag) and every task has run a
 * flush after its last record (every pin's document forwarded to the output topic). Under
 * exactly_once_v2 a forwarded document becomes visible at the next commit, at most one commit
 * interval later; enrich's window ends when its documents are acknowledged (acks=all).
 *
 * The peer is built on first use into ~/.cache/pinrich/streams-peer-<kafka version>-<hash>/
 * (Maven resolves the jars, javac compiles the one source file) and reused afterwards.
 *
 *   tsx bench/streams.ts [--quick]
 *
 * Settings (environment, for experiments): BENCH_STREAMS_THREADS (num.stream.threads, default
 * 2: one per core), BENCH_STREAMS_HEAP (-Xmx, default 512m), BENCH_STREAMS_CACHE_MB
 * (statestore.cache.max.bytes, default 64), BENCH_STREAMS_ROCKSDB_MB (RocksDB memory for the
 * whole process, default 64; 0 = Kafka Streams' per-store defaults), BENCH_ENRICH_EVENTS
 * (backlog size, as enrich),
 * BENCH_STREAMS_TRACE=1 (log the peer's progress lines and pass its stderr through),
 * BENCH_STREAMS_JVM_ARGS (extra JVM flags, e.g. a flight recording).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { waitForTopicLeaders } from '../src/adapters/kafka/admin.js';
import type { Config } from '../src/config.js';
import { benchEnv, dropRun, benchKafka, benchStack, BENCH_DIR, configOf, createLagProbe, figure, loadBacklog, mb, REPO_ROOT, round, setupTopics, standalone, type BenchOptions, type BenchResult } from './lib.js';
import { engagementMessage, pinEventMessage } from './data.js';

const PEER_DIR = join(BENCH_DIR, 'streams');
const PEER_POM = join(PEER_DIR, 'pom.xml');
const PEER_SOURCES = join(PEER_DIR, 'src', 'main', 'java');
const PEER_MAIN = 'dev.pinrich.bench.EnrichStreams';

/** A built peer: its classpath (the resolved jars and the compiled classes). */
export interface StreamsPeerBuild {
  kafkaVersion: string;
  dir: string;
  classpath: string;
}

function kafkaVersionOf(pomPath: string): string {
  const v = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(readFileSync(pomPath, 'utf8'))?.[1];
  if (!v) throw new Error(`${pomPath}: no <kafka.version> property`);
  return v;
}

function javaSources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...javaSources(p));
    else if (e.name.endsWith('.java')) out.push(p);
  }
  return out.sort();
}

/**
 * Where the build for the current pom and sources lives. The name holds a hash of both, so an
 * edit builds afresh instead of running stale classes.
 */
export function streamsPeerLocation(cacheRoot = process.env.PINRICH_CACHE_DIR || join(homedir(), '.cache', 'pinrich')): StreamsPeerBuild {
  const kafkaVersion = kafkaVersionOf(PEER_POM);
  const hash = createHash('sha256').update(readFileSync(PEER_POM));
  for (const f of javaSources(PEER_SOURCES)) hash.update(f.slice(PEER_SOURCES.length)).update(readFileSync(f));
  const dir = join(cacheRoot, `streams-peer-${kafkaVersion}-${hash.digest('hex').slice(0, 12)}`);
  return { kafkaVersion, dir, classpath: `${join(dir, 'classes')}:${join(dir, 'libs')}/*` };
}

function run(cmd: string, args: string[], what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (err) => reject(new Error(`streams peer: cannot run ${cmd} (${err.message}); it needs Java 17 and Maven (see .ci/run)`)));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`streams peer: ${what} failed (exit ${code}):\n${output.slice(-4000)}`))));
  });
}

/**
 * Builds the peer unless the cache already holds this version of it: Maven copies kafka-streams
 * and its runtime dependencies, javac compiles the sources. Both write into a private
 * `.partial-<pid>` directory renamed into place on success, so an interrupted or concurrent
 * build never leaves a half classpath behind.
 */
export async function ensureStreamsPeer(log: (l: string) => void): Promise<StreamsPeerBuild> {
  const broker = kafkaVersionOf(join(REPO_ROOT, 'deploy', 'kafka', 'pom.xml'));
  const build = streamsPeerLocation();
  if (build.kafkaVersion !== broker) {
    throw new Error(`streams peer: bench/streams/pom.xml has kafka.version ${build.kafkaVersion}, the broker (deploy/kafka/pom.xml) ${broker}; keep them equal`);
  }
  if (existsSync(build.dir)) return build;
  const partial = `${build.dir}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  log(`streams peer: not built yet; resolving kafka-streams ${build.kafkaVersion} with Maven and compiling into ${build.dir} (first run only)`);
  const started = Date.now();
  try {
    await run('mvn', ['-q', '-B', '-f', PEER_POM, 'dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${join(partial, 'libs')}`], 'mvn dependency:copy-dependencies');
    await run('javac', ['--release', '17', '-encoding', 'UTF-8', '-cp', `${join(partial, 'libs')}/*`, '-d', join(partial, 'classes'), ...javaSources(PEER_SOURCES)], 'javac');
    try {
      renameSync(partial, build.dir);
    } catch (err) {
      // A concurrent build finished first: use its (identical) result.
      if (!existsSync(build.dir)) throw err;
    }
  } finally {
    rmSync(partial, { recursive: true, force: true });
  }
  log(`streams peer: built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return build;
}

export type StreamsGuarantee = 'exactly_once_v2' | 'at_least_once';

/** One progress line of the peer (stdout, JSON, every 200 ms and once more after closing). */
export interface StreamsProgress {
  t: 'progress';
  at: number;
  state: string;
  firstAt: number;
  processed: number;
  duplicates: number;
  malformed: number;
  documents: number;
  tombstones: number;
  unchanged: number;
  tasks: number;
  /** Every input record processed and every task flushed after its last record. */
  flushed: boolean;
}

export interface StreamsRunOptions {
  config: Config;
  pinsTopic: string;
  engagementTopic: string;
  /** Created here: compacted, with the inputs' partition count. */
  outputTopic: string;
  applicationId: string;
  guarantee: StreamsGuarantee;
  /** Input records (pin events + engagement, duplicates included) the run must get through. */
  expectedRecords: number;
  threads?: number;
  commitIntervalMs?: number;
  cacheBytes?: number;
  /** RocksDB block cache + memtables for the whole JVM (0 = Kafka Streams' per-store defaults). */
  rocksDbBytes?: number;
  topK?: number;
  heap?: string;
  timeoutMs?: number;
  log: (l: string) => void;
}

export interface StreamsRunResult {
  /** Epoch ms: first record processed, input offsets all committed, every task flushed. */
  firstAt: number;
  consumedAt: number;
  flushedAt: number;
  doneAt: number;
  seconds: number;
  peakRss: number;
  /** CPU seconds (user + system) the JVM had used when the run was done: less load-sensitive than wall time. */
  cpuSeconds: number;
  final: StreamsProgress;
  settings: Record<string, string | number>;
}

/** utime + stime of a process, seconds (Linux clock ticks are 100 Hz). */
function cpuSecondsOf(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

function vmHwm(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function createCompactedTopic(config: Config, topic: string): Promise<void> {
  const admin = benchKafka(config).admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: [{ topic, numPartitions: config.topicPartitions, replicationFactor: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }],
      waitForLeaders: false,
    });
    // The same wait as createTopics: kafkajs' waitForLeaders may return before every leader serves.
    await waitForTopicLeaders(admin, [topic], { partitions: new Map([[topic, config.topicPartitions]]) });
  } finally {
    await admin.disconnect();
  }
}

/**
 * Runs the peer once over topics that already hold the input, until it has got through
 * `expectedRecords` (committed and flushed), then closes it cleanly. The JVM is a child process:
 * its peak RSS is the kernel's VmHWM for it.
 */
export async function runStreamsPeer(o: StreamsRunOptions): Promise<StreamsRunResult> {
  const build = await ensureStreamsPeer(o.log);
  await createCompactedTopic(o.config, o.outputTopic);
  const stateDir = mkdtempSync(join(tmpdir(), 'pinrich-streams-'));
  const settings = {
    guarantee: o.guarantee,
    'num.stream.threads': o.threads ?? 2,
    'commit.interval.ms': o.commitIntervalMs ?? o.config.enrichWindowMs,
    'statestore.cache.max.bytes': o.cacheBytes ?? 64 * 2 ** 20,
    store: 'RocksDB (persistent, cached, changelogged); dirty set in memory (changelogged)',
    rocksDbBytes: o.rocksDbBytes ?? 64 * 2 ** 20,
    topK: o.topK ?? o.config.enrichTopK,
    heap: o.heap ?? '512m',
    partitions: o.config.topicPartitions,
  };
  const args = [
    // BENCH_STREAMS_JVM_ARGS: extra JVM flags, e.g. a flight recording of the run
    // ("-XX:StartFlightRecording=filename=/tmp/peer.jfr"; read it with `jfr print`).
    ...(process.env.BENCH_STREAMS_JVM_ARGS?.split(' ').filter(Boolean) ?? []),
    `-Xmx${settings.heap}`,
    '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn',
    `-Dpinrich.rocksdb.bytes=${settings.rocksDbBytes}`,
    '-cp', build.classpath, PEER_MAIN,
    `bootstrap=${o.config.kafkaBrokers.join(',')}`,
    `app.id=${o.applicationId}`,
    `pins.topic=${o.pinsTopic}`,
    `engagement.topic=${o.engagementTopic}`,
    `output.topic=${o.outputTopic}`,
    `guarantee=${o.guarantee}`,
    `threads=${settings['num.stream.threads']}`,
    `commit.ms=${settings['commit.interval.ms']}`,
    `cache.bytes=${settings['statestore.cache.max.bytes']}`,
    `state.dir=${stateDir}`,
    `top.k=${settings.topK}`,
    `expected=${o.expectedRecords}`,
  ];
  const child = spawn('java', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-8000);
    if (process.env.BENCH_STREAMS_TRACE) process.stderr.write(d);
  });
  let last: StreamsProgress | undefined;
  let flushedAt = 0;
  let failure: string | undefined;
  createInterface({ input: child.stdout }).on('line', (line) => {
    let m: { t?: string; error?: string } & Partial<StreamsProgress>;
    try {
      m = JSON.parse(line) as typeof m;
    } catch {
      return;
    }
    if (m.t === 'progress') {
      // BENCH_STREAMS_TRACE=1: every progress line to the log, to see where a run spends its time.
      if (process.env.BENCH_STREAMS_TRACE) o.log(`streams peer: ${line}`);
      last = m as StreamsProgress;
      if (last.flushed && !flushedAt) flushedAt = last.at;
    } else if (m.t === 'error') failure = m.error;
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((r) => child.once('exit', (code) => ((exitCode = code), r())));
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, vmHwm(child.pid!))), 100);
  const probe = await createLagProbe(o.config);
  try {
    const deadline = Date.now() + (o.timeoutMs ?? 900_000);
    let consumedAt = 0;
    for (;;) {
      if (failure) throw new Error(`streams peer failed: ${failure}\n${stderr.slice(-3000)}`);
      if (exitCode !== undefined) throw new Error(`streams peer exited with ${exitCode} before it was done:\n${stderr.slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`streams peer: timed out; last progress ${JSON.stringify(last)}\n${stderr.slice(-3000)}`);
      if (last?.firstAt && !consumedAt && (await probe.lag(o.applicationId, [o.pinsTopic, o.engagementTopic])) === 0) consumedAt = Date.now();
      if (consumedAt && flushedAt) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    peak = Math.max(peak, vmHwm(child.pid!));
    const cpuSeconds = cpuSecondsOf(child.pid!);
    child.stdin.end();
    await Promise.race([exited, new Promise((r) => setTimeout(r, 90_000))]);
    if (exitCode === undefined) child.kill('SIGKILL');
    const firstAt = last!.firstAt;
    const doneAt = Math.max(consumedAt, flushedAt);
    return { firstAt, consumedAt, flushedAt, doneAt, seconds: (doneAt - firstAt) / 1000, peakRss: peak, cpuSeconds, final: last!, settings };
  } finally {
    clearInterval(sampler);
    if (exitCode === undefined) {
      child.kill('SIGKILL');
      await exited;
    }
    await probe.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
}

export async function runStreams(opts: BenchOptions): Promise<BenchResult> {
  const events = Number(process.env.BENCH_ENRICH_EVENTS ?? 0) || (opts.quick ? 50_000 : 1_000_000);
  const pins = opts.quick ? 5_000 : 50_000;
  const stack = await benchStack(opts.log);
  const env = benchEnv(stack);
  const config = configOf(env);
  try {
    await ensureStreamsPeer(opts.log);
    const t = await setupTopics(config);
    const runId = config.redisKeyPrefix.replace(/\W/g, '');
    opts.log(`streams: loading ${pins.toLocaleString('en')} pin events and ${events.toLocaleString('en')} engagement events (as bench/enrich.ts)`);
    await loadBacklog(config, t.pinEvents, pins, pinEventMessage);
    const load = await loadBacklog(config, t.engagement, events, (i) => engagementMessage(i, pins, runId), opts.log);
    const threads = Number(process.env.BENCH_STREAMS_THREADS ?? 2);
    const heap = process.env.BENCH_STREAMS_HEAP ?? '512m';
    const cacheBytes = Number(process.env.BENCH_STREAMS_CACHE_MB ?? 64) * 2 ** 20;
    const rocksDbBytes = Number(process.env.BENCH_STREAMS_ROCKSDB_MB ?? 64) * 2 ** 20;
    // A backlog is what enrich calls catching up, where it coalesces a pin's changes over
    // PINRICH_ENRICH_CATCHUP_WINDOW_MS instead of PINRICH_ENRICH_WINDOW_MS. The peer has no such
    // mode, so it coalesces over that longer window throughout: the same documents per event.
    const commitIntervalMs = Math.max(config.enrichWindowMs, config.enrichCatchUpWindowMs);
    const figures = [];
    const details: Record<string, unknown> = { loadMs: load.ms, recordBytes: Math.round(load.bytes / events) };
    for (const guarantee of ['exactly_once_v2', 'at_least_once'] as const) {
      const tag = guarantee === 'exactly_once_v2' ? 'eos' : 'alos';
      opts.log(`streams: ${guarantee} (fresh application id and output topic)`);
      const r = await runStreamsPeer({
        config,
        pinsTopic: t.pinEvents,
        engagementTopic: t.engagement,
        outputTopic: `${config.topicPrefix}streams-${tag}.enriched`,
        applicationId: `${config.groupPrefix}.streams-${tag}`,
        guarantee,
        expectedRecords: pins + events,
        threads,
        heap,
        cacheBytes,
        rocksDbBytes,
        commitIntervalMs,
        log: opts.log,
      });
      const settings = { events, pins, ...r.settings };
      const command = `tsx bench/streams.ts (java ${PEER_MAIN} guarantee=${guarantee})`;
      figures.push(
        figure({ name: `Kafka Streams ${guarantee} throughput`, value: round(events / r.seconds), unit: 'events/s', command, settings }),
        figure({ name: `Kafka Streams ${guarantee} peak RSS (JVM)`, value: mb(r.peakRss), unit: 'MB', command, settings }),
      );
      details[guarantee] = {
        seconds: round(r.seconds, 2),
        jvmCpuSeconds: round(r.cpuSeconds, 1),
        consumedAfterS: round((r.consumedAt - r.firstAt) / 1000, 2),
        flushedAfterS: round((r.flushedAt - r.firstAt) / 1000, 2),
        processed: r.final.processed,
        // More than the input: tasks replayed records after an aborted transaction or a lost task.
        replayed: r.final.processed - (pins + events),
        duplicates: r.final.duplicates,
        malformed: r.final.malformed,
        documents: r.final.documents,
        unchanged: r.final.unchanged,
      };
    }
    return { bench: 'streams', figures, details };
  } finally {
    await dropRun(config, opts.log);
  }
}

standalone(import.meta.url, runStreams);
