/**
 * pinrich's producers choose their partitioner explicitly: keys land where Kafka's Java clients
 * put them, and kafkajs' "switched default partitioner" warning is never logged.
 */
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { createProducer, createPublisher, PARTITIONER } from '../../src/adapters/kafka/client.js';
import { partitionOf } from '../../src/adapters/kafka/partitioner.js';
import { createRandom } from '../../src/demo/sample.js';

// Reference values from Kafka's Java client 4.1.1 (kafka-clients-4.1.1.jar, the jars the local
// stack runs, in ~/.cache/pinrich/kafka-*/libs), computed with
//   Utils.toPositive(Utils.murmur2(key.getBytes(StandardCharsets.UTF_8))) % n
// (what BuiltInPartitioner.partitionForKey does) for n = 2, 4, 7, 12, by a 15-line Ref.java run
// with `java -cp kafka-clients-4.1.1.jar:slf4j-api-*.jar Ref.java`.
const JAVA: Array<[key: string, partitions: [number, number, number, number]]> = [
  ['pin-1', [0, 2, 4, 6]],
  ['pin-2', [1, 3, 5, 3]],
  ['pin-000042', [1, 3, 5, 11]],
  ['a', [0, 0, 5, 4]],
  ['', [1, 1, 2, 9]],
  ['tarte aux pommes', [1, 3, 5, 7]],
  ['ünïcødé 😀', [1, 1, 2, 9]],
  ['00000000-0000-0000-0000-000000000000', [1, 1, 3, 9]],
  ['p', [0, 2, 4, 2]],
  ['pin-999999', [1, 3, 5, 3]],
  ['board:Summer Outfits', [0, 0, 5, 8]],
  ['k123456789', [1, 1, 2, 9]],
];
const COUNTS = [2, 4, 7, 12];

const metadata = (n: number) => Array.from({ length: n }, (_, i) => ({ partitionErrorCode: 0, partitionId: i, leader: 0, replicas: [0], isr: [0], offlineReplicas: [] }));

/** A kafkajs client whose log lines are recorded; it never reaches a broker (port 1, no retries). */
function recordingKafka() {
  const lines: string[] = [];
  const kafka = new Kafka({
    clientId: 'partitioner-test',
    brokers: ['127.0.0.1:1'],
    connectionTimeout: 200,
    retry: { retries: 0 },
    logLevel: logLevel.WARN,
    logCreator: () => (entry) => void lines.push(entry.log.message),
  });
  return { kafka, lines };
}

describe('producer partitioner', () => {
  it("puts keys on the partitions Kafka's Java client puts them on", () => {
    const partition = PARTITIONER();
    const got = JAVA.map(([key]) => [key, COUNTS.map((n) => partition({ topic: 't', partitionMetadata: metadata(n), message: { key, value: 'v' } }))]);
    expect(got).toEqual(JAVA);
  });

  it("gives enrich's check of a record's partition (partitionOf) the Java client's partitions too", () => {
    expect(JAVA.map(([key]) => [key, COUNTS.map((n) => partitionOf(key, n))])).toEqual(JAVA);
  });

  it("decides as kafkajs' DefaultPartitioner on many keys: strings of every length and script, Buffers, numbers, set partitions, no key", () => {
    const ours = PARTITIONER();
    const theirs = Partitioners.DefaultPartitioner();
    const r = createRandom(11);
    const alphabet = ['a', 'Z', '0', '-', ' ', 'é', 'ß', 'ü', '中', '文', '😀', '\u0000', '\uffff', '\ud800'];
    const keys: unknown[] = [];
    for (let i = 0; i < 3_000; i++) {
      const length = i < 200 ? i % 40 : Math.floor(r.next() * (i < 2_900 ? 60 : 3_000)); // past the scratch buffer too
      keys.push(Array.from({ length }, () => r.pick(alphabet)).join(''));
    }
    for (let i = 0; i < 300; i++) keys.push(Buffer.from(Array.from({ length: i % 37 }, () => Math.floor(r.next() * 256))));
    keys.push(42, 0, -7);
    const messages = keys.map((key) => ({ key: key as string, value: 'v' }));
    for (const n of [1, 3, 4, 12]) {
      for (const message of messages) {
        const args = { topic: 't', partitionMetadata: metadata(n), message };
        expect(ours(args), `${JSON.stringify(String(message.key)).slice(0, 40)} over ${n}`).toBe(theirs(args));
      }
      const placed = { topic: 't', partitionMetadata: metadata(n), message: { key: 'pin-1', value: 'v', partition: n - 1 } };
      expect(ours(placed)).toBe(n - 1);
    }
    // No key: round robin over the partitions with a leader (where it starts is random in both).
    const withLeaders = [...metadata(4).slice(0, 3), { ...metadata(4)[3]!, leader: -1 }];
    const spread = new Set(Array.from({ length: 30 }, () => ours({ topic: 'k', partitionMetadata: withLeaders, message: { value: 'v' } })));
    expect([...spread].sort()).toEqual([0, 1, 2]);
  });

  it('is what createProducer and createPublisher use, with no partitioner warning', async () => {
    const { kafka, lines } = recordingKafka();
    createProducer(kafka, { allowAutoTopicCreation: false });
    // createPublisher builds its producer before connecting; the connect fails (no broker).
    await expect(createPublisher(kafka)).rejects.toThrow();
    expect(lines.filter((l) => /partitioner/i.test(l))).toEqual([]);
    // Control: the same logger does see the warning for a producer left to kafkajs' default
    // (kafkajs logs it once per process, so this must come last).
    kafka.producer();
    expect(lines.filter((l) => /switched default partitioner/.test(l))).toHaveLength(1);
  });
});
