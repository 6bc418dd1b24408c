/**
 * The local service stack: Kafka (KRaft), Redis and an S3-compatible server, started as
 * plain processes on free ports so tests, the demo and CI need no Docker.
 *
 * Lifecycle. `stackUp` starts each service detached (its own process group) and records
 * pids and ports in `<dir>/state.json`, so the stack outlives the process that started it:
 * `pinrich stack up`, then later `pinrich demo` or `npm test`, reuse the same services.
 * A later `stackUp` reuses the recorded stack only if every service in it passes its health
 * check; otherwise it stops whatever is left and starts everything fresh (data is wiped: it
 * is a dev stack). `stackDown` stops the recorded process groups and removes the state file.
 *
 * External services. When PINRICH_KAFKA_BROKERS, PINRICH_REDIS_URL or PINRICH_S3_ENDPOINT is
 * set, that service is not started; its endpoint is health-checked and returned as is.
 *
 * Testcontainers. Only with PINRICH_STACK=testcontainers (see testcontainers.ts); those
 * containers live as long as the calling process, not across CLI invocations.
 *
 * First use. A fresh start installs what the services run on when it is missing
 * (redis-server, Java 17+, Maven; install.ts) and resolves the Kafka jars (kafka.ts).
 *
 * Add-ons. The Redis Cluster and the stand-in model server are added to a running stack
 * that lacks them instead of restarting it: other processes may be using the stack.
 *
 * The stack as configuration. {@link localStackOverlay} turns the recorded stack into PINRICH_*
 * variables for the CLI, for whatever the environment leaves unset.
 *
 * This module reads its environment variables in {@link readStackEnv} only; it is dev tooling
 * beside the app's own config (src/config.ts), which consumes the variables {@link stackEnv}
 * produces.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ensureKafkaJars,
  externalKafkaReachable,
  kafkaGroupCoordinatorReady,
  kafkaHealthy,
  KAFKA_MARKER,
  kafkaJarsLocation,
  startKafka,
} from './kafka.js';
import { ensureSystemTools, JAVA_17, MAVEN, REDIS_CLI, REDIS_SERVER, type SystemTool } from './install.js';
import { isOurProcess, logTail, stopGroup, waitUntil, withFileLock } from './process.js';
import { REDIS_MARKER, redisPing, startRedis } from './redis.js';
import { clusterOk, clusterSeedUrls, createCluster, REDIS_CLUSTER_MARKER, startClusterNodes } from './redis-cluster.js';
import { s3BucketHealthy, s3Reachable, S3_MARKER, startS3 } from './s3.js';
import { MODEL_MARKER, modelBaseUrl, modelHealthy, startModelStandIn } from './model.js';

/** Where each service can be reached. Everything a client needs to connect. */
export interface StackEndpoints {
  /** host:port pairs, e.g. ["127.0.0.1:39092"]. */
  kafkaBrokers: string[];
  /** e.g. "redis://127.0.0.1:36379". */
  redisUrl: string;
  /**
   * Seed-node URLs of the local 3-master Redis Cluster, when the stack runs one (see
   * {@link StackOptions.redisCluster}); point pinrich at it with {@link stackClusterEnv}.
   */
  redisCluster?: string[];
  /** Path-style S3 endpoint and credentials (s3rver accepts any key; we use S3RVER/S3RVER). */
  s3: { endpoint: string; bucket: string; region: string; accessKeyId: string; secretAccessKey: string };
  /**
   * Base URL of pinrich's stand-in model server, when the stack runs one (test data, not real
   * captions or labels; the CLI uses it when PINRICH_VLM_BASE_URL / PINRICH_TEACHER_BASE_URL are unset).
   */
  modelStandIn?: string;
  /** True when this call started at least one service (so the caller may want to stop it); false when reused or external. */
  startedByUs: boolean;
}

/** Options shared by {@link stackUp}, {@link stackDown} and {@link stackStatus}. */
export interface StackOptions {
  /** Stack directory holding state.json, configs, data and logs. Default $PINRICH_STACK_DIR or ~/.cache/pinrich/stack. */
  dir?: string;
  /** Progress lines (which service starts, how long it took). Default: silent. */
  log?: (line: string) => void;
  /**
   * Also run a local 3-master Redis Cluster (src/stack/redis-cluster.ts) beside the single
   * Redis. Default $PINRICH_STACK_REDIS_CLUSTER=1. Added to a running stack without restarting it.
   */
  redisCluster?: boolean;
}

/** One row of {@link stackStatus}. `pid` is absent for external services and containers. */
export interface StackServiceStatus {
  name: string;
  pid?: number;
  port?: number;
  healthy: boolean;
}

type ServiceName = 'kafka' | 'redis' | 's3' | 'redis-cluster' | 'model';

/** A service we started, as recorded in state.json. */
interface LocalService {
  name: ServiceName;
  pid: number;
  port: number;
  /** Substring of the process's command line; checked before signalling a recorded pid. */
  marker: string;
  logFile: string;
}

interface StateFile {
  version: 1;
  /** False while services are still starting: such a stack is never reused, only cleaned up. */
  complete: boolean;
  createdAt: string;
  services: LocalService[];
  bucket: string;
}

/** Everything this module takes from the environment, read once per call. */
interface StackEnv {
  dir: string;
  cacheRoot: string;
  repoRoot: string;
  mode: 'local' | 'testcontainers';
  redisCluster: boolean;
  external: { kafkaBrokers?: string[]; redisUrl?: string; s3Endpoint?: string };
  bucket: string;
  region: string;
  s3AccessKeyId: string;
  s3SecretAccessKey: string;
}

const HEALTH_TIMEOUT_MS: Record<ServiceName, number> = { kafka: 120_000, redis: 15_000, s3: 30_000, 'redis-cluster': 30_000, model: 30_000 };
const STOP_GRACE_MS = 10_000;
const LOCK_WAIT_MS = 5 * 60_000; // a first run may resolve the Kafka jars with Maven meanwhile
const S3RVER_KEY = 'S3RVER';

/** The repository root: the nearest ancestor of this module holding deploy/kafka/pom.xml. */
function findRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'deploy', 'kafka', 'pom.xml'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('stack: cannot find deploy/kafka/pom.xml above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

function readStackEnv(opts: StackOptions): StackEnv {
  const env = process.env;
  const cacheRoot = env.PINRICH_CACHE_DIR || join(homedir(), '.cache', 'pinrich');
  const brokers = env.PINRICH_KAFKA_BROKERS?.split(',').map((b) => b.trim()).filter(Boolean);
  return {
    dir: resolve(opts.dir ?? (env.PINRICH_STACK_DIR || join(cacheRoot, 'stack'))),
    cacheRoot,
    repoRoot: findRepoRoot(),
    mode: env.PINRICH_STACK === 'testcontainers' ? 'testcontainers' : 'local',
    redisCluster: opts.redisCluster ?? env.PINRICH_STACK_REDIS_CLUSTER === '1',
    external: {
      kafkaBrokers: brokers && brokers.length > 0 ? brokers : undefined,
      redisUrl: env.PINRICH_REDIS_URL || undefined,
      s3Endpoint: env.PINRICH_S3_ENDPOINT || undefined,
    },
    bucket: env.PINRICH_S3_BUCKET || 'pinrich',
    region: env.PINRICH_S3_REGION || 'us-east-1',
    // Only used for an external S3 endpoint; our s3rver gets S3RVER/S3RVER.
    s3AccessKeyId: env.PINRICH_S3_ACCESS_KEY_ID || env.AWS_ACCESS_KEY_ID || S3RVER_KEY,
    s3SecretAccessKey: env.PINRICH_S3_SECRET_ACCESS_KEY || env.AWS_SECRET_ACCESS_KEY || S3RVER_KEY,
  };
}

/** The services this environment asks us to run locally (those without an external endpoint). */
function wantedLocal(env: StackEnv): ServiceName[] {
  const names: ServiceName[] = [];
  if (!env.external.kafkaBrokers) names.push('kafka');
  if (!env.external.redisUrl) names.push('redis');
  if (!env.external.s3Endpoint) names.push('s3');
  if (env.redisCluster) names.push('redis-cluster');
  return names;
}

// ---------------------------------------------------------------------------------------------
// State file and lock

function statePath(dir: string): string {
  return join(dir, 'state.json');
}

function readState(dir: string): StateFile | undefined {
  try {
    const parsed = JSON.parse(readFileSync(statePath(dir), 'utf8')) as StateFile;
    return parsed.version === 1 && Array.isArray(parsed.services) ? parsed : undefined;
  } catch {
    return undefined; // absent or half-written: treated as "no stack"
  }
}

/** Written via rename so a concurrent reader never sees a half-written file. */
function writeState(dir: string, state: StateFile): void {
  const tmp = `${statePath(dir)}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n');
  renameSync(tmp, statePath(dir));
}

/** Serialises stackUp/stackDown on one stack dir across processes (see {@link withFileLock}). */
function withLock<T>(dir: string, log: (l: string) => void, fn: () => Promise<T>): Promise<T> {
  return withFileLock(dir, LOCK_WAIT_MS, log, fn);
}

// ---------------------------------------------------------------------------------------------
// Health

function localEndpoint(s: LocalService): string {
  switch (s.name) {
    case 'kafka':
      return `127.0.0.1:${s.port}`;
    case 'redis':
    case 'redis-cluster':
      return `redis://127.0.0.1:${s.port}`;
    case 's3':
      return `http://127.0.0.1:${s.port}`;
    case 'model':
      return modelBaseUrl(s.port);
  }
}

/** A recorded service is healthy if its pid is still our process and it answers its protocol. */
async function localHealthy(s: LocalService, bucket: string): Promise<boolean> {
  if (!isOurProcess(s.pid, s.marker)) return false;
  try {
    switch (s.name) {
      case 'kafka':
        return await kafkaHealthy([localEndpoint(s)]);
      case 'redis':
        return await redisPing(localEndpoint(s));
      case 'redis-cluster':
        return await clusterOk([s.port]);
      case 's3':
        return await s3BucketHealthy(localEndpoint(s), bucket);
      case 'model':
        return await modelHealthy(localEndpoint(s));
    }
  } catch {
    return false; // a failed check is an answer, "unhealthy"; the caller restarts or reports it
  }
}

async function externalHealth(env: StackEnv): Promise<StackServiceStatus[]> {
  const rows: StackServiceStatus[] = [];
  const { kafkaBrokers, redisUrl, s3Endpoint } = env.external;
  if (kafkaBrokers) rows.push({ name: 'kafka (external)', healthy: await externalKafkaReachable(kafkaBrokers) });
  if (redisUrl) rows.push({ name: 'redis (external)', healthy: await redisPing(redisUrl) });
  if (s3Endpoint) rows.push({ name: 's3 (external)', healthy: await s3Reachable(s3Endpoint) });
  return rows;
}

function endpointsFor(env: StackEnv, services: LocalService[], bucket: string, startedByUs: boolean): StackEndpoints {
  const find = (name: ServiceName) => services.find((s) => s.name === name);
  const kafka = find('kafka');
  const redis = find('redis');
  const s3 = find('s3');
  const clusterNodes = services.filter((s) => s.name === 'redis-cluster');
  const local = (name: string): never => {
    throw new Error(`stack: no ${name} endpoint (neither started locally nor configured externally)`);
  };
  return {
    kafkaBrokers: env.external.kafkaBrokers ?? (kafka ? [localEndpoint(kafka)] : local('kafka')),
    redisUrl: env.external.redisUrl ?? (redis ? localEndpoint(redis) : local('redis')),
    ...(clusterNodes.length > 0 ? { redisCluster: clusterSeedUrls(clusterNodes.map((s) => s.port)) } : {}),
    ...(find('model') ? { modelStandIn: localEndpoint(find('model')!) } : {}),
    s3: env.external.s3Endpoint
      ? {
          endpoint: env.external.s3Endpoint,
          bucket: env.bucket,
          region: env.region,
          accessKeyId: env.s3AccessKeyId,
          secretAccessKey: env.s3SecretAccessKey,
        }
      : {
          endpoint: s3 ? localEndpoint(s3) : local('s3'),
          bucket,
          region: env.region,
          accessKeyId: S3RVER_KEY,
          secretAccessKey: S3RVER_KEY,
        },
    startedByUs,
  };
}

// ---------------------------------------------------------------------------------------------
// Start and stop

async function stopRecorded(state: StateFile, log: (l: string) => void): Promise<void> {
  // Reverse start order; Kafka (slowest to stop) first would not matter, but be predictable.
  await Promise.all(
    [...state.services].reverse().map(async (s) => {
      // Never signal a pid that has been reused by some other program since it was recorded.
      if (!isOurProcess(s.pid, s.marker)) return;
      const how = await stopGroup(s.pid, STOP_GRACE_MS);
      log(`stack: ${s.name} (pid ${s.pid}) ${how === 'killed' ? 'did not stop on SIGTERM; killed' : 'stopped'}`);
    }),
  );
}

/**
 * Waits for one freshly spawned service, failing fast (with its log tail) if it dies. For
 * Kafka, "ready" also means the group coordinator is loaded (see kafkaGroupCoordinatorReady).
 */
async function awaitHealthy(s: LocalService, bucket: string, log: (l: string) => void): Promise<void> {
  const seconds = (since: number) => ((Date.now() - since) / 1000).toFixed(1);
  // A zombie (dead, not yet reaped) has an empty command line, so this also catches that.
  const abortIf = () => (isOurProcess(s.pid, s.marker) ? undefined : `process ${s.pid} exited`);
  const started = Date.now();
  try {
    await waitUntil(`stack: ${s.name} on port ${s.port}`, () => localHealthy(s, bucket), {
      timeoutMs: HEALTH_TIMEOUT_MS[s.name],
      intervalMs: s.name === 'kafka' ? 500 : 100,
      abortIf,
    });
    log(`stack: ${s.name} healthy on port ${s.port} after ${seconds(started)} s`);
    if (s.name === 'kafka') {
      const t0 = Date.now();
      await waitUntil(
        `stack: kafka group coordinator on port ${s.port}`,
        () => kafkaGroupCoordinatorReady([localEndpoint(s)]),
        { timeoutMs: HEALTH_TIMEOUT_MS.kafka, intervalMs: 200, abortIf },
      );
      log(`stack: kafka group coordinator ready after ${seconds(t0)} s more`);
    }
  } catch (err) {
    const tail = logTail(s.logFile);
    throw new Error(`${(err as Error).message}\n--- last lines of ${s.logFile} ---\n${tail || '(empty)'}`, {
      cause: err,
    });
  }
}

async function startFresh(env: StackEnv, names: ServiceName[], log: (l: string) => void): Promise<StateFile> {
  const state: StateFile = {
    version: 1,
    complete: false,
    createdAt: new Date().toISOString(),
    services: [],
    bucket: env.bucket,
  };
  // Recorded as each process spawns, so a crash mid-start leaves a state file that the next
  // stackUp/stackDown uses to clean up, instead of orphans nobody knows about.
  const record = (s: LocalService) => {
    state.services.push(s);
    writeState(env.dir, state);
    return s;
  };
  // What the services run on, installed on first use (one apt-get run for all of them).
  const pom = join(env.repoRoot, 'deploy', 'kafka', 'pom.xml');
  const tools: SystemTool[] = [];
  if (names.includes('redis') || names.includes('redis-cluster')) tools.push(REDIS_SERVER, REDIS_CLI);
  if (names.includes('kafka')) {
    tools.push(JAVA_17);
    if (!existsSync(kafkaJarsLocation(pom, env.cacheRoot).libsDir)) tools.push(MAVEN);
  }
  await ensureSystemTools(tools, { log, lockDir: env.cacheRoot });

  const starting: Array<Promise<LocalService>> = [];
  if (names.includes('redis')) {
    log('stack: starting redis-server');
    starting.push(
      startRedis(join(env.dir, 'redis')).then((r) => record({ name: 'redis', marker: REDIS_MARKER, ...r })),
    );
  }
  if (names.includes('s3')) {
    log(`stack: starting s3rver (bucket ${env.bucket})`);
    starting.push(startS3(join(env.dir, 's3'), env.bucket).then((r) => record({ name: 's3', marker: S3_MARKER, ...r })));
  }
  if (names.includes('kafka')) {
    starting.push(
      (async () => {
        const jars = await ensureKafkaJars(pom, env.cacheRoot, log);
        log(`stack: starting Kafka ${jars.kafkaVersion} (KRaft, broker+controller)`);
        const t0 = Date.now();
        const { pid, layout } = await startKafka(join(env.dir, 'kafka'), jars);
        log(`stack: kafka storage formatted and broker spawned in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        return record({ name: 'kafka', pid, port: layout.port, marker: KAFKA_MARKER, logFile: layout.logFile });
      })(),
    );
  }
  try {
    // Start everything, then wait for everything: Redis and s3rver are ready while Kafka boots.
    const results = await Promise.allSettled([
      ...starting.map((p) => p.then((s) => awaitHealthy(s, env.bucket, log))),
      ...(names.includes('redis-cluster') ? [startClusterService(env, record, log)] : []),
    ]);
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
    if (failures.length > 0) {
      throw new Error(failures.map((e) => e.message).join('\n\n'), { cause: failures[0] });
    }
  } catch (err) {
    log('stack: start failed; stopping what did start');
    await stopRecorded(state, log);
    rmSync(statePath(env.dir), { force: true });
    throw err;
  }
  state.complete = true;
  writeState(env.dir, state);
  await ensureModelStandIn(env, state, log);
  return state;
}

/**
 * The stand-in model server, an optional add-on: started beside a new stack and added to a
 * running one that lacks it (or whose stand-in died), without touching the other services.
 * It is a convenience (`pinrich run all` without model settings), so a failure to start it
 * is reported and the stack is used without it.
 */
async function ensureModelStandIn(env: StackEnv, state: StateFile, log: (l: string) => void): Promise<void> {
  const existing = state.services.filter((s) => s.name === 'model');
  if (existing.length === 1 && (await localHealthy(existing[0]!, state.bucket))) return;
  const drop = async (services: LocalService[]) => {
    await stopRecorded({ ...state, services }, log);
    state.services = state.services.filter((s) => !services.includes(s));
    writeState(env.dir, state);
  };
  if (existing.length > 0) await drop(existing);
  log("stack: starting pinrich's stand-in model server (OpenAI-compatible; test data, not real captions or labels)");
  let service: LocalService | undefined;
  try {
    const r = await startModelStandIn(join(env.dir, 'model'));
    service = { name: 'model', marker: MODEL_MARKER, ...r };
    state.services.push(service);
    writeState(env.dir, state);
    await awaitHealthy(service, state.bucket, log);
  } catch (err) {
    log(`stack: the stand-in model server did not start; the stack runs without it: ${(err as Error).message.split('\n')[0]}`);
    if (service) await drop([service]);
  }
}

/**
 * The local Redis Cluster: its nodes are recorded one by one as they spawn (each is a
 * `redis-cluster` service in state.json), then joined; resolves when every node reports
 * cluster_state:ok.
 */
async function startClusterService(env: StackEnv, record: (s: LocalService) => LocalService, log: (l: string) => void): Promise<void> {
  log('stack: starting a 3-master Redis Cluster (redis-server --cluster-enabled yes)');
  const t0 = Date.now();
  const nodes = await startClusterNodes(join(env.dir, 'redis-cluster'), (n) =>
    record({ name: 'redis-cluster', marker: REDIS_CLUSTER_MARKER, pid: n.pid, port: n.port, logFile: n.logFile }),
  );
  try {
    await createCluster(nodes.map((n) => n.port), HEALTH_TIMEOUT_MS['redis-cluster']);
  } catch (err) {
    const tails = nodes.map((n) => `--- last lines of ${n.logFile} ---\n${logTail(n.logFile) || '(empty)'}`).join('\n');
    throw new Error(`stack: redis cluster: ${(err as Error).message}\n${tails}`, { cause: err });
  }
  log(`stack: redis cluster ok on ports ${nodes.map((n) => n.port).join(', ')} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

// ---------------------------------------------------------------------------------------------
// Public API

/**
 * Brings the stack up, or reuses a healthy one, and returns its endpoints.
 *
 * Reuse: if `<dir>/state.json` records exactly the services this environment wants locally
 * and every one passes its health check, they are reused (`startedByUs: false`). Otherwise
 * leftovers are stopped and all wanted services start fresh on new free ports, with empty
 * data. External services (PINRICH_KAFKA_BROKERS / PINRICH_REDIS_URL / PINRICH_S3_ENDPOINT)
 * are only health-checked. Resolves the Kafka jars with Maven first if they are not cached.
 *
 * @throws Error naming the service, the timeout and the tail of its log when it fails to start.
 */
export async function stackUp(opts: StackOptions = {}): Promise<StackEndpoints> {
  const env = readStackEnv(opts);
  const log = opts.log ?? (() => undefined);
  if (env.mode === 'testcontainers') {
    const { containersUp } = await import('./testcontainers.js');
    return containersUp({ bucket: env.bucket, region: env.region, log });
  }

  const external = await externalHealth(env);
  const down = external.filter((r) => !r.healthy).map((r) => r.name);
  if (down.length > 0) throw new Error(`stack: external service(s) not reachable: ${down.join(', ')}`);

  return withLock(env.dir, log, async () => {
    const names = wantedLocal(env);
    const previous = readState(env.dir);
    if (previous) {
      // The Redis Cluster is an add-on: a running stack that has one is reused by a caller that
      // does not ask for it, and one that lacks it gets it added without a restart (other test
      // runs may be using the stack).
      const has = (n: ServiceName) => previous.services.some((s) => s.name === n);
      // The stand-in model server is an add-on too (ensureModelStandIn), and never a reason to restart.
      const core = names.filter((n) => n !== 'redis-cluster');
      const sameSet =
        previous.complete &&
        previous.bucket === env.bucket &&
        previous.services.filter((s) => s.name !== 'redis-cluster' && s.name !== 'model').length === core.length &&
        core.every(has);
      const healthy = sameSet && (await Promise.all(previous.services.filter((s) => s.name !== 'model').map((s) => localHealthy(s, previous.bucket))));
      if (healthy && healthy.every(Boolean)) {
        if (names.includes('redis-cluster') && !has('redis-cluster')) {
          const record = (s: LocalService) => {
            previous.services.push(s);
            writeState(env.dir, previous);
            return s;
          };
          try {
            await ensureSystemTools([REDIS_SERVER, REDIS_CLI], { log, lockDir: env.cacheRoot });
            await startClusterService(env, record, log);
          } catch (err) {
            await stopRecorded({ ...previous, services: previous.services.filter((s) => s.name === 'redis-cluster') }, log);
            previous.services = previous.services.filter((s) => s.name !== 'redis-cluster');
            writeState(env.dir, previous);
            throw err;
          }
          log(`stack: added the Redis Cluster to the running stack in ${env.dir}`);
        } else log(`stack: reusing running stack from ${env.dir}`);
        await ensureModelStandIn(env, previous, log);
        return endpointsFor(env, previous.services, previous.bucket, false);
      }
      log('stack: recorded stack is incomplete or unhealthy; stopping leftovers and starting fresh');
      await stopRecorded(previous, log);
      rmSync(statePath(env.dir), { force: true });
    }
    if (names.length === 0) return endpointsFor(env, [], env.bucket, false);
    const state = await startFresh(env, names, log);
    return endpointsFor(env, state.services, state.bucket, true);
  });
}

/**
 * Stops every service recorded in the state file (SIGTERM to its process group, SIGKILL
 * after 10 s) and removes the state file. External services are left alone. Safe to call
 * when nothing is running.
 */
export async function stackDown(opts: StackOptions = {}): Promise<void> {
  const env = readStackEnv(opts);
  const log = opts.log ?? (() => undefined);
  if (env.mode === 'testcontainers') {
    const { containersDown } = await import('./testcontainers.js');
    return containersDown(log);
  }
  if (!existsSync(env.dir)) return;
  await withLock(env.dir, log, async () => {
    const state = readState(env.dir);
    if (!state) {
      log('stack: nothing recorded; nothing to stop');
      return;
    }
    await stopRecorded(state, log);
    rmSync(statePath(env.dir), { force: true });
  });
}

/**
 * Reports each recorded (and external) service with its health. `up` is true only if the
 * stack is complete and everything is healthy; `endpoints` is given only then. Starts and
 * stops nothing.
 */
export async function stackStatus(
  opts: StackOptions = {},
): Promise<{ up: boolean; endpoints?: StackEndpoints; services: StackServiceStatus[] }> {
  const env = readStackEnv(opts);
  if (env.mode === 'testcontainers') {
    const { containersStatus } = await import('./testcontainers.js');
    return containersStatus();
  }
  const state = readState(env.dir);
  const local = await Promise.all(
    (state?.services ?? []).map(async (s) => ({
      name: s.name,
      pid: s.pid,
      port: s.port,
      healthy: await localHealthy(s, state?.bucket ?? env.bucket),
    })),
  );
  const services = [...local, ...(await externalHealth(env))];
  const names = wantedLocal(env);
  const up =
    (names.length === 0 || (state?.complete === true && names.every((n) => local.some((s) => s.name === n)))) &&
    // The stand-in model server is an add-on: the next stackUp restarts it alone, so a dead one
    // does not make the stack "down" (.ci/run decides from this whether the stack is its own).
    services.every((s) => s.healthy || s.name === 'model');
  return {
    up,
    endpoints: up ? endpointsFor(env, state?.services ?? [], state?.bucket ?? env.bucket, false) : undefined,
    services,
  };
}

/**
 * The variables that point pinrich at the stack's Redis Cluster instead of its single Redis
 * (PINRICH_REDIS_CLUSTER=true, seed nodes in PINRICH_REDIS_URL); laid over {@link stackEnv}.
 * @throws Error when the stack runs no cluster (start it with `redisCluster: true`).
 */
export function stackClusterEnv(e: StackEndpoints): Record<string, string> {
  if (!e.redisCluster?.length) throw new Error('stack: no Redis Cluster in this stack (pinrich stack up --redis-cluster, or PINRICH_STACK_REDIS_CLUSTER=1)');
  return { PINRICH_REDIS_URL: e.redisCluster.join(','), PINRICH_REDIS_CLUSTER: 'true' };
}

/**
 * The environment variables through which the rest of pinrich (src/config.ts, child
 * processes, the demo) is pointed at these endpoints.
 */
export function stackEnv(e: StackEndpoints): Record<string, string> {
  return {
    PINRICH_KAFKA_BROKERS: e.kafkaBrokers.join(','),
    PINRICH_REDIS_URL: e.redisUrl,
    PINRICH_S3_ENDPOINT: e.s3.endpoint,
    PINRICH_S3_BUCKET: e.s3.bucket,
    PINRICH_S3_REGION: e.s3.region,
    PINRICH_S3_ACCESS_KEY_ID: e.s3.accessKeyId,
    PINRICH_S3_SECRET_ACCESS_KEY: e.s3.secretAccessKey,
  };
}

/** What {@link localStackOverlay} found: variables to add, and what to tell the user. */
export interface LocalStackOverlay {
  /** PINRICH_* variables pointing at the local stack, only for services nothing else configures. */
  env: Record<string, string>;
  /** One line for stderr (which stack, which endpoints), or undefined when there is nothing to say. */
  notice?: string;
}

/**
 * The local stack as configuration for the CLI: after `pinrich stack up` (or a demo), every
 * command that talks to Kafka, Redis or S3 uses the recorded stack for each service that
 * neither the environment nor PINRICH_CONFIG_FILE configures. A variable that is set, even to
 * the empty string (`PINRICH_S3_ENDPOINT=` means AWS), wins; the S3 credentials and bucket
 * follow the S3 endpoint, so a configured AWS endpoint never gets s3rver's keys.
 *
 * Cheap on purpose (it runs before every command): one read of `<dir>/state.json` and a
 * look at each recorded pid's command line, no connection. A recorded stack whose processes
 * are gone is not used, and the notice says so. PINRICH_STACK=none turns the lookup off.
 */
export function localStackOverlay(env: Record<string, string | undefined> = process.env): LocalStackOverlay {
  if (env.PINRICH_STACK === 'none' || env.PINRICH_STACK === 'testcontainers') return { env: {} };
  const cacheRoot = env.PINRICH_CACHE_DIR || join(homedir(), '.cache', 'pinrich');
  const dir = resolve(env.PINRICH_STACK_DIR || join(cacheRoot, 'stack'));
  const state = readState(dir);
  if (!state) return { env: {} };
  if (!state.complete) {
    return { env: {}, notice: `pinrich: the local stack in ${dir} is still starting (or failed to start); not using it` };
  }
  // The stand-in model server is optional: if it is gone, only it is left out.
  const gone = state.services.filter((s) => s.name !== 'model' && !isOurProcess(s.pid, s.marker)).map((s) => s.name);
  if (gone.length > 0) {
    return {
      env: {},
      notice: `pinrich: the local stack in ${dir} is not running (${gone.join(', ')} gone); not using it — start it with \`npx pinrich stack up\``,
    };
  }
  const explicit = new Set(Object.keys(env).filter((k) => env[k] !== undefined));
  for (const k of configFileKeys(env.PINRICH_CONFIG_FILE)) explicit.add(k);
  const out: Record<string, string> = {};
  const used: string[] = [];
  const skipped: string[] = [];
  const set = (k: string, v: string) => {
    if (!explicit.has(k)) out[k] = v;
  };
  const endpointOf = (name: ServiceName): string | undefined => {
    const nodes = state.services.filter((s) => s.name === name);
    if (nodes.length === 0) return undefined;
    // A Redis Cluster is used only when asked for (PINRICH_REDIS_CLUSTER=true); its seed nodes.
    return name === 'redis-cluster' ? clusterSeedUrls(nodes.map((n) => n.port)).join(',') : localEndpoint(nodes[0]!);
  };
  const redisService: ServiceName = env.PINRICH_REDIS_CLUSTER === 'true' ? 'redis-cluster' : 'redis';
  const wanted: Array<[ServiceName, string, string]> = [
    ['kafka', 'PINRICH_KAFKA_BROKERS', 'Kafka'],
    [redisService, 'PINRICH_REDIS_URL', redisService === 'redis' ? 'Redis' : 'Redis Cluster'],
    ['s3', 'PINRICH_S3_ENDPOINT', 'S3'],
  ];
  for (const [name, variable, label] of wanted) {
    const endpoint = endpointOf(name);
    if (endpoint === undefined) continue;
    if (explicit.has(variable)) {
      skipped.push(variable);
      continue;
    }
    out[variable] = endpoint;
    used.push(`${label} ${endpoint}`);
    if (name === 's3') {
      set('PINRICH_S3_BUCKET', state.bucket);
      set('PINRICH_S3_ACCESS_KEY_ID', S3RVER_KEY);
      set('PINRICH_S3_SECRET_ACCESS_KEY', S3RVER_KEY);
      set('PINRICH_S3_FORCE_PATH_STYLE', 'true');
    }
  }
  const model = state.services.find((s) => s.name === 'model' && isOurProcess(s.pid, s.marker));
  const modelVars = ['PINRICH_VLM_BASE_URL', 'PINRICH_TEACHER_BASE_URL'].filter((k) => !explicit.has(k));
  if (model && modelVars.length > 0) {
    for (const k of modelVars) out[k] = localEndpoint(model);
    used.push(`model STAND-IN ${localEndpoint(model)} for ${modelVars.map((k) => k.replace(/^PINRICH_|_BASE_URL$/g, '')).join(' + ')} (pinrich's test server, not a real model)`);
  }
  if (used.length === 0) return { env: {} };
  const kept = skipped.length ? `; ${skipped.join(', ')} as configured` : '';
  return { env: out, notice: `pinrich: using the local stack in ${dir}: ${used.join(', ')}${kept} (PINRICH_STACK=none: ignore it)` };
}

/** The option names a PINRICH_CONFIG_FILE sets; none when it is absent or unreadable (loadConfig reports that). */
function configFileKeys(path: string | undefined): string[] {
  if (!path) return [];
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? Object.keys(parsed) : [];
  } catch {
    return [];
  }
}
