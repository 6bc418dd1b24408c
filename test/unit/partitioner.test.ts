/**
 * pinrich's producers choose their partitioner explicitly: keys land where Kafka's Java clients
 * put them, and kafkajs' "switched default partitioner" warning is never logged.
 */
import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { createProducer, createPublisher, PARTITIONER } from '../../src/adapters/kafka/client.js';

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
