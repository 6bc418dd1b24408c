/**
 * kafkajs wiring: the only module that constructs kafkajs clients. Everything else sees the
 * narrow `Publisher` port and the consume loop in runtime/worker.ts.
 */
import { readFileSync } from 'node:fs';
import { Kafka, logLevel, Partitioners, type KafkaConfig, type Message, type Producer, type ProducerConfig, type SASLOptions, CompressionTypes } from 'kafkajs';
import type { Config } from '../../config.js';
import type { Logger } from '../../runtime/log.js';
import { untilKafkaAnswers } from './transient.js';

export function createKafka(config: Config, log: Logger, clientSuffix = ''): Kafka {
  return new Kafka(kafkaClientConfig(config, log, clientSuffix));
}

/**
 * The kafkajs client settings: TLS (with a private CA when PINRICH_KAFKA_SSL_CA_FILE names
 * one) and SASL PLAIN/SCRAM from the config. Exported so a test can check that every security
 * option reaches the client.
 */
export function kafkaClientConfig(config: Config, log: Logger, clientSuffix = ''): KafkaConfig {
  const kc: KafkaConfig = {
    clientId: `${config.kafkaClientId}${clientSuffix ? '-' + clientSuffix : ''}`,
    brokers: [...config.kafkaBrokers],
    ssl: config.kafkaSslCaFile ? { ca: [readFileSync(config.kafkaSslCaFile, 'utf8')] } : config.kafkaSsl,
    connectionTimeout: 5_000,
    requestTimeout: 30_000,
    retry: { retries: 8, initialRetryTime: 200, maxRetryTime: 10_000 },
    logLevel: logLevel.WARN,
    logCreator: () => (entry) => {
      const { message, ...rest } = entry.log;
      const level = entry.level <= logLevel.ERROR ? 'error' : entry.level === logLevel.WARN ? 'warn' : 'debug';
      log[level](`kafkajs ${entry.namespace}: ${message}`, rest);
    },
  };
  if (config.kafkaSaslMechanism !== 'none') {
    kc.sasl = {
      mechanism: config.kafkaSaslMechanism,
      username: config.kafkaSaslUsername ?? '',
      password: config.kafkaSaslPassword ?? '',
    } as SASLOptions;
  }
  return kc;
}

/** One record to publish. A null value is a tombstone. */
export interface OutMessage {
  topic: string;
  key: string;
  value: string | Buffer | null;
  headers?: Record<string, string>;
}

/** The publishing port: all-or-error, acks from all in-sync replicas. */
export interface Publisher {
  publish(messages: OutMessage[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * Bytes of record values per produce request at most. kafkajs puts all of a request's records
 * for one partition into one record batch, and the broker rejects a batch larger than
 * `message.max.bytes` (1 MiB by default) with MESSAGE_TOO_LARGE — for ever, since a retry
 * sends the same batch. So big publishes (an enrich tick flushing thousands of documents) go
 * out as several requests, one after another (order per key is kept).
 */
export const MAX_REQUEST_BYTES = 512 * 1024;

/**
 * The partitioner of every producer pinrich creates, chosen explicitly (kafkajs warns at every
 * start when it is left to its default): kafkajs 2's DefaultPartitioner, the Java client's rule
 * for keyed records, `Utils.toPositive(Utils.murmur2(keyBytes)) % partitions`
 * (clients/src/main/java/org/apache/kafka/clients/producer/internals/BuiltInPartitioner.java,
 * partitionForKey). So a pin lands on the partition a Java or Kafka Streams producer would put it
 * on, which the co-partitioned enrich inputs (pins.events, pins.engagement, pins.captions) need
 * when other producers write them.
 */
export const PARTITIONER = Partitioners.DefaultPartitioner;

/** A kafkajs producer with pinrich's partitioner (the only way pinrich, its tests, demo and benchmarks make one). */
export function createProducer(kafka: Kafka, config: Omit<ProducerConfig, 'createPartitioner'> = {}): Producer {
  return kafka.producer({ ...config, createPartitioner: PARTITIONER });
}

/** `wait`: wait that long for an unreachable cluster at connect (a worker starting during a broker restart). */
export async function createPublisher(kafka: Kafka, wait?: { log: Logger; timeoutMs: number }): Promise<Publisher> {
  const producer: Producer = createProducer(kafka, { allowAutoTopicCreation: false, maxInFlightRequests: 5 });
  if (wait) await untilKafkaAnswers('producer: connect', () => producer.connect(), wait);
  else await producer.connect();
  const send = (byTopic: Map<string, Message[]>) =>
    producer.sendBatch({
      acks: -1,
      compression: CompressionTypes.None,
      topicMessages: [...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs })),
    });
  return {
    async publish(messages) {
      if (messages.length === 0) return;
      let byTopic = new Map<string, Message[]>();
      let bytes = 0;
      for (const m of messages) {
        const size = (m.value === null ? 0 : m.value.length) + m.key.length;
        if (bytes > 0 && bytes + size > MAX_REQUEST_BYTES) {
          await send(byTopic);
          byTopic = new Map();
          bytes = 0;
        }
        bytes += size;
        let list = byTopic.get(m.topic);
        if (!list) byTopic.set(m.topic, (list = []));
        list.push({ key: m.key, value: m.value, headers: m.headers });
      }
      await send(byTopic);
    },
    close: () => producer.disconnect(),
  };
}
