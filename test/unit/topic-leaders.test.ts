/**
 * createTopics / waitForTopicLeaders against a fake admin whose new topics come up slowly, the
 * way a loaded broker's do: first unknown, then listed with a leader of -1, then with a leader
 * that does not serve list-offsets yet, then ready.
 */
import type { Kafka } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { createTopics, topicLayout, waitForTopicLeaders, type TopicReadinessAdmin } from '../../src/adapters/kafka/admin.js';
import { loadConfig } from '../../src/config.js';
import { isPinrichError } from '../../src/errors.js';

interface Phases {
  /** Metadata calls that throw (the broker does not know the topic yet). */
  unknown: number;
  /** Metadata calls after that which list only the first partition. */
  partial: number;
  /** Metadata calls after that which show leader -1 for the last partition. */
  leaderless: number;
  /** list-offsets calls that fail although the metadata shows leaders. */
  notServing: number;
}

class FakeAdmin implements TopicReadinessAdmin {
  readonly topics = new Map<string, number>();
  readonly metadataCalls = new Map<string, number>();
  readonly offsetCalls = new Map<string, number>();
  created: string[] = [];
  /** Per topic: true once a check saw it ready (metadata with leaders and a list-offsets answer). */
  readonly servedReady = new Set<string>();

  constructor(private readonly phases: (topic: string) => Phases) {}

  connect = async () => undefined;
  disconnect = async () => undefined;
  listTopics = async () => [...this.topics.keys()];
  createTopics = async ({ topics }: { topics: Array<{ topic: string; numPartitions: number }> }) => {
    for (const t of topics) this.topics.set(t.topic, t.numPartitions);
    this.created.push(...topics.map((t) => t.topic));
    return true;
  };

  fetchTopicMetadata = (async ({ topics }: { topics: string[] }) => {
    const topic = topics[0]!;
    const n = (this.metadataCalls.get(topic) ?? 0) + 1;
    this.metadataCalls.set(topic, n);
    const ph = this.phases(topic);
    const count = this.topics.get(topic);
    if (count === undefined || n <= ph.unknown) throw Object.assign(new Error('This server does not host this topic-partition'), { name: 'KafkaJSProtocolError', type: 'UNKNOWN_TOPIC_OR_PARTITION' });
    const shown = n <= ph.unknown + ph.partial ? 1 : count;
    const leaderless = n <= ph.unknown + ph.partial + ph.leaderless;
    return {
      topics: [
        {
          name: topic,
          partitions: Array.from({ length: shown }, (_, i) => ({
            partitionErrorCode: leaderless && i === count - 1 ? 5 : 0,
            partitionId: i,
            leader: leaderless && i === count - 1 ? -1 : 1,
            replicas: [1],
            isr: leaderless && i === count - 1 ? [] : [1],
            offlineReplicas: [],
          })),
        },
      ],
    };
  }) as unknown as TopicReadinessAdmin['fetchTopicMetadata'];

  fetchTopicOffsets = (async (topic: string) => {
    const n = (this.offsetCalls.get(topic) ?? 0) + 1;
    this.offsetCalls.set(topic, n);
    if (n <= this.phases(topic).notServing) throw Object.assign(new Error('This server is not the leader for that topic-partition'), { name: 'KafkaJSProtocolError', type: 'NOT_LEADER_OR_FOLLOWER' });
    this.servedReady.add(topic);
    return Array.from({ length: this.topics.get(topic) ?? 0 }, (_, partition) => ({ partition, offset: '0', high: '0', low: '0' }));
  }) as unknown as TopicReadinessAdmin['fetchTopicOffsets'];
}

const config = loadConfig({ PINRICH_TOPIC_PREFIX: 'u.', PINRICH_TOPIC_PARTITIONS: '3' });
const layout = topicLayout(config).map((s) => s.topic);
const kafkaOf = (admin: FakeAdmin) => ({ admin: () => admin }) as unknown as Kafka;
const slow: Phases = { unknown: 2, partial: 1, leaderless: 2, notServing: 2 };

describe('createTopics waits for serving leaders', () => {
  it('resolves only after every topic of the layout showed a leader for every partition and answered list-offsets', async () => {
    const admin = new FakeAdmin(() => slow);
    const created = await createTopics(kafkaOf(admin), config, { intervalMs: 1 });
    expect(created.sort()).toEqual([...layout].sort());
    for (const topic of layout) {
      // unknown (2) + one partition (1) + leaderless (2), then the answer with every leader;
      // the list-offsets check starts only then, and must succeed once after two refusals.
      expect(admin.metadataCalls.get(topic)).toBeGreaterThanOrEqual(slow.unknown + slow.partial + slow.leaderless + 1);
      expect(admin.offsetCalls.get(topic)).toBe(slow.notServing + 1);
      expect(admin.servedReady.has(topic)).toBe(true);
    }
  });

  it('still waits when every topic already exists (a retry of a half-done create, or a second `topics create`)', async () => {
    const admin = new FakeAdmin(() => ({ unknown: 0, partial: 0, leaderless: 3, notServing: 0 }));
    for (const s of topicLayout(config)) admin.topics.set(s.topic, s.numPartitions);
    expect(await createTopics(kafkaOf(admin), config, { intervalMs: 1 })).toEqual([]);
    expect(admin.created).toEqual([]);
    for (const topic of layout) expect(admin.metadataCalls.get(topic)).toBe(4);
  });

  it('fails after the bound with topics_not_ready naming only the topics still without a leader', async () => {
    const stuck = layout[1]!;
    const admin = new FakeAdmin((t) => (t === stuck ? { unknown: 0, partial: 0, leaderless: 1e9, notServing: 0 } : { unknown: 0, partial: 0, leaderless: 0, notServing: 0 }));
    const err = await createTopics(kafkaOf(admin), config, { timeoutMs: 200, intervalMs: 10 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isPinrichError(err) && err.code).toBe('topics_not_ready');
    const message = (err as Error).message;
    expect(message).toContain(`${stuck} (no leader for partition(s) 2)`);
    for (const topic of layout) if (topic !== stuck) expect(message).not.toContain(`${topic} (`);
  });

  it('waitForTopicLeaders names a topic whose leaders never serve, with the broker error', async () => {
    const admin = new FakeAdmin(() => ({ unknown: 0, partial: 0, leaderless: 0, notServing: 1e9 }));
    admin.topics.set('x', 2);
    await expect(waitForTopicLeaders(admin, ['x'], { timeoutMs: 100, intervalMs: 10 })).rejects.toThrow(/x \(leaders not serving yet: This server is not the leader/);
  });
});
