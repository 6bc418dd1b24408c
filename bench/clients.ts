/**
 * The Kafka client: kafkajs (what pinrich uses) against @platformatic/kafka on the same work —
 * produce N records of the engagement size to a 4-partition topic (batches of 1,000, acks=all,
 * 4 requests in flight), then consume them all from the beginning in a fresh group. Each client
 * runs in this process, one after the other, on its own topic.
 *
 *   tsx bench/clients.ts [--quick]
 */
import { Consumer, Producer, ProduceAcks, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { Kafka, logLevel } from 'kafkajs';
import { createProducer } from '../src/adapters/kafka/client.js';
import { benchEnv, dropRun, benchStack, configOf, createPlainTopic, figure, round, standalone, type BenchOptions, type BenchResult, type Figure } from './lib.js';
import { engagementMessage } from './data.js';

const BATCH = 1_000;

/**
 * @platformatic/kafka 2.12.1 calls Promise.withResolvers (Node 22+): on Node 20 it fails with
 * "TypeError: Promise.withResolvers is not a function". The bench adds the three-line standard
 * polyfill so the comparison can run here; pinrich itself could not adopt the client on Node 20
 * without it.
 */
const NEEDS_POLYFILL = typeof (Promise as { withResolvers?: unknown }).withResolvers !== 'function';
if (NEEDS_POLYFILL) {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value<T>() {
      let resolve!: (v: T) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
      return { promise, resolve, reject };
    },
  });
}
const IN_FLIGHT = 4;

async function inBatches(count: number, send: (from: number, to: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const from = next;
      next = Math.min(count, from + BATCH);
      await send(from, next);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
}

export async function runClients(opts: BenchOptions): Promise<BenchResult> {
  const records = opts.quick ? 50_000 : 300_000;
  const stack = await benchStack(opts.log);
  const config = configOf(benchEnv(stack));
  try {
    const brokers = [...config.kafkaBrokers];
    const values = Array.from({ length: 1_000 }, (_, i) => engagementMessage(i, 10_000, 'clients'));
    const msg = (i: number) => values[i % values.length]!;
    const figures: Figure[] = [];
    const settings = { records, batch: BATCH, inFlight: IN_FLIGHT, acks: 'all', partitions: config.topicPartitions, recordBytes: Buffer.byteLength(String(values[0]!.value)) };

    // kafkajs
    {
      const topic = `${config.topicPrefix}clients-kafkajs`;
      await createPlainTopic(config, topic, config.topicPartitions);
      const kafka = new Kafka({ clientId: 'bench-kafkajs', brokers, logLevel: logLevel.NOTHING });
      const producer = createProducer(kafka);
      await producer.connect();
      let t = performance.now();
      await inBatches(records, async (from, to) => {
        const messages = [];
        for (let i = from; i < to; i++) messages.push({ key: msg(i).key as string, value: msg(i).value as string });
        await producer.send({ topic, acks: -1, messages });
      });
      const produceRate = records / ((performance.now() - t) / 1000);
      await producer.disconnect();
      const consumer = kafka.consumer({ groupId: `${config.groupPrefix}.clients-kafkajs`, maxBytesPerPartition: 1024 * 1024 });
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      let seen = 0;
      let first = 0;
      const done = new Promise<number>((resolve) => {
        void consumer.run({
          eachBatch: async ({ batch }) => {
            if (!first) first = performance.now();
            seen += batch.messages.length;
            if (seen >= records) resolve(performance.now());
          },
        });
      });
      t = performance.now();
      const end = await done;
      await consumer.disconnect();
      const consumeRate = records / ((end - first) / 1000);
      figures.push(
        figure({ name: 'kafkajs 2.2.4 produce', value: round(produceRate), unit: 'records/s', command: 'tsx bench/clients.ts (kafkajs producer.send)', settings }),
        figure({ name: 'kafkajs 2.2.4 consume', value: round(consumeRate), unit: 'records/s', command: 'tsx bench/clients.ts (kafkajs consumer.run eachBatch; from first batch)', settings }),
      );
    }

    // @platformatic/kafka
    {
      const topic = `${config.topicPrefix}clients-platformatic`;
      await createPlainTopic(config, topic, config.topicPartitions);
      const producer = new Producer({ clientId: 'bench-platformatic', bootstrapBrokers: brokers, serializers: stringSerializers });
      let t = performance.now();
      await inBatches(records, async (from, to) => {
        const messages = [];
        for (let i = from; i < to; i++) messages.push({ topic, key: msg(i).key as string, value: msg(i).value as string });
        await producer.send({ messages, acks: ProduceAcks.ALL });
      });
      const produceRate = records / ((performance.now() - t) / 1000);
      await producer.close();
      const consumer = new Consumer({ groupId: `${config.groupPrefix}.clients-platformatic`, clientId: 'bench-platformatic', bootstrapBrokers: brokers, deserializers: stringDeserializers });
      const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false, maxBytesPerPartition: 1024 * 1024 } as Parameters<typeof consumer.consume>[0]);
      let seen = 0;
      let first = 0;
      t = performance.now();
      const end = await new Promise<number>((resolve) => {
        stream.on('data', () => {
          if (!first) first = performance.now();
          if (++seen >= records) resolve(performance.now());
        });
      });
      await stream.close();
      await consumer.close(true);
      const consumeRate = records / ((end - first) / 1000);
      figures.push(
        figure({ name: '@platformatic/kafka 2.12.1 produce', value: round(produceRate), unit: 'records/s', command: 'tsx bench/clients.ts (platformatic Producer.send)', settings }),
        figure({ name: '@platformatic/kafka 2.12.1 consume', value: round(consumeRate), unit: 'records/s', command: "tsx bench/clients.ts (platformatic consumer.consume mode 'earliest'; from first record)", settings }),
      );
    }
    return { bench: 'clients', figures, details: { platformaticNeededPromiseWithResolversPolyfill: NEEDS_POLYFILL, node: process.version } };
  } finally {
    await dropRun(config, opts.log);
  }
}

standalone(import.meta.url, runClients);
