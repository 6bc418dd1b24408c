/**
 * The local stack really works end to end: Kafka round-trips a record, Redis answers, the
 * S3 server stores bytes exactly and pages listings (the --openssl-legacy-provider fix), and
 * a second stackUp reuses the running stack instead of starting another.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { Redis } from 'ioredis';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { stackEnv, stackStatus, stackUp } from '../../src/stack/index.js';

const stack = inject('stack');

describe.skipIf(!stack)('local stack', () => {
  const runId = randomUUID().slice(0, 8);
  const cleanups: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('Kafka round-trips a record through a random topic', async () => {
    const topic = `test.stack.${runId}`;
    const kafka = new Kafka({ clientId: `stack-test-${runId}`, brokers: stack.kafkaBrokers, logLevel: logLevel.WARN });
    const admin = kafka.admin();
    await admin.connect();
    cleanups.push(() => admin.disconnect());
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });

    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    cleanups.push(() => producer.disconnect());
    const value = `hello ${randomUUID()}`;
    await producer.send({ topic, messages: [{ key: 'pin-1', value }] });

    // A short fetch wait keeps disconnect() (which waits out an in-flight fetch) fast.
    const consumer = kafka.consumer({ groupId: `stack-test-${runId}`, maxWaitTimeInMs: 100 });
    await consumer.connect();
    cleanups.push(() => consumer.disconnect());
    await consumer.subscribe({ topic, fromBeginning: true });
    const received = await new Promise<{ key: string; value: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no record consumed within 60 s')), 60_000);
      void consumer.run({
        eachMessage: async ({ message }) => {
          clearTimeout(timer);
          resolve({ key: message.key?.toString() ?? '', value: message.value?.toString() ?? '' });
        },
      });
    });
    expect(received).toEqual({ key: 'pin-1', value });
  });

  it('Redis answers PING and keeps a value', async () => {
    const redis = new Redis(stack.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    cleanups.push(() => redis.quit());
    expect(await redis.ping()).toBe('PONG');
    const key = `test:stack:${runId}`;
    await redis.set(key, 'v', 'EX', 60);
    expect(await redis.get(key)).toBe('v');
  });

  it('S3 stores bytes exactly and pages listings', async () => {
    const s3 = new S3Client({
      endpoint: stack.s3.endpoint,
      region: stack.s3.region,
      credentials: { accessKeyId: stack.s3.accessKeyId, secretAccessKey: stack.s3.secretAccessKey },
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    cleanups.push(async () => s3.destroy());
    const prefix = `test/stack/${runId}/`;
    // Random bytes, including ones that are not valid UTF-8, must come back unchanged.
    const body = randomBytes(256 * 1024 + 7);
    await s3.send(new PutObjectCommand({ Bucket: stack.s3.bucket, Key: `${prefix}blob.bin`, Body: body }));
    const got = await s3.send(new GetObjectCommand({ Bucket: stack.s3.bucket, Key: `${prefix}blob.bin` }));
    const bytes = Buffer.from(await got.Body!.transformToByteArray());
    expect(bytes.equals(body)).toBe(true);

    // Paging uses continuation tokens, which fail with HTTP 500 without --openssl-legacy-provider.
    for (const k of ['a', 'b']) {
      await s3.send(new PutObjectCommand({ Bucket: stack.s3.bucket, Key: `${prefix}${k}`, Body: k }));
    }
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(
        new ListObjectsV2Command({ Bucket: stack.s3.bucket, Prefix: prefix, MaxKeys: 1, ContinuationToken: token }),
      );
      keys.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.NextContinuationToken;
    } while (token);
    expect(keys.sort()).toEqual([`${prefix}a`, `${prefix}b`, `${prefix}blob.bin`]);

    // The configured bucket already exists: creating it again is refused rather than silently
    // making a second one, which shows we talk to the server global setup started.
    await expect(s3.send(new CreateBucketCommand({ Bucket: stack.s3.bucket }))).rejects.toThrow();
  });

  it('a second stackUp reuses the running stack', async () => {
    const again = await stackUp();
    expect(again.startedByUs).toBe(false);
    expect({ ...again, startedByUs: stack.startedByUs }).toEqual(stack);
    const status = await stackStatus();
    expect(status.up).toBe(true);
    expect(status.services.every((s) => s.healthy)).toBe(true);
  });

  it('stackEnv exposes the endpoints as PINRICH_* variables', () => {
    const env = stackEnv(stack);
    expect(env.PINRICH_KAFKA_BROKERS).toBe(stack.kafkaBrokers.join(','));
    expect(env.PINRICH_REDIS_URL).toBe(stack.redisUrl);
    expect(env.PINRICH_S3_ENDPOINT).toBe(stack.s3.endpoint);
    expect(env.PINRICH_S3_BUCKET).toBe(stack.s3.bucket);
    expect(env.PINRICH_S3_ACCESS_KEY_ID).toBe(stack.s3.accessKeyId);
  });
});
