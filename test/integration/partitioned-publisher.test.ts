/**
 * The zombie fence at the broker, on the stack's real Kafka: two instances publishing for the same
 * input partition through createPartitionedPublisher. Once the second claimed the partition, the
 * first one's transactions fail with INVALID_PRODUCER_EPOCH (`fenced`), including one it had
 * opened before the claim (a zombie frozen mid-flush), and read-committed readers never see them.
 * And on a private broker stopped between a transaction's produce and its commit: the partition
 * publishes again once the broker is back (kafkajs leaves such a producer stuck in ABORTING).
 */
import { randomUUID } from 'node:crypto';
import type { Kafka, Producer, Transaction } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createPartitionedPublisher, isProducerFenced, type PartitionedPublisher } from '../../src/adapters/kafka/client.js';
import type { Config } from '../../src/config.js';
import { startPrivateKafka } from '../faults/support/fleet.js';
import { readToEnd, testConfig, testKafka } from '../support/harness.js';

describe.skipIf(!inject('stack'))('partitioned publisher (Kafka transactions per input partition)', () => {
  let config: Config;
  let topic: string;
  const open: PartitionedPublisher[] = [];
  beforeAll(async () => {
    config = testConfig();
    topic = `${config.topicPrefix}fence-${randomUUID().slice(0, 8)}`;
    const admin = testKafka(config).admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
    await admin.disconnect();
  });
  afterAll(async () => {
    await Promise.all(open.map((p) => p.close()));
  });
  const publisher = () => {
    const p = createPartitionedPublisher(testKafka(config), `${config.topicPrefix}fence-test-p`);
    open.push(p);
    return p;
  };
  const msg = (value: string) => ({ topic, key: 'pin-1', value, ownerPartition: 0 });

  it('fences the earlier owner of a partition at the broker once the next one claims it', async () => {
    const zombie = publisher();
    const owner = publisher();
    await zombie.claim(0);
    await zombie.claim(1);
    expect(await zombie.publish(0, [msg('zombie, before the move')])).toBe('published');
    await owner.claim(0); // the partition moved: InitProducerId bumps the epoch of its transactional id
    expect(await zombie.publish(0, [msg('zombie, after the move')])).toBe('fenced');
    expect(await zombie.publish(0, [msg('zombie, again')])).toBe('fenced'); // its producer is gone for good
    expect(await zombie.publish(1, [{ ...msg('zombie, its other partition'), ownerPartition: 1 }])).toBe('published');
    expect(await owner.publish(0, [msg('owner')])).toBe('published');
    const seen = (await readToEnd(config, topic)).map((r) => r.value).sort();
    expect(seen).toEqual(['owner', 'zombie, before the move', 'zombie, its other partition']);
  });

  it('aborts a transaction the earlier owner had open when it froze', async () => {
    const kafka = testKafka(config);
    const id = `${config.topicPrefix}fence-open-p0`;
    const frozen = kafka.producer({ transactionalId: id, idempotent: true, maxInFlightRequests: 1 });
    await frozen.connect();
    try {
      const txn = await frozen.transaction();
      await txn.send({ topic, messages: [{ key: 'pin-2', value: 'frozen mid-flush', partition: 0 }] });
      const owner = createPartitionedPublisher(kafka, `${config.topicPrefix}fence-open-p`);
      open.push(owner);
      await owner.claim(0);
      const err = await txn.commit().then(() => undefined, (e: unknown) => e);
      expect(isProducerFenced(err)).toBe(true);
      expect(await owner.publish(0, [{ topic, key: 'pin-2', value: 'owner of pin-2', ownerPartition: 0 }])).toBe('published');
      const values = (await readToEnd(config, topic)).filter((r) => r.key === 'pin-2').map((r) => r.value);
      expect(values).toEqual(['owner of pin-2']);
    } finally {
      await frozen.disconnect();
    }
  });

  it('finds its transaction coordinator once, not before each request of every transaction', async () => {
    const kafka = testKafka(config);
    const requests: string[] = [];
    const counting = {
      ...kafka,
      producer: (cfg) => {
        const producer: Producer = kafka.producer(cfg);
        producer.on(producer.events.REQUEST, (e) => requests.push(e.payload.apiName));
        return producer;
      },
    } as Kafka;
    const p = createPartitionedPublisher(counting, `${config.topicPrefix}fence-coord-p`);
    open.push(p);
    await p.claim(0);
    const claimed = requests.length;
    for (let i = 0; i < 5; i++) expect(await p.publish(0, [msg(`coordinator ${i}`)])).toBe('published');
    const during = requests.slice(claimed);
    // Each transaction: AddPartitionsToTxn, Produce, EndTxn (kafkajs alone looks the coordinator
    // up again before AddPartitionsToTxn and before EndTxn: 10 FindCoordinator requests here).
    expect(during.filter((a) => a === 'EndTxn')).toHaveLength(5);
    expect(during.filter((a) => a === 'GroupCoordinator')).toEqual([]);
    expect(requests.slice(0, claimed)).toContain('GroupCoordinator'); // found once, for InitProducerId
  });
});

/**
 * `kafka`, whose transactional producers run `afterProduce` once, right after the first produce
 * of a transaction that carries `marker` (the transaction is then open at the broker).
 */
function withHookAfterProduce(kafka: Kafka, marker: string, afterProduce: () => Promise<void>): Kafka {
  let armed = true;
  const hookTxn = (txn: Transaction): Transaction => ({
    ...txn,
    async sendBatch(batch) {
      const out = await txn.sendBatch(batch);
      const carries = batch.topicMessages?.some((t) => t.messages.some((m) => String(m.value) === marker));
      if (armed && carries) {
        armed = false;
        await afterProduce();
      }
      return out;
    },
  });
  return {
    ...kafka,
    producer: (cfg) => {
      const producer: Producer = kafka.producer(cfg);
      return { ...producer, transaction: async () => hookTxn(await producer.transaction()) };
    },
  } as Kafka;
}

describe.skipIf(!inject('stack'))('partitioned publisher, broker stopped mid-transaction', () => {
  it('publishes the partition again once the broker is back (a fresh producer aborts what the stuck one left open)', async () => {
    const broker = await startPrivateKafka();
    try {
      const config = testConfig({ PINRICH_KAFKA_BROKERS: broker.brokers.join(',') });
      const topic = `${config.topicPrefix}txn-down-${randomUUID().slice(0, 8)}`;
      const admin = testKafka(config).admin();
      await admin.connect();
      await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
      await admin.disconnect();
      const kafka = withHookAfterProduce(testKafka(config), 'in flight when the broker stopped', () => broker.down());
      const publisher = createPartitionedPublisher(kafka, `${config.topicPrefix}txn-down-p`);
      try {
        await publisher.claim(0);
        const msg = (value: string) => ({ topic, key: 'pin-1', value, ownerPartition: 0 });
        expect(await publisher.publish(0, [msg('before')])).toBe('published');
        // The produce went out; the broker stops before the commit: commit and abort both fail.
        const err = await publisher.publish(0, [msg('in flight when the broker stopped')]).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(Error);
        expect(isProducerFenced(err)).toBe(false);
        await broker.up();
        // As the worker does: retry until published (the first tries may meet the broker still loading).
        let outcome: string | undefined;
        for (let attempt = 0; attempt < 10 && outcome !== 'published'; attempt++) {
          outcome = await publisher.publish(0, [msg('after the restart')]).catch((e: unknown) => `failed: ${String(e)}`);
          if (outcome !== 'published') await new Promise((r) => setTimeout(r, 1_000));
        }
        expect(outcome).toBe('published');
        const values = (await readToEnd(config, topic)).map((r) => r.value);
        expect(values[0]).toBe('before');
        expect(values.at(-1)).toBe('after the restart');
        expect(values).not.toContain('in flight when the broker stopped'); // aborted: read_committed never sees it
      } finally {
        await publisher.close();
      }
    } finally {
      await broker.stop();
    }
  }, 240_000);
});
