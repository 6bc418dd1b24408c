/**
 * Apache Kafka 4.x as a local process: one KRaft node acting as broker and controller, run
 * from the Maven Central jars resolved by deploy/kafka/pom.xml. No Kafka distribution
 * tarball and no shell scripts: we build the classpath and the config ourselves.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, spawnDetached, tcpConnectable } from './process.js';

/** Substring of the broker's command line, used to recognise our JVM by pid. */
export const KAFKA_MARKER = 'kafka.Kafka';

/** Where the resolved jars live and whether they are ready. */
export interface KafkaJars {
  kafkaVersion: string;
  libsDir: string;
}

/**
 * The jar cache directory for the current pom: `<cacheRoot>/kafka-<version>-<sha256(pom)[0..12]>/libs`.
 * Hashing the pom means an edit (say, a pinned slf4j) yields a new directory rather than a
 * stale classpath. `.ci/run` computes the same name in bash; keep the two in step.
 */
export function kafkaJarsLocation(pomPath: string, cacheRoot: string): KafkaJars {
  const pom = readFileSync(pomPath);
  const version = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(pom.toString('utf8'))?.[1];
  if (!version) throw new Error(`${pomPath}: no <kafka.version> property`);
  const hash = createHash('sha256').update(pom).digest('hex').slice(0, 12);
  return { kafkaVersion: version, libsDir: join(cacheRoot, `kafka-${version}-${hash}`, 'libs') };
}

/**
 * Makes sure the Kafka jars for `pomPath` are in the cache, running Maven if they are not.
 * Maven writes into `libs.partial` which is renamed to `libs` only on success, so an
 * interrupted download is never mistaken for a complete classpath.
 */
export async function ensureKafkaJars(
  pomPath: string,
  cacheRoot: string,
  log: (line: string) => void,
): Promise<KafkaJars> {
  const jars = kafkaJarsLocation(pomPath, cacheRoot);
  if (existsSync(jars.libsDir)) return jars;
  const partial = `${jars.libsDir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  log(`kafka: jars for ${jars.kafkaVersion} not cached; resolving them with Maven into ${jars.libsDir} (first run only)`);
  const started = Date.now();
  const args = [
    '-q', '-B', '-f', pomPath, 'dependency:copy-dependencies',
    '-DincludeScope=runtime', `-DoutputDirectory=${partial}`,
  ];
  await new Promise<void>((resolve, reject) => {
    const child = spawn('mvn', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', (err) =>
      reject(new Error(`kafka: cannot run Maven (${err.message}); install Maven and Java 17+ (Debian: apt-get install maven openjdk-17-jre-headless)`)),
    );
    child.on('exit', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`kafka: mvn ${args.join(' ')} failed with exit code ${code}:\n${output.slice(-4000)}`));
    });
  });
  renameSync(partial, jars.libsDir);
  log(`kafka: jars resolved in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return jars;
}

/** Ports and files of one broker instance. */
export interface KafkaLayout {
  dir: string;
  port: number;
  controllerPort: number;
  logFile: string;
}

/**
 * The JVM flags. The heap is small because this is a dev broker on a 2-core CI machine shared
 * with Redis, s3rver and the tests; SerialGC avoids G1's background threads for the same reason.
 */
function jvmArgs(libsDir: string, log4jConfig: string, shortLived = false): string[] {
  return [
    '-Xms256m', '-Xmx512m', '-XX:+UseSerialGC',
    // For the one-shot StorageTool, C1 only: measured 2.25 s -> 1.5 s on 2 cores. Not for the
    // broker, whose throughput (benchmarks, long demos) would suffer without C2.
    ...(shortLived ? ['-XX:TieredStopAtLevel=1'] : []),
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${log4jConfig}`,
    '-cp', join(libsDir, '*'),
  ];
}

/**
 * The broker+controller configuration. Replication factors are 1 because there is one node;
 * internal topics get few partitions so the first consumer group and the first transaction
 * do not wait for 50 partitions to be created; the initial rebalance delay is 0 so tests
 * do not sit out 3 s on every new group. Topic auto-creation stays on (Kafka's default).
 */
function serverProperties(l: KafkaLayout): string {
  return [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${l.controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${l.port},CONTROLLER://127.0.0.1:${l.controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${l.port}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
    `log.dirs=${join(l.dir, 'data')}`,
    'num.partitions=4',
    'auto.create.topics.enable=true',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=8',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'transaction.state.log.num.partitions=4',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    '',
  ].join('\n');
}

/**
 * log4j2 goes to stdout, which the launcher appends to the service log file, so JVM errors
 * (bind failures, missing classes) and broker logs land in one place for the error tail.
 * INFO for the broker, WARN for the very chatty request/state-change loggers.
 */
function log4jProperties(): string {
  return [
    'status = warn',
    'appender.out.type = Console',
    'appender.out.name = out',
    'appender.out.target = SYSTEM_OUT',
    'appender.out.layout.type = PatternLayout',
    'appender.out.layout.pattern = [%d] %p %m (%c)%n',
    'rootLogger.level = INFO',
    'rootLogger.appenderRef.out.ref = out',
    'logger.request.name = kafka.request.logger',
    'logger.request.level = WARN',
    'logger.state.name = state.change.logger',
    'logger.state.level = WARN',
    'logger.network.name = kafka.network.RequestChannel$',
    'logger.network.level = WARN',
    'logger.controller.name = org.apache.kafka.controller',
    'logger.controller.level = WARN',
    '',
  ].join('\n');
}

/**
 * A Kafka cluster id: a 16-byte UUID in unpadded URL-safe base64 (22 characters). Like Kafka's
 * own Uuid.randomUuid, never one starting with '-': StorageTool's argument parser would take
 * "-t -abc…" for an option (it happened: 1 start in 64).
 */
export function newClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

/**
 * Writes a fresh config into `dir` (wiping any old data: this is a dev stack), formats the
 * KRaft storage with a new cluster id, and starts the broker detached. Returns the pid; the
 * caller health-checks it with {@link kafkaHealthy}.
 */
export async function startKafka(dir: string, jars: KafkaJars): Promise<{ pid: number; layout: KafkaLayout }> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'data'), { recursive: true });
  const layout: KafkaLayout = {
    dir,
    port: await freePort(),
    controllerPort: await freePort(),
    logFile: join(dir, 'kafka.log'),
  };
  const propsFile = join(dir, 'server.properties');
  const log4jFile = join(dir, 'log4j2.properties');
  writeFileSync(propsFile, serverProperties(layout));
  writeFileSync(log4jFile, log4jProperties());

  const clusterId = newClusterId();
  await new Promise<void>((resolve, reject) => {
    execFile(
      'java',
      [...jvmArgs(jars.libsDir, log4jFile, true), 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', propsFile],
      { timeout: 120_000 },
      (err, stdout) => {
        if (err) {
          // err.message already quotes stderr; add stdout and a hint about a broken cache.
          const hint = `(if the classpath looks broken, delete ${jars.libsDir} so it is resolved again)`;
          reject(new Error(`kafka: storage format failed ${hint}: ${err.message}\n${stdout}`.trim()));
        } else {
          resolve();
        }
      },
    );
  });

  const pid = spawnDetached({
    command: 'java',
    args: [...jvmArgs(jars.libsDir, log4jFile), KAFKA_MARKER, propsFile],
    logFile: layout.logFile,
  });
  return { pid, layout };
}

/**
 * Healthy means the broker answers a metadata request listing at least one broker: the
 * listener being open is not enough, since a KRaft broker accepts connections before it is
 * unfenced and can host partitions. kafkajs is imported lazily so merely importing the stack
 * module stays cheap.
 */
export async function kafkaHealthy(brokers: string[]): Promise<boolean> {
  const mod = await import('kafkajs');
  const { Kafka, logLevel } = mod.default ?? mod;
  const admin = new Kafka({
    clientId: 'pinrich-stack-health',
    brokers,
    connectionTimeout: 1_000,
    requestTimeout: 3_000,
    retry: { retries: 0 },
    logLevel: logLevel.NOTHING,
  }).admin();
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length > 0;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * Makes a fresh broker ready for consumer groups. The group coordinator lives on
 * __consumer_offsets, which Kafka creates on the first FindCoordinator request; until it has
 * loaded, every consumer's first JoinGroup fails ("coordinator is loading") and kafkajs
 * crash-restarts it with ERROR logs. Describing a dummy group once does that creation here,
 * so the first test or demo consumer joins cleanly. Resolves true once a describe succeeds.
 */
export async function kafkaGroupCoordinatorReady(brokers: string[]): Promise<boolean> {
  const mod = await import('kafkajs');
  const { Kafka, logLevel } = mod.default ?? mod;
  const admin = new Kafka({
    clientId: 'pinrich-stack-warmup',
    brokers,
    retry: { retries: 0 },
    logLevel: logLevel.NOTHING,
  }).admin();
  try {
    await admin.connect();
    // kafkajs only learns the broker list from a metadata response; without this the
    // coordinator lookup fails with "No brokers in the broker pool".
    await admin.describeCluster();
    await admin.describeGroups(['pinrich-stack-warmup']);
    return true;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * For brokers we did not start we only check that one accepts TCP connections: they may
 * require SASL/TLS settings the launcher knows nothing about.
 */
export async function externalKafkaReachable(brokers: string[]): Promise<boolean> {
  for (const b of brokers) {
    const i = b.lastIndexOf(':');
    if (i > 0 && (await tcpConnectable(b.slice(0, i), Number(b.slice(i + 1)), 2_000))) return true;
  }
  return false;
}
