/**
 * Reading the end of a topic, for people (`pinrich topics tail`): the last records of every
 * partition, or every record of one key. It reads through a throw-away consumer that commits
 * nothing, so it never moves a worker's offsets; its group is deleted afterwards.
 */
import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';

/** One record as `topics tail` shows it. */
export interface TailRecord {
  partition: number;
  offset: string;
  /** Record timestamp, ISO 8601. */
  timestamp: string;
  key: string | null;
  /** The value's text, or null for a tombstone. */
  value: string | null;
}

/** Options of {@link tailTopic}. */
export interface TailOptions {
  /** At most this many records (the latest ones). */
  limit: number;
  /** Only records with this key; then the whole topic is read (fine for a demo topic, slow on a big one). */
  key?: string;
  /** Give up after this long. Default 60 s. */
  timeoutMs?: number;
}

/**
 * The latest `limit` records of `topic` (with `key`: of that key), oldest first.
 *
 * @throws Error when the topic does not exist (kafkajs' message) or reading takes longer than `timeoutMs`.
 */
export async function tailTopic(kafka: Kafka, topic: string, opts: TailOptions): Promise<TailRecord[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const ends = await admin.fetchTopicOffsets(topic);
    // Per partition: read [start, high). Without a key, the last `limit` offsets are enough.
    const ranges = new Map<number, { start: bigint; high: bigint }>();
    for (const e of ends) {
      const low = BigInt(e.low);
      const high = BigInt(e.high);
      const start = opts.key === undefined ? (high - BigInt(opts.limit) > low ? high - BigInt(opts.limit) : low) : low;
      if (high > start) ranges.set(e.partition, { start, high });
    }
    if (ranges.size === 0 || opts.limit <= 0) return [];
    const groupId = `pinrich-tail-${randomUUID()}`;
    const records = await readRanges(kafka, topic, groupId, ranges, opts);
    await admin.deleteGroups([groupId]).catch(() => undefined); // best effort: an empty group without offsets expires anyway
    records.sort((a, b) => a.timestamp.localeCompare(b.timestamp) || a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
    return records.slice(-opts.limit);
  } finally {
    await admin.disconnect();
  }
}

async function readRanges(
  kafka: Kafka,
  topic: string,
  groupId: string,
  ranges: Map<number, { start: bigint; high: bigint }>,
  opts: TailOptions,
): Promise<TailRecord[]> {
  const out: TailRecord[] = [];
  const pending = new Set(ranges.keys());
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100 });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`topics tail: ${topic} not read within ${(opts.timeoutMs ?? 60_000) / 1000} s`)), opts.timeoutMs ?? 60_000);
      // Also by the fetch position after each batch, one kafkajs hands nothing of too: a topic
      // written in transactions (pins.enriched) ends in a commit marker no batch holds as a record.
      consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
        const range = ranges.get(payload.partition);
        if (range && BigInt(payload.lastOffset) + 1n >= range.high) pending.delete(payload.partition);
        if (pending.size === 0) resolve();
      });
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            const range = ranges.get(batch.partition);
            if (!range || !pending.has(batch.partition)) return;
            for (const m of batch.messages) {
              const offset = BigInt(m.offset);
              // Records fetched before the seek below took effect start earlier: skip them.
              if (offset < range.start || offset >= range.high) continue;
              const key = m.key?.toString('utf8') ?? null;
              if (opts.key !== undefined && key !== opts.key) continue;
              out.push({ partition: batch.partition, offset: m.offset, timestamp: new Date(Number(m.timestamp)).toISOString(), key, value: m.value?.toString('utf8') ?? null });
            }
            if (BigInt(batch.lastOffset()) + 1n >= range.high) pending.delete(batch.partition);
            if (pending.size === 0) resolve();
          },
        })
        .then(() => {
          // seek() is only allowed once run() has started.
          for (const [partition, r] of ranges) consumer.seek({ topic, partition, offset: r.start.toString() });
        }, reject);
    }).finally(() => clearTimeout(timer));
  } finally {
    await consumer.disconnect();
  }
  return out;
}
