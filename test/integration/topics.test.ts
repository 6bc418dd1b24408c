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
import { testConfig, testKafka } from '../support/harness.js';

describe.skipIf(!inject('stack'))('createTopics on the local broker', () => {
  it('returns only when every partition of every topic has a leader and takes a produce without retries', async () => {
    const config = testConfig({ PINRICH_TOPIC_PARTITIONS: '3' });
    const layout = topicLayout(config);
    const created = await createTopics(testKafka(config), config);
    expect(created.sort()).toEqual(layout.map((s) => s.topic).sort());

    const kafka = new Kafka({ clientId: 'pinrich-test-noretry', brokers: [...config.kafkaBrokers], logLevel: logLevel.NOTHING, retry: { retries: 0 } });
    const admin = kafka.admin();
    const producer = kafka.producer({ retry: { retries: 0 }, allowAutoTopicCreation: false });
    await Promise.all([admin.connect(), producer.connect()]);
    try {
      // One request for every partition of every topic, straight away.
      const answers = await producer.sendBatch({
        acks: -1,
        topicMessages: layout.map((s) => ({
          topic: s.topic,
          messages: Array.from({ length: s.numPartitions }, (_, partition) => ({ partition, key: `k${partition}`, value: 'v' })),
        })),
      });
      expect(answers).toHaveLength(layout.length * 3);
      expect(answers.every((a) => a.errorCode === 0)).toBe(true);

      const md = await admin.fetchTopicMetadata({ topics: layout.map((s) => s.topic) });
      for (const t of md.topics) {
        expect(t.partitions).toHaveLength(3);
        expect(t.partitions.every((p) => p.leader >= 0)).toBe(true);
      }
      for (const s of layout) expect((await admin.fetchTopicOffsets(s.topic)).map((o) => o.high)).toEqual(['1', '1', '1']);
    } finally {
      await Promise.all([admin.disconnect(), producer.disconnect()]);
    }
  }, 60_000);

  it('a second call creates nothing and returns at once for topics that are ready', async () => {
    const config = testConfig();
    await createTopics(testKafka(config), config);
    expect(await createTopics(testKafka(config), config)).toEqual([]);
  }, 60_000);
});
