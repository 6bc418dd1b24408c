/**
 * The partitioner of every producer pinrich creates: the Java client's rule for keyed records,
 * `Utils.toPositive(Utils.murmur2(keyBytes)) % partitions`
 * (clients/src/main/java/org/apache/kafka/clients/producer/internals/BuiltInPartitioner.java,
 * partitionForKey), so a pin lands on the partition a Java or Kafka Streams producer would put it
 * on, which the co-partitioned enrich inputs (pins.events, pins.engagement, pins.captions) need
 * when other producers write them.
 *
 * It decides exactly as kafkajs 2's DefaultPartitioner does (test/unit/partitioner.test.ts
 * compares the two on many keys), at a fraction of the cost: kafkajs computes murmur2 with a
 * 64-bit Long object per step and copies the partition list for every message, ~3 µs per
 * record, where enrich publishes one record per document. Here murmur2 is 32-bit integer
 * arithmetic (Math.imul, as Java's int overflow) over the key's UTF-8 bytes, written into a
 * reused buffer.
 */
import { randomBytes } from 'node:crypto';
import type { ICustomPartitioner, PartitionerArgs } from 'kafkajs';

const SEED = 0x9747b28c | 0;
const M = 0x5bd1e995;
const scratch = Buffer.allocUnsafe(4096);

/** Kafka's murmur2 (Utils.murmur2 of the Java client) of `data[0, length)`, as a signed 32-bit int. */
export function murmur2(data: Uint8Array, length = data.length): number {
  let h = SEED ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & ~3;
  switch (length & 3) {
    case 3:
      h ^= data[tail + 2]! << 16;
    // falls through
    case 2:
      h ^= data[tail + 1]! << 8;
    // falls through
    case 1:
      h ^= data[tail]!;
      h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** murmur2 of a record key as kafkajs reads it: a Buffer as is, anything else as String(key) in UTF-8. */
export function keyHash(key: unknown): number {
  if (Buffer.isBuffer(key)) return murmur2(key);
  const s = String(key);
  // A UTF-8 character takes at most 3 bytes per UTF-16 unit: a short key fits the scratch buffer.
  if (s.length * 3 <= scratch.length) return murmur2(scratch, scratch.write(s, 0, 'utf8'));
  return murmur2(Buffer.from(s, 'utf8'));
}

const toPositive = (x: number) => x & 0x7fffffff;

/** The partition of `key` among `partitions` under this partitioner (and Kafka's Java clients'). */
export function partitionOf(key: string, partitions: number): number {
  return toPositive(keyHash(key)) % partitions;
}

/**
 * kafkajs' DefaultPartitioner rule: the message's own partition when it has one; else by key
 * hash over all partitions; else round robin over the partitions that have a leader.
 */
export const PARTITIONER: ICustomPartitioner = () => {
  const counters = new Map<string, number>();
  return ({ topic, partitionMetadata, message }: PartitionerArgs) => {
    if (message.partition !== null && message.partition !== undefined) return message.partition;
    if (message.key !== null && message.key !== undefined) return toPositive(keyHash(message.key)) % partitionMetadata.length;
    const next = (counters.get(topic) ?? randomBytes(4).readUInt32BE(0)) + 1;
    counters.set(topic, next);
    const available = partitionMetadata.filter((p) => p.leader >= 0);
    if (available.length > 0) return available[toPositive(next) % available.length]!.partitionId;
    return toPositive(next) % partitionMetadata.length;
  };
};
