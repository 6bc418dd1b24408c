/**
 * kafkajs wiring: the only module that constructs kafkajs clients. Everything else sees the
 * narrow `Publisher` port and the consume loop in runtime/worker.ts.
 */
import { Kafka, logLevel, type KafkaConfig, type Message, type Producer, type SASLOptions, CompressionTypes } from 'kafkajs';
import type { Config } from '../../config.js';
import type { Logger } from '../../runtime/log.js';

export function createKafka(config: Config, log: Logger, clientSuffix = ''): Kafka {
  const kc: KafkaConfig = {
    clientId: `${config.kafkaClientId}${clientSuffix ? '-' + clientSuffix : ''}`,
    brokers: [...config.kafkaBrokers],
    ssl: config.kafkaSsl,
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
  return new Kafka(kc);
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

export async function createPublisher(kafka: Kafka): Promise<Publisher> {
  const producer: Producer = kafka.producer({ allowAutoTopicCreation: false, maxInFlightRequests: 5 });
  await producer.connect();
  return {
    async publish(messages) {
      if (messages.length === 0) return;
      const byTopic = new Map<string, Message[]>();
      for (const m of messages) {
        let list = byTopic.get(m.topic);
        if (!list) byTopic.set(m.topic, (list = []));
        list.push({ key: m.key, value: m.value, headers: m.headers });
      }
      await producer.sendBatch({
        acks: -1,
        compression: CompressionTypes.None,
        topicMessages: [...byTopic].map(([topic, msgs]) => ({ topic, messages: msgs })),
      });
    },
    close: () => producer.disconnect(),
  };
}
