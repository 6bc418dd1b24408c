/**
 * The fault suite's machinery: the four workers as real child processes (`pinrich run <w>`), a
 * deterministic input, the run driven in two phases, what a run produced read back from Kafka
 * and S3, and the comparison with a clean run. Plus private services the suite may break
 * without disturbing anyone else on the shared stack: a Redis, a Kafka broker, and a TCP proxy
 * that can cut the S3 endpoint.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { DEFAULT_HEAP_MB } from '../../../bin/heap.js';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, Socket, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRedisFromConfig } from '../../../src/adapters/redis/client.js';
import { redisKeys } from '../../../src/adapters/redis/keys.js';
import { dlqTopic, loadConfig, topics as topicNames, type Config, type Topics } from '../../../src/config.js';
import { pairIdOf } from '../../../src/core/document.js';
import { foldText } from '../../../src/core/text.js';
import { createRandom, generateSample } from '../../../src/demo/sample.js';
import { stackEnv } from '../../../src/stack/index.js';
import { ensureKafkaJars, kafkaGroupCoordinatorReady, kafkaHealthy, startKafka } from '../../../src/stack/kafka.js';
import { commandLine, freePort, spawnDetached, stopGroup, waitUntil } from '../../../src/stack/process.js';
import { redisPing } from '../../../src/stack/redis.js';
import { clusterOk, clusterSeedUrls, spawnClusterNode, startClusterNodes, createCluster, type ClusterNode } from '../../../src/stack/redis-cluster.js';
import { caughtUp, produce, readToEnd, readUntil, setupTopics, stack, testKafka, waitFor, type Rec } from '../../support/harness.js';
import { readAllDumpObjects } from '../../support/labels.js';

export const REPO = fileURLToPath(new URL('../../..', import.meta.url));
export type WorkerName = 'caption' | 'enrich' | 'score' | 'dump';
export const WORKERS: readonly WorkerName[] = ['caption', 'enrich', 'score', 'dump'];

/** Env of one run: fresh prefixes, fast failure detection, small dump blocks. */
export function faultEnv(modelBaseUrl: string, over: Record<string, string> = {}): Record<string, string> {
  const id = randomUUID().slice(0, 8);
  return {
    ...stackEnv(stack()),
    PINRICH_TOPIC_PREFIX: `f-${id}.`,
    PINRICH_REDIS_PREFIX: `f-${id}:`,
    PINRICH_GROUP_PREFIX: `f-${id}`,
    PINRICH_S3_PREFIX: `f-${id}/`,
    PINRICH_TOPIC_PARTITIONS: '2',
    PINRICH_LOG_LEVEL: 'warn',
    PINRICH_METRICS_PORT: '0',
    PINRICH_KAFKA_SESSION_TIMEOUT_MS: '6000',
    PINRICH_VLM_BASE_URL: modelBaseUrl,
    PINRICH_TEACHER_BASE_URL: modelBaseUrl,
    PINRICH_MODEL_BACKOFF_BASE_MS: '50',
    PINRICH_MODEL_BACKOFF_MAX_MS: '500',
    PINRICH_MODEL_TIMEOUT_MS: '5000',
    PINRICH_ENRICH_WINDOW_MS: '200',
    PINRICH_DUMP_FLUSH_ROWS: '64',
    PINRICH_DUMP_FLUSH_AGE_MS: '500',
    ...over,
  };
}

// ---------------------------------------------------------------------------------------------
// Workers as child processes

export interface WorkerProc {
  name: WorkerName;
  child: ChildProcess;
  /** stderr so far (JSON log lines). */
  log(): string;
  exited: Promise<number | null>;
  /** Exit code/signal once exited; undefined while running. */
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

export function startWorkerProc(name: WorkerName, env: Record<string, string>): WorkerProc {
  // The heap flag given here, so bin/pinrich.js runs the worker in this very process instead of
  // relaunching node: SIGSTOP/SIGCONT (the zombie case) must reach the worker, not a launcher.
  const child = spawn(process.execPath, [`--max-old-space-size=${DEFAULT_HEAP_MB}`, 'bin/pinrich.js', 'run', name], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString('utf8');
    if (stderr.length > 4_000_000) stderr = stderr.slice(-2_000_000);
  });
  const proc: WorkerProc = {
    name,
    child,
    log: () => stderr,
    exited: new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        proc.exit = { code, signal };
        resolve(code);
      });
    }),
  };
  return proc;
}

/** The running worker processes of one run; `restart` replaces one (after a kill). */
export class Fleet {
  readonly procs = new Map<WorkerName, WorkerProc>();
  /** Every process ever started, with its log, for the secrets check and for debugging. */
  readonly history: WorkerProc[] = [];
  kills = 0;
  constructor(readonly env: Record<string, string>) {}

  start(names: readonly WorkerName[] = WORKERS): void {
    for (const n of names) {
      const p = startWorkerProc(n, this.env);
      this.procs.set(n, p);
      this.history.push(p);
    }
  }

  async kill(name: WorkerName, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.procs.get(name)!;
    p.child.kill(signal);
    await p.exited;
    if (signal === 'SIGKILL') this.kills++;
  }

  /** Workers that exited although nobody stopped them (a crash). */
  crashed(): WorkerProc[] {
    return [...this.procs.values(), ...this.extra].filter((p) => p.exit !== undefined);
  }

  /**
   * Instances beyond the first of a worker (scale-out): started with their own Kafka client id
   * (`<client id>-<tag>`), so the group's member list tells which instance owns which partitions.
   */
  readonly extra: WorkerProc[] = [];

  /** Start one more instance of `name`; `tag` names it in its Kafka client id. */
  add(name: WorkerName, tag: string): WorkerProc {
    const p = startWorkerProc(name, { ...this.env, PINRICH_KAFKA_CLIENT_ID: `${this.env.PINRICH_KAFKA_CLIENT_ID ?? 'pinrich'}-${tag}` });
    this.extra.push(p);
    this.history.push(p);
    return p;
  }

  /** Stop (SIGTERM: drains, leaves the group) or kill one extra instance; it is no longer expected to run. */
  async remove(p: WorkerProc, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const i = this.extra.indexOf(p);
    if (i >= 0) this.extra.splice(i, 1);
    p.child.kill(signal);
    await p.exited;
    if (signal === 'SIGKILL') this.kills++;
  }

  logs(): string {
    return this.history.map((p) => `--- ${p.name} ---\n${p.log()}`).join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all(
      [...this.procs.values(), ...this.extra].map(async (p) => {
        if (p.exit) return;
        p.child.kill('SIGTERM');
        const t = setTimeout(() => p.child.kill('SIGKILL'), 20_000);
        await p.exited;
        clearTimeout(t);
      }),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Input

export interface Input {
  pinEvents: Array<{ key: string; value: unknown }>;
  engagement: Array<{ key: string; value: unknown }>;
  pairs: Array<{ key: string; value: unknown }>;
}

const QUERIES = ['lemon pasta', 'easy dinner', 'tarte aux pommes', 'paella valenciana', 'apfelstrudel rezept', '抹茶 チーズケーキ', 'brigadeiro gourmet', 'tiramisù ricetta', 'living room ideas', 'fall outfits'];

/**
 * 100 pins (7 languages, re-pins, hostile URLs, updates, deletes, a few malformed records),
 * 5,000 engagement events (with redelivered duplicates), and 300 pairs on live pins.
 */
export function makeInput(seed = 11): Input {
  const sample = generateSample({ pins: 100, events: 5_000, seed });
  const r = createRandom(seed + 1);
  const live = new Set<string>();
  for (const e of sample.pinEvents) {
    const v = e.value as { type?: string; pin_id?: string };
    if (typeof v !== 'object' || Buffer.isBuffer(v) || !v.pin_id || !/^pin-\d{6}$/.test(v.pin_id)) continue; // not the malformed ones
    if (v.type === 'deleted') live.delete(v.pin_id);
    else live.add(v.pin_id);
  }
  const livePins = [...live].sort();
  const seen = new Set<string>();
  const pairs: Input['pairs'] = [];
  while (pairs.length < 300) {
    const pin = livePins[r.int(livePins.length)]!;
    const query = r.pick(QUERIES);
    const id = pairIdOf(pin, foldText(query));
    if (seen.has(id)) continue;
    seen.add(id);
    pairs.push({ key: pin, value: { schema: 'pair', schema_version: 1, pair_id: id, pin_id: pin, query, source: 'manual', language: 'und', created_at: '2026-11-28T12:00:00.000Z' } });
  }
  return { pinEvents: sample.pinEvents, engagement: sample.engagement, pairs };
}

/** Produce `records` in `chunks` pieces spread over `spreadMs`, so faults land mid-stream. */
export async function produceSpread(config: Config, topic: string, records: Array<{ key: string; value: unknown }>, chunks: number, spreadMs: number): Promise<void> {
  const size = Math.ceil(records.length / chunks);
  for (let i = 0; i < records.length; i += size) {
    // Upstream keeps producing through a broker restart; a chunk sent twice is a redelivery,
    // which the pipeline must absorb anyway.
    for (let attempt = 1; ; attempt++) {
      try {
        await produce(config, topic, records.slice(i, i + size));
        break;
      } catch (err) {
        if (attempt >= 30) throw err;
        await sleep(2_000);
      }
    }
    if (i + size < records.length) await sleep(spreadMs / chunks);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Progress

/** Shared with the integration tests (test/support/harness.ts). */
export { caughtUp };

/** Committed offsets of a group, "topic:partition" -> offset. */
export async function committedOffsets(config: Config, groupId: string, topic: string): Promise<Record<string, string>> {
  const admin = testKafka(config).admin();
  await admin.connect();
  try {
    const [c] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return Object.fromEntries(c!.partitions.map((p) => [`${topic}:${p.partition}`, p.offset]));
  } finally {
    await admin.disconnect();
  }
}

/** No pin waits for a flush. */
async function nothingDirty(config: Config): Promise<boolean> {
  const redis = createRedisFromConfig(config);
  try {
    for (let p = 0; p < config.topicPartitions; p++) if ((await redis.zcard(redisKeys(config.redisKeyPrefix).enrich.dirty(p))) > 0) return false;
    return (await redis.exists(redisKeys(config.redisKeyPrefix).enrich.stateMarker())) === 1;
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/** Phase 1 is done: captions for every pin event, enrich caught up and flushed. */
export async function waitPhase1(config: Config, fleet: Fleet, timeoutMs = 240_000): Promise<void> {
  const t = topicNames(config);
  const g = config.groupPrefix;
  await waitFor(
    'phase 1 (caption + enrich caught up, flushed)',
    async () => {
      assertNoCrash(fleet);
      return (await caughtUp(config, `${g}.caption`, [t.pinEvents])) && (await caughtUp(config, `${g}.enrich`, [t.pinEvents, t.engagement, t.captions])) && (await nothingDirty(config));
    },
    timeoutMs,
    500,
  ).catch((err: Error) => {
    throw timedOut(err.message, fleet);
  });
}

/** Phase 2 is done: every pair scored, every label in exactly one dump row. */
export async function waitPhase2(config: Config, fleet: Fleet, timeoutMs = 240_000): Promise<void> {
  const t = topicNames(config);
  const last: Record<string, unknown> = {};
  await waitFor(
    'phase 2 (score caught up, every label dumped once)',
    async () => {
      assertNoCrash(fleet);
      last.scoreCaughtUp = await caughtUp(config, `${config.groupPrefix}.score`, [t.pairs]);
      if (!last.scoreCaughtUp) return false;
      const labels = await readAll(config, t.labels).catch(() => undefined);
      if (!labels) return false;
      const rows = await dumpRows(config).catch(() => undefined);
      Object.assign(last, { labels: labels.length, rows: rows?.length, uniqueRows: rows && new Set(rows).size });
      return rows !== undefined && rows.length === labels.length && new Set(rows).size === labels.length;
    },
    timeoutMs,
    1_000,
  ).catch((err: Error) => {
    throw timedOut(`${err.message}; last seen ${JSON.stringify(last)}`, fleet);
  });
}

/** The error for a phase that did not finish: the logs' tail inline, all of them in a file. */
/**
 * Every worker's warnings and errors, one line per (process, message) with how often it was
 * logged: what a failed comparison prints, so a CI log tells what the workers went through.
 */
export function logDigest(fleet: Fleet): string {
  const lines: string[] = [];
  for (const [i, p] of fleet.history.entries()) {
    const counts = new Map<string, number>();
    for (const line of p.log().split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const entry = JSON.parse(line) as { level?: number | string; msg?: string; partition?: number };
        const level = typeof entry.level === 'number' ? entry.level : entry.level === 'error' ? 50 : entry.level === 'warn' ? 40 : 0;
        if (level < 40) continue;
        const what = `${entry.msg ?? '?'}${entry.partition === undefined ? '' : ` (partition ${entry.partition})`}`;
        counts.set(what, (counts.get(what) ?? 0) + 1);
      } catch {
        // a torn line
      }
    }
    for (const [what, n] of counts) lines.push(`${p.name}#${i}: ${n}x ${what.slice(0, 200)}`);
  }
  return lines.join('\n');
}

function timedOut(message: string, fleet: Fleet): Error {
  const file = join(mkdtempSync(join(tmpdir(), 'pinrich-fault-logs-')), 'workers.log');
  writeFileSync(file, fleet.logs());
  return new Error(`${message}\nevery worker's log: ${file}\n${fleet.logs().slice(-6_000)}`);
}

export function assertNoCrash(fleet: Fleet): void {
  const crashed = fleet.crashed();
  if (crashed.length) throw new Error(`worker(s) exited on their own: ${crashed.map((p) => `${p.name} ${JSON.stringify(p.exit)}`).join(', ')}\n${crashed.map((p) => p.log().slice(-3_000)).join('\n')}`);
}

// ---------------------------------------------------------------------------------------------
// Reading what a run produced

/** Every record of `topic`, from the beginning to its current end. */
export async function readAll(config: Config, topic: string): Promise<Rec[]> {
  return readToEnd(config, topic);
}

/** "partition:offset" of every row of every dump object. */
export async function dumpRows(config: Config): Promise<string[]> {
  const objects = await readAllDumpObjects(config);
  return objects.flatMap((o) => o.rows.map((r) => `${String(r.kafka_partition)}:${String(r.kafka_offset)}`));
}

export interface Outcome {
  /** pin -> document content without version/updated_at (null: tombstone). */
  docs: Map<string, string | null>;
  /** pair_id -> the distinct label contents seen for it (exactly one expected). */
  labels: Map<string, Set<string>>;
  labelRecords: number;
  /** Dump rows and whether each label record is in exactly one. */
  dump: { rows: number; unique: number; missing: number; extra: number };
  /** Distinct dead letters: "<topic without prefix>|<raw key>|<code>". */
  deadLetters: Set<string>;
  captionsFailed: Map<string, string>;
}

export async function collect(config: Config): Promise<Outcome> {
  const t = topicNames(config);
  const strip = (topic: string) => topic.slice(config.topicPrefix.length);
  const docs = new Map<string, string | null>();
  for (const r of await readAll(config, t.enriched)) {
    if (r.key === null) continue;
    if (r.value === null) docs.set(r.key, null);
    else {
      const { version: _v, updated_at: _u, ...content } = JSON.parse(r.value) as Record<string, unknown>;
      docs.set(r.key, JSON.stringify(content));
    }
  }
  const labelRecs = await readAll(config, t.labels);
  const labels = new Map<string, Set<string>>();
  for (const r of labelRecs) {
    const l = JSON.parse(r.value!) as Record<string, unknown> & { teacher: { prompt_hash: string } };
    const content = JSON.stringify([l.pin_id, l.query, l.language, l.label, l.distribution, l.expected_score, l.label_source, l.teacher.prompt_hash, l.doc_hash]);
    labels.set(l.pair_id as string, (labels.get(l.pair_id as string) ?? new Set()).add(content));
  }
  const rows = await dumpRows(config);
  const want = new Set(labelRecs.map((r) => `${r.partition}:${r.offset}`));
  const have = new Set(rows);
  const deadLetters = new Set<string>();
  for (const topic of Object.values(t) as string[]) {
    for (const r of await readAll(config, dlqTopic(topic))) {
      const d = JSON.parse(r.value!) as { source: { topic: string }; raw_key: string | null; error_code: string; reason: string };
      if (!d.reason) throw new Error(`dead letter without a reason: ${r.value}`);
      deadLetters.add(`${strip(d.source.topic)}|${d.raw_key}|${d.error_code}`);
    }
  }
  const captionsFailed = new Map<string, string>();
  for (const r of await readAll(config, t.captions)) {
    const c = JSON.parse(r.value!) as { pin_id: string; status: string; error_code: string | null };
    if (c.status === 'failed') captionsFailed.set(c.pin_id, c.error_code ?? '');
  }
  return {
    docs,
    labels,
    labelRecords: labelRecs.length,
    dump: { rows: rows.length, unique: have.size, missing: [...want].filter((k) => !have.has(k)).length, extra: [...have].filter((k) => !want.has(k)).length },
    deadLetters,
    captionsFailed,
  };
}

/** Differences between a faulted run and the clean run; empty when nothing was lost or let in. */
export function compare(clean: Outcome, run: Outcome): string[] {
  const diffs: string[] = [];
  const keys = new Set([...clean.docs.keys(), ...run.docs.keys()]);
  for (const k of keys) {
    if (clean.docs.get(k) !== run.docs.get(k)) diffs.push(`document of ${k} differs:\n  clean ${clean.docs.get(k)}\n  run   ${run.docs.get(k)}`);
  }
  for (const [pair, contents] of run.labels) if (contents.size !== 1) diffs.push(`pair ${pair} has ${contents.size} different labels`);
  const pairs = new Set([...clean.labels.keys(), ...run.labels.keys()]);
  for (const p of pairs) {
    const a = [...(clean.labels.get(p) ?? [])][0];
    const b = [...(run.labels.get(p) ?? [])][0];
    if (a !== b) diffs.push(`label of pair ${p} differs:\n  clean ${a}\n  run   ${b}`);
  }
  const d = run.dump;
  if (d.rows !== d.unique || d.missing || d.extra || d.unique !== run.labelRecords) diffs.push(`dump rows: ${JSON.stringify(d)} for ${run.labelRecords} label records`);
  for (const x of run.deadLetters) if (!clean.deadLetters.has(x)) diffs.push(`extra dead letter ${x}`);
  for (const x of clean.deadLetters) if (!run.deadLetters.has(x)) diffs.push(`missing dead letter ${x}`);
  for (const [pin, code] of run.captionsFailed) if (clean.captionsFailed.get(pin) !== code) diffs.push(`caption of ${pin} failed with ${code}`);
  return diffs.slice(0, 30);
}

// ---------------------------------------------------------------------------------------------
// A whole run

export interface RunHooks {
  /** Runs after the topics exist, before the workers start. */
  beforeStart?: (ctx: { config: Config }) => Promise<void>;
  /** Runs concurrently with phase 1 production (pins + engagement) until it resolves. */
  phase1?: (ctx: { config: Config; fleet: Fleet }) => Promise<void>;
  phase2?: (ctx: { config: Config; fleet: Fleet }) => Promise<void>;
  /**
   * How long phase 1's engagement is spread over (default 6 s). A fault that needs records still
   * arriving after it struck (a zombie's partitions must get later records meanwhile) asks for
   * longer: on a slow machine the workers it starts can take most of 6 s just to join.
   */
  engagementSpreadMs?: number;
}

/**
 * One run of the whole pipeline on `input`: topics, four worker processes, phase 1 (pin events
 * and engagement, streamed; captions and documents), then phase 2 (pairs, streamed; labels and
 * dumps). Hooks inject faults during each phase. Returns what the run produced.
 */
export async function runPipeline(env: Record<string, string>, input: Input, hooks: RunHooks = {}): Promise<{ outcome: Outcome; fleet: Fleet; config: Config; ms: number }> {
  const started = Date.now();
  const config = loadConfig(env);
  const t: Topics = await setupTopics(config);
  await hooks.beforeStart?.({ config });
  const fleet = new Fleet(env);
  fleet.start();
  try {
    await Promise.all([
      (async () => {
        await produceSpread(config, t.pinEvents, input.pinEvents, 4, 2_000);
        await produceSpread(config, t.engagement, input.engagement, 10, hooks.engagementSpreadMs ?? 6_000);
      })(),
      hooks.phase1?.({ config, fleet }),
    ]);
    await waitPhase1(config, fleet);
    await Promise.all([produceSpread(config, t.pairs, input.pairs, 10, 6_000), hooks.phase2?.({ config, fleet })]);
    await waitPhase2(config, fleet);
    assertNoCrash(fleet);
    const outcome = await collect(config);
    return { outcome, fleet, config, ms: Date.now() - started };
  } finally {
    await fleet.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Private services

export interface PrivateRedis {
  url: string;
  /** Stop it (its data is gone: no persistence) and start it again on the same port. */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startPrivateRedis(extraArgs: string[] = []): Promise<PrivateRedis> {
  const dir = mkdtempSync(join(tmpdir(), 'pinrich-fault-redis-'));
  const port = await freePort();
  const logFile = join(dir, 'redis.log');
  // The stack launcher's settings (no persistence), plus `extraArgs` (e.g. --requirepass). Kept
  // here because redis-server rewrites its argv: /proc/<pid>/cmdline cannot give them back.
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, ...extraArgs];
  const spawnIt = () => spawnDetached({ command: 'redis-server', args, logFile });
  let pid = spawnIt();
  const pw = extraArgs.includes('--requirepass') ? extraArgs[extraArgs.indexOf('--requirepass') + 1] : undefined;
  const url = pw ? `redis://:${encodeURIComponent(pw)}@127.0.0.1:${port}` : `redis://127.0.0.1:${port}`;
  await waitUntil('private redis', () => redisPing(url), { timeoutMs: 15_000, intervalMs: 100 });
  return {
    url,
    async restart(downMs = 0) {
      await stopGroup(pid, 5_000);
      await sleep(downMs);
      pid = spawnIt();
      await waitUntil('private redis restart', () => redisPing(url), { timeoutMs: 15_000, intervalMs: 100 });
    },
    async stop() {
      await stopGroup(pid, 5_000);
    },
  };
}

/** A private 3-master Redis Cluster (the stack launcher's nodes) whose masters a case may restart. */
export interface PrivateRedisCluster {
  /** Seed URLs, as PINRICH_REDIS_URL takes them with PINRICH_REDIS_CLUSTER=true. */
  urls: string[];
  nodes: ClusterNode[];
  /**
   * Stop node `i` (SIGTERM) and start it again on the same port with its nodes.conf but no data
   * (no persistence): a master restarted empty, still owning its slots. Waits for
   * cluster_state:ok on every node.
   */
  restart(i: number, downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startPrivateRedisCluster(): Promise<PrivateRedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'pinrich-fault-redis-cluster-'));
  const nodes = await startClusterNodes(dir);
  const ports = nodes.map((n) => n.port);
  await createCluster(ports);
  return {
    urls: clusterSeedUrls(ports),
    nodes,
    async restart(i, downMs = 0) {
      const n = nodes[i]!;
      await stopGroup(n.pid, 5_000);
      await sleep(downMs);
      nodes[i] = spawnClusterNode(n.dir, n.port);
      await waitUntil('private redis cluster node restart', () => clusterOk(ports), { timeoutMs: 30_000, intervalMs: 100 });
    },
    async stop() {
      await Promise.all(nodes.map((n) => stopGroup(n.pid, 5_000)));
    },
  };
}

/** Env overrides that point a run at a Redis Cluster. */
export function clusterRedisEnv(urls: readonly string[]): Record<string, string> {
  return { PINRICH_REDIS_URL: urls.join(','), PINRICH_REDIS_CLUSTER: 'true' };
}

/**
 * Pins whose document version went backwards on `pins.enriched` (in offset order, tombstones
 * skipped): a zombie that published from stale state would show here. The same version twice
 * is an at-least-once re-publish of one document, not a step back.
 */
export function versionsGoingBack(records: readonly Rec[]): string[] {
  const last = new Map<string, number>();
  const back: string[] = [];
  const ordered = [...records].sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
  for (const r of ordered) {
    if (r.key === null || r.value === null) continue;
    const v = Number((JSON.parse(r.value) as { version: number }).version);
    const prev = last.get(r.key);
    if (prev !== undefined && v < prev) back.push(`${r.key}: version ${prev} then ${v} (partition ${r.partition} offset ${r.offset})`);
    last.set(r.key, Math.max(v, prev ?? v));
  }
  return back;
}

export interface PrivateKafka {
  brokers: string[];
  /** SIGTERM the broker, then start it again on the same port and data directory. */
  restart(): Promise<void>;
  /** SIGTERM the broker (until `up`). */
  down(): Promise<void>;
  /** Start it again on the same port and data directory, and wait until it serves groups. */
  up(): Promise<void>;
  stop(): Promise<void>;
}

export async function startPrivateKafka(): Promise<PrivateKafka> {
  const dir = mkdtempSync(join(tmpdir(), 'pinrich-fault-kafka-'));
  const cacheRoot = process.env.PINRICH_CACHE_DIR || join(process.env.HOME ?? tmpdir(), '.cache', 'pinrich');
  const jars = await ensureKafkaJars(join(REPO, 'deploy', 'kafka', 'pom.xml'), cacheRoot, () => {});
  const started = await startKafka(join(dir, 'kafka'), jars);
  const { layout } = started;
  let { pid } = started;
  // The broker's command line (and thus its port and data directory), to start it again.
  const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  const brokers = [`127.0.0.1:${layout.port}`];
  const ready = async (what: string) => {
    await waitUntil(what, () => kafkaHealthy(brokers), { timeoutMs: 120_000, intervalMs: 500 });
    await waitUntil(`${what} (group coordinator)`, () => kafkaGroupCoordinatorReady(brokers), { timeoutMs: 120_000, intervalMs: 200 });
  };
  await ready('private kafka');
  const down = async () => {
    await stopGroup(pid, 15_000);
  };
  const up = async () => {
    pid = spawnDetached({ command: cmd[0]!, args: cmd.slice(1), logFile: layout.logFile });
    await ready('private kafka up');
  };
  return {
    brokers,
    down,
    up,
    async restart() {
      if (!commandLine(pid)) throw new Error('private kafka is not running');
      await down();
      await up();
    },
    stop: down,
  };
}

/** A TCP proxy to `target` that can be cut (connections refused, open ones reset) and restored. */
export interface CuttableProxy {
  url: string;
  cut(): Promise<void>;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startProxy(targetUrl: string): Promise<CuttableProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = createServer((client) => {
        const upstream = new Socket();
        sockets.add(client).add(upstream);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
        upstream.connect(Number(target.port), target.hostname, () => {
          client.pipe(upstream).pipe(client);
        });
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = (server!.address() as { port: number }).port;
        resolve();
      });
    });
  const cut = async () => {
    const s = server;
    server = undefined;
    for (const so of sockets) so.destroy();
    sockets.clear();
    if (s) await new Promise<void>((r) => s.close(() => r()));
  };
  await listen();
  return { url: `http://127.0.0.1:${port}`, cut, restore: listen, close: cut };
}
