/**
 * Optional Docker path, used only when PINRICH_STACK=testcontainers: Kafka (apache/kafka),
 * Redis and MinIO as containers. Loaded by dynamic import from index.ts so nothing imports
 * testcontainers otherwise.
 *
 * UNTESTED HERE: the machine this was written on has no Docker. It follows the
 * testcontainers 11 API as typed, and is kept small on purpose.
 *
 * Unlike the process stack, containers belong to the calling process (testcontainers' reaper
 * removes them when it exits), so this suits a vitest run, not `pinrich stack up` followed by
 * a separate command. Nothing is written to the state file.
 */
import type { StartedTestContainer } from 'testcontainers';
import type { StackEndpoints, StackServiceStatus } from './index.js';
import { freePort } from './process.js';

const KAFKA_IMAGE = 'apache/kafka:4.1.1';
const REDIS_IMAGE = 'redis:7-alpine';
const MINIO_IMAGE = 'minio/minio:latest';
const MINIO_USER = 'pinrich';
const MINIO_PASSWORD = 'pinrich-secret';

let running: { containers: Map<string, StartedTestContainer>; endpoints: StackEndpoints } | undefined;

/** Starts the three containers (or returns the ones this process already started). */
export async function containersUp(opts: {
  bucket: string;
  region: string;
  log: (line: string) => void;
}): Promise<StackEndpoints> {
  if (running) return { ...running.endpoints, startedByUs: false };
  const { GenericContainer, Wait } = await import('testcontainers');

  // Kafka advertises the address clients must use, so the host port has to be known before
  // the broker starts: bind a free host port to the same container port.
  const kafkaPort = await freePort();
  opts.log(`stack(testcontainers): starting ${KAFKA_IMAGE}, ${REDIS_IMAGE}, ${MINIO_IMAGE}`);
  const [kafka, redis, minio] = await Promise.all([
    new GenericContainer(KAFKA_IMAGE)
      .withExposedPorts({ container: kafkaPort, host: kafkaPort })
      .withEnvironment({
        KAFKA_NODE_ID: '1',
        KAFKA_PROCESS_ROLES: 'broker,controller',
        KAFKA_LISTENERS: `PLAINTEXT://0.0.0.0:${kafkaPort},CONTROLLER://0.0.0.0:9093`,
        KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://127.0.0.1:${kafkaPort}`,
        KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
        KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
        KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
        KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
        KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
        KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
        KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
        KAFKA_NUM_PARTITIONS: '4',
      })
      .withWaitStrategy(Wait.forLogMessage(/Kafka Server started/))
      .start(),
    new GenericContainer(REDIS_IMAGE)
      .withExposedPorts(6379)
      .withCommand(['redis-server', '--save', '', '--appendonly', 'no'])
      .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
      .start(),
    new GenericContainer(MINIO_IMAGE)
      .withExposedPorts(9000)
      .withEnvironment({ MINIO_ROOT_USER: MINIO_USER, MINIO_ROOT_PASSWORD: MINIO_PASSWORD })
      .withCommand(['server', '/data'])
      .withWaitStrategy(Wait.forHttp('/minio/health/live', 9000))
      .start(),
  ]);

  const endpoints: StackEndpoints = {
    kafkaBrokers: [`127.0.0.1:${kafkaPort}`],
    redisUrl: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
    s3: {
      endpoint: `http://${minio.getHost()}:${minio.getMappedPort(9000)}`,
      bucket: opts.bucket,
      region: opts.region,
      accessKeyId: MINIO_USER,
      secretAccessKey: MINIO_PASSWORD,
    },
    startedByUs: true,
  };

  // MinIO starts without buckets; create ours with the S3 client the app uses anyway.
  const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
  const s3 = new S3Client({
    endpoint: endpoints.s3.endpoint,
    region: opts.region,
    forcePathStyle: true,
    credentials: { accessKeyId: MINIO_USER, secretAccessKey: MINIO_PASSWORD },
  });
  await s3.send(new CreateBucketCommand({ Bucket: opts.bucket }));
  s3.destroy();

  running = {
    containers: new Map<string, StartedTestContainer>([
      ['kafka', kafka],
      ['redis', redis],
      ['s3', minio],
    ]),
    endpoints,
  };
  return endpoints;
}

/** Stops the containers this process started, if any. */
export async function containersDown(log: (line: string) => void): Promise<void> {
  if (!running) return;
  const { containers } = running;
  running = undefined;
  await Promise.all([...containers.values()].map((c) => c.stop()));
  log('stack(testcontainers): containers stopped');
}

/** Status of the containers this process started (none, in a fresh process). */
export async function containersStatus(): Promise<{
  up: boolean;
  endpoints?: StackEndpoints;
  services: StackServiceStatus[];
}> {
  if (!running) return { up: false, services: [] };
  const services = [...running.containers.keys()].map((name) => ({ name, healthy: true }));
  return { up: true, endpoints: { ...running.endpoints, startedByUs: false }, services };
}
