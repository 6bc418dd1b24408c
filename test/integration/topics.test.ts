/**
 * `createTopics` (what `pinrich topics create` and every test's `setupTopics` call) on the real
 * broker: when it resolves, a produce to any partition of any topic succeeds at once. The
 * producer here does not retry, so a partition still without a serving leader ("This server
 * does not host this topic-partition", "not the leader") fails the test instead of being
 * retried away.
 */
import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, inject, it } from 'vitest';
import { createTopics, topicLayout } from '../../src/adapters/kafka/admin.js';
import { loadConfig, type Config } from '../../src/config.js';
import { testConfig, testEnv, testKafka } from '../support/harness.js';
import { runPinrich } from '../support/cli.js';

/**
 * One produce request for every partition of every topic of the layout, from a client that
 * does not retry, straight away; then the metadata and end offsets agree.
 */
async function expectEveryPartitionTakesAProduce(config: Config): Promise<void> {
  const layout = topicLayout(config);
  const n = config.topicPartitions;
  const kafka = new Kafka({ clientId: 'pinrich-test-noretry', brokers: [...config.kafkaBrokers], logLevel: logLevel.NOTHING, retry: { retries: 0 } });
  const admin = kafka.admin();
  const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
  await Promise.all([admin.connect(), producer.connect()]);
  try {
    const answers = await producer.sendBatch({
      acks: -1,
      topicMessages: layout.map((s) => ({
        topic: s.topic,
        messages: Array.from({ length: s.numPartitions }, (_, partition) => ({ partition, key: `k${partition}`, value: 'v' })),
      })),
    });
    expect(answers).toHaveLength(layout.length * n);
    expect(answers.every((a) => a.errorCode === 0)).toBe(true);

    const md = await admin.fetchTopicMetadata({ topics: layout.map((s) => s.topic) });
    for (const t of md.topics) {
      expect(t.partitions).toHaveLength(n);
      expect(t.partitions.every((p) => p.leader >= 0)).toBe(true);
    }
    for (const s of layout) expect((await admin.fetchTopicOffsets(s.topic)).map((o) => o.high)).toEqual(Array(n).fill('1'));
  } finally {
    await Promise.all([admin.disconnect(), producer.disconnect()]);
  }
}

const pinrich = (args: string[], env: Record<string, string>) => runPinrich(args, { ...process.env, ...env });

describe.skipIf(!inject('stack'))('createTopics on the local broker', () => {
  it('returns only when every partition of every topic has a leader and takes a produce without retries', async () => {
    const config = testConfig({ PINRICH_TOPIC_PARTITIONS: '3' });
    const layout = topicLayout(config);
    const created = await createTopics(testKafka(config), config);
    expect(created.sort()).toEqual(layout.map((s) => s.topic).sort());

    await expectEveryPartitionTakesAProduce(config);
  }, 60_000);

  it('`pinrich topics create` returns when a produce to every partition succeeds, and logs no refused probe', async () => {
    const env = testEnv({ PINRICH_TOPIC_PARTITIONS: '3' });
    const r = await pinrich(['topics', 'create'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^created: /);
    await expectEveryPartitionTakesAProduce(loadConfig(env));
    // The broker refuses list-offsets until a new leader serves; that is the wait, not an error.
    expect(r.stderr).not.toMatch(/"level":"error"|not the leader|does not host/);
  }, 60_000);

  it('a second call creates nothing and returns at once for topics that are ready', async () => {
    const config = testConfig();
    await createTopics(testKafka(config), config);
    expect(await createTopics(testKafka(config), config)).toEqual([]);
  }, 60_000);
});
