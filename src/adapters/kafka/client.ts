/**
 * kafkajs wiring: the only module that constructs kafkajs clients. Everything else sees the
 * narrow `Publisher` port and the consume loop in runtime/worker.ts.
 */
import { readFileSync } from 'node:fs';
import { Kafka, logLevel, type KafkaConfig, type Message, type Producer, type ProducerConfig, type SASLOptions, type IHeaders, CompressionTypes } from 'kafkajs';
import type { Config } from '../../config.js';
import type { Logger } from '../../runtime/log.js';
import './codecs.js'; // snappy, lz4 and zstd batches of other producers: registered with kafkajs once
import './transaction-coordinator.js'; // one FindCoordinator per transactional id, not two per transaction
import { PARTITIONER } from './partitioner.js';
import { untilKafkaAnswers } from './transient.js';

const IDEMPOTENT_RETRIES_WARNING = 'Limiting retries for the idempotent producer may invalidate EoS guarantees';

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
      // Said by every transactional producer (createPartitionedPublisher) at creation: its retries
      // are bounded on purpose (a fenced producer must fail, not retry), and the fence does not
      // rest on them.
      if (message === IDEMPOTENT_RETRIES_WARNING) return;
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
  headers?: IHeaders;
  /** The record's timestamp (ms since epoch, as a string); absent: the producer's clock. */
  timestamp?: string;
  /**
   * The input partition whose owner publishes this record (the enrich documents and pairs): it
   * goes out in that partition's transaction ({@link PartitionedPublisher}), so an instance that
   * lost the partition cannot publish it. Absent: the worker's plain publisher.
   */
  ownerPartition?: number;
  /** The partition to write to (enrich sending a record on to its pin's partition); absent: by key. */
  partition?: number;
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
 * start when it is left to its default): the Java client's rule for keyed records, decided as
 * kafkajs 2's DefaultPartitioner decides, computed faster (./partitioner.ts says how and why).
 */
export { PARTITIONER };

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
      for (const chunk of requestChunks(messages)) await send(chunk);
    },
    close: () => producer.disconnect(),
  };
}

/**
 * Publishing that only the current owner of an input partition can do: the Kafka way of fencing
 * a zombie (Kafka Streams' exactly-once "alpha": one transactional producer per input partition).
 *
 * Each input partition has its own transactional id, `<prefix><partition>`. `claim` connects a
 * new producer with it and initialises it (InitProducerId): the broker bumps the producer epoch
 * of that id, aborts whatever transaction an earlier owner left open (a zombie frozen mid-flush),
 * and from then on refuses that owner's produce and EndTxn with INVALID_PRODUCER_EPOCH. So a
 * zombie's documents are either committed before the new owner starts (older than anything the
 * new owner publishes) or never visible to a read_committed reader. kafkajs 2.2.4 initialises a
 * transactional producer on its first `transaction()` (not on connect), once per producer, and
 * treats INVALID_PRODUCER_EPOCH as not retriable: a fenced producer is useless and is dropped;
 * the next claim (after a rejoin) makes a new one. A transaction that fails for another reason
 * (the broker went away between its produce and its commit) can leave kafkajs' producer unable
 * to begin another; `publish` then throws and replaces it with a freshly initialised one.
 */
export interface PartitionedPublisher {
  claim(partition: number): Promise<void>;
  release(partition: number): Promise<void>;
  /**
   * One transaction with all of `messages`; `fenced` when another owner claimed the partition
   * since. Throws on any other failure (retry: the next call uses a fresh producer).
   */
  publish(partition: number, messages: OutMessage[]): Promise<'published' | 'fenced'>;
  close(): Promise<void>;
}

/** INVALID_PRODUCER_EPOCH (47), PRODUCER_FENCED (90, newer brokers; unknown to kafkajs 2.2.4), or a wrapper of one. */
export function isProducerFenced(err: unknown): boolean {
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 5; e = (e as { cause?: unknown; originalError?: unknown }).cause ?? (e as { originalError?: unknown }).originalError, depth++) {
    const { type, code } = e as { type?: unknown; code?: unknown };
    if (type === 'INVALID_PRODUCER_EPOCH' || type === 'PRODUCER_FENCED' || code === 47 || code === 90) return true;
  }
  return false;
}

export function createPartitionedPublisher(kafka: Kafka, transactionalIdPrefix: string, transactionTimeoutMs = 60_000): PartitionedPublisher {
  const producers = new Map<number, Promise<Producer>>();
  const drop = async (partition: number, p: Promise<Producer> | undefined) => {
    if (producers.get(partition) === p) producers.delete(partition);
    await p?.then((producer) => producer.disconnect()).catch(() => undefined);
  };
  const send = (producer: Producer, messages: OutMessage[]) => producer.transaction().then(async (txn) => {
    try {
      for (const chunk of requestChunks(messages)) {
        await txn.sendBatch({ acks: -1, compression: CompressionTypes.None, topicMessages: [...chunk].map(([topic, msgs]) => ({ topic, messages: msgs })) });
      }
      await txn.commit();
    } catch (err) {
      if (txn.isActive()) await txn.abort().catch(() => undefined);
      throw err;
    }
  });
  /** A producer under the partition's transactional id, fenced in: InitProducerId on its first transaction (an empty one ends locally). */
  const start = async (partition: number): Promise<Producer> => {
    const producer = createProducer(kafka, { transactionalId: `${transactionalIdPrefix}${partition}`, idempotent: true, maxInFlightRequests: 1, transactionTimeout: transactionTimeoutMs, allowAutoTopicCreation: false });
    await producer.connect();
    const txn = await producer.transaction();
    await txn.abort();
    return producer;
  };
  return {
    async claim(partition) {
      await drop(partition, producers.get(partition));
      const p = start(partition);
      producers.set(partition, p);
      p.catch(() => (producers.get(partition) === p ? producers.delete(partition) : undefined));
      await p;
    },
    release: (partition) => drop(partition, producers.get(partition)),
    async publish(partition, messages) {
      const p = producers.get(partition);
      if (!p) return 'fenced'; // never claimed here, or released: not this instance's to publish
      try {
        await send(await p, messages);
        return 'published';
      } catch (err) {
        if (isProducerFenced(err)) {
          await drop(partition, p);
          return 'fenced';
        }
        // Anything else (the broker went away mid-transaction, a request timed out): kafkajs may
        // have left the transaction half-ended. An abort that failed too leaves its producer in
        // ABORTING for good (every later transaction() throws: measured with the broker stopped
        // between a produce and the commit). So the partition gets a fresh producer under the same
        // transactional id, whose InitProducerId aborts whatever the old one left open; the
        // caller retries (the tick re-reads its pins, still dirty). The partition is still this
        // instance's: its documents were read under its owner epoch in this tick.
        if (producers.get(partition) === p) {
          const next = drop(partition, p).then(() => start(partition));
          next.catch(() => undefined); // a failed start is met (and renewed again) by the next publish
          producers.set(partition, next);
        }
        throw err;
      }
    },
    async close() {
      await Promise.all([...producers].map(([partition, p]) => drop(partition, p)));
    },
  };
}

/** Bytes of a record's header keys and values (string lengths as a near bound). */
function headerBytes(headers: IHeaders | undefined): number {
  if (!headers) return 0; // documents and pairs have none: nothing allocated per record
  let n = 0;
  for (const [k, v] of Object.entries(headers)) for (const x of Array.isArray(v) ? v : [v]) n += k.length + (x?.length ?? 0);
  return n;
}

/** Messages grouped by topic, in requests of at most {@link MAX_REQUEST_BYTES} of keys, values and headers. */
function requestChunks(messages: OutMessage[]): Array<Map<string, Message[]>> {
  const out: Array<Map<string, Message[]>> = [];
  let byTopic = new Map<string, Message[]>();
  let bytes = 0;
  for (const m of messages) {
    const size = (m.value === null ? 0 : m.value.length) + m.key.length + headerBytes(m.headers);
    if (bytes > 0 && bytes + size > MAX_REQUEST_BYTES) {
      out.push(byTopic);
      byTopic = new Map();
      bytes = 0;
    }
    bytes += size;
    let list = byTopic.get(m.topic);
    if (!list) byTopic.set(m.topic, (list = []));
    list.push({ key: m.key, value: m.value, headers: m.headers, ...(m.partition === undefined ? {} : { partition: m.partition }), ...(m.timestamp === undefined ? {} : { timestamp: m.timestamp }) });
  }
  if (byTopic.size > 0) out.push(byTopic);
  return out;
}
