/** Topic management: every pinrich topic plus its dead-letter twin. */
import type { Kafka } from 'kafkajs';
import { dlqTopic, topics, type Config } from '../../config.js';

export interface TopicSpec {
  topic: string;
  numPartitions: number;
  replicationFactor: number;
  configEntries: Array<{ name: string; value: string }>;
}

/** The full topic layout. pins.enriched is compacted (latest document per pin). */
export function topicLayout(config: Config): TopicSpec[] {
  const t = topics(config);
  const base = { numPartitions: config.topicPartitions, replicationFactor: config.topicReplication };
  const specs: TopicSpec[] = [];
  for (const topic of Object.values(t)) {
    const compacted = topic === t.enriched;
    specs.push({
      ...base,
      topic,
      configEntries: compacted
        ? [
            { name: 'cleanup.policy', value: 'compact' },
            { name: 'min.compaction.lag.ms', value: '60000' },
          ]
        : [],
    });
    specs.push({ ...base, topic: dlqTopic(topic), configEntries: [] });
  }
  return specs;
}

/** Create every missing topic; returns the names created. Idempotent. */
export async function createTopics(kafka: Kafka, config: Config): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topicLayout(config).filter((s) => !existing.has(s.topic));
    if (missing.length) await admin.createTopics({ topics: missing, waitForLeaders: true });
    return missing.map((s) => s.topic);
  } finally {
    await admin.disconnect();
  }
}
