/** Topic management: every pinrich topic plus its dead-letter twin. */
import type { Admin, Kafka } from 'kafkajs';
import { dlqTopic, topics, type Config } from '../../config.js';
import { describeError, PinrichError } from '../../errors.js';
import { sleep } from '../../runtime/retry.js';

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

/** The admin calls the leader wait needs (a kafkajs Admin; a fake in unit tests). */
export type TopicReadinessAdmin = Pick<Admin, 'fetchTopicMetadata' | 'fetchTopicOffsets'>;

export interface LeaderWaitOptions {
  /** Give up after this long (default: `PINRICH_KAFKA_WAIT_MS` for `createTopics`, else 60 s). */
  timeoutMs?: number;
  /** Pause between two checks. */
  intervalMs?: number;
  /** Partitions each topic must show (a partial metadata answer is not ready); default: any. */
  partitions?: ReadonlyMap<string, number>;
}

/**
 * Why `topic` cannot take a produce yet, or undefined when it can. Two steps, because the
 * broker's metadata cache is updated before its replica manager has become leader: a partition
 * may already show a leader in the metadata while that leader still answers "does not host this
 * topic-partition" / "not the leader" to produce and list-offsets requests. So the metadata must
 * show a leader for every partition, and then the leaders must answer a list-offsets request
 * (which the leader's replica manager serves) for every partition.
 */
async function notReady(admin: TopicReadinessAdmin, topic: string, expected: number | undefined): Promise<string | undefined> {
  let partitions;
  try {
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    partitions = md.topics.find((t) => t.name === topic)?.partitions;
  } catch (err) {
    return `metadata: ${describeError(err)}`;
  }
  if (!partitions || partitions.length === 0) return 'not in the metadata yet';
  if (expected !== undefined && partitions.length < expected) return `${partitions.length} of ${expected} partitions in the metadata`;
  const leaderless = partitions.filter((p) => p.leader < 0 || p.partitionErrorCode !== 0).map((p) => p.partitionId);
  if (leaderless.length) return `no leader for partition(s) ${leaderless.sort((a, b) => a - b).join(', ')}`;
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    if (offsets.length < partitions.length) return `the leaders answered for ${offsets.length} of ${partitions.length} partitions`;
  } catch (err) {
    return `leaders not serving yet: ${describeError(err)}`;
  }
  return undefined;
}

/**
 * Resolve once every partition of every topic in `topicNames` has a leader in the cluster
 * metadata that serves it; throw `topics_not_ready` naming the topics (and why) after
 * `timeoutMs`. Right after creation, on a loaded machine, this takes from nothing to a few
 * seconds; a produce in that window fails with "This server does not host this topic-partition".
 */
export async function waitForTopicLeaders(admin: TopicReadinessAdmin, topicNames: readonly string[], opts: LeaderWaitOptions = {}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const intervalMs = opts.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let pending = [...new Set(topicNames)];
  for (;;) {
    const reasons = new Map<string, string>();
    for (const topic of pending) {
      const why = await notReady(admin, topic, opts.partitions?.get(topic));
      if (why !== undefined) reasons.set(topic, why);
    }
    if (reasons.size === 0) return;
    // Ready topics stay ready (partitions do not lose their only leader without a broker
    // going away, which nothing here can wait out): check only the others again.
    pending = pending.filter((t) => reasons.has(t));
    if (Date.now() >= deadline) {
      const list = [...reasons].map(([t, why]) => `${t} (${why})`).join('; ');
      throw new PinrichError('topics_not_ready', `topics without a serving leader for every partition after ${Math.round(timeoutMs / 1000)} s: ${list}`);
    }
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
}

export interface CreateTopicsOptions extends Omit<LeaderWaitOptions, 'partitions'> {
  /**
   * The client the readiness checks go through (default: `kafka`). While a new leader is not
   * serving yet the broker refuses list-offsets, and kafkajs logs every refused response at
   * error level; those refusals are the wait, not failures, so a command that shows kafkajs'
   * log (`topics create`) passes a client without one. A check that never succeeds still ends
   * in `topics_not_ready` with the broker's last answer.
   */
  probe?: Kafka;
}

/**
 * Create every missing topic and wait until every partition of every topic of the layout has
 * a serving leader (`waitForTopicLeaders`), so the caller's first produce succeeds; returns
 * the names created. Idempotent: a second call (or a retry after a failed one) creates nothing
 * and still waits, so no caller returns before the topics are usable.
 */
export async function createTopics(kafka: Kafka, config: Config, opts: CreateTopicsOptions = {}): Promise<string[]> {
  const { probe, ...waitOpts } = opts;
  const admin = kafka.admin();
  const probeAdmin = probe ? probe.admin() : admin;
  await admin.connect();
  if (probeAdmin !== admin) await probeAdmin.connect();
  try {
    const layout = topicLayout(config);
    const existing = new Set(await admin.listTopics());
    const missing = layout.filter((s) => !existing.has(s.topic));
    // kafkajs' own waitForLeaders is not enough: it stops at the first metadata answer without
    // an error code (which may still list a leader of -1, or one that is not serving yet) and
    // throws UNKNOWN_TOPIC_OR_PARTITION when the broker does not know a new topic yet.
    if (missing.length) await admin.createTopics({ topics: missing, waitForLeaders: false });
    await waitForTopicLeaders(
      probeAdmin,
      layout.map((s) => s.topic),
      { timeoutMs: config.kafkaWaitMs, ...waitOpts, partitions: new Map(layout.map((s) => [s.topic, s.numPartitions])) },
    );
    return missing.map((s) => s.topic);
  } finally {
    if (probeAdmin !== admin) await probeAdmin.disconnect();
    await admin.disconnect();
  }
}

/**
 * The partition count of a topic, asked of the broker once per topic and process (a failed ask
 * is asked again on the next call). A record's partition can be checked against its key's with it.
 */
export function partitionCounts(kafka: Kafka): (topic: string) => Promise<number> {
  const known = new Map<string, Promise<number>>();
  return (topic) => {
    let count = known.get(topic);
    if (!count) {
      count = (async () => {
        const admin = kafka.admin();
        await admin.connect();
        try {
          const md = await admin.fetchTopicMetadata({ topics: [topic] });
          const n = md.topics.find((t) => t.name === topic)?.partitions.length ?? 0;
          if (n === 0) throw new PinrichError('topics_not_ready', `topic ${topic} has no partitions in the broker's metadata yet`, { retriable: true });
          return n;
        } finally {
          await admin.disconnect();
        }
      })();
      const asked = count;
      known.set(topic, asked);
      asked.catch(() => (known.get(topic) === asked ? known.delete(topic) : undefined));
    }
    return count;
  };
}
