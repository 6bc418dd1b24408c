/**
 * The fetch settings (PINRICH_KAFKA_FETCH_MIN_BYTES, PINRICH_KAFKA_FETCH_MAX_WAIT_MS) reach the
 * kafkajs consumer a worker makes, and kafkajs' own defaults stay when they are not set. The
 * Kafka client here only records the consumer's settings: startWorker stops right there.
 */
import type { ConsumerConfig, Kafka } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { loadConfig, type Config } from '../../src/config.js';
import { systemClock } from '../../src/runtime/clock.js';
import { silentLogger } from '../../src/runtime/log.js';
import { EMPTY_RESULT } from '../../src/runtime/stage.js';
import { startWorker } from '../../src/runtime/worker.js';
import { subscriptionOf } from '../../src/workers.js';

/** The consumer settings the score worker gets from `config` (its subscription, as startApp passes it). */
async function consumerSettings(config: Config): Promise<ConsumerConfig> {
  let seen: ConsumerConfig | undefined;
  const kafka = {
    consumer(cfg: ConsumerConfig) {
      seen = cfg;
      throw new Error('recorded');
    },
  } as unknown as Kafka;
  const stage = { name: 'score' as const, handle: async () => EMPTY_RESULT, close: async () => {} };
  const publisher = { publish: async () => {}, close: async () => {} };
  await expect(startWorker({ ...subscriptionOf('score', config), kafka, stage, publisher, log: silentLogger, clock: systemClock })).rejects.toThrow('recorded');
  return seen!;
}

describe('worker fetch settings', () => {
  it("hands the configured minimum bytes and longest wait to the consumer, kafkajs' defaults otherwise", async () => {
    const config = loadConfig({ PINRICH_KAFKA_FETCH_MIN_BYTES: '65536', PINRICH_KAFKA_FETCH_MAX_WAIT_MS: '50' });
    expect(await consumerSettings(config)).toMatchObject({ minBytes: 65_536, maxWaitTimeInMs: 50 });
    expect(await consumerSettings(loadConfig({}))).toMatchObject({ minBytes: 1, maxWaitTimeInMs: 5_000 });
  });
});
