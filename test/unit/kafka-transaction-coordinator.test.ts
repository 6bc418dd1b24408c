/**
 * The transaction-coordinator cache pinrich adds to kafkajs (src/adapters/kafka/transaction-coordinator.ts),
 * through kafkajs' own lookup methods on a cluster whose broker pool is a stand-in that counts
 * FindCoordinator requests: a transactional id is looked up once per cluster (and again after
 * KEEP_MS, after a failed lookup, or when its broker cannot be had), consumer groups every time
 * as before. The same on the real broker, counted per request of real transactions:
 * test/integration/partitioned-publisher.test.ts.
 */
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KEEP_MS } from '../../src/adapters/kafka/transaction-coordinator.js';

interface Broker {
  nodeId: number;
}
type Lookup = (args: { groupId: string; coordinatorType?: number }) => Promise<Broker>;
const { prototype } = createRequire(import.meta.url)('kafkajs/src/cluster/index.js') as { prototype: { findGroupCoordinator: Lookup } };

/**
 * A cluster (kafkajs' own class and methods) whose one seed broker answers FindCoordinator with
 * `answer`, and whose brokers by node id are `reachable` ones.
 */
function cluster(answer: () => Promise<number>, reachable = (nodeId: number) => nodeId > 0) {
  const asked: string[] = [];
  const seed = {
    findGroupCoordinator: async (args: { groupId: string }) => {
      asked.push(args.groupId);
      return { coordinator: { nodeId: await answer() } };
    },
  };
  const c = Object.assign(Object.create(prototype) as { findGroupCoordinator: Lookup }, {
    brokerPool: { withBroker: (fn: (b: { nodeId: number; broker: typeof seed }) => Promise<unknown>) => fn({ nodeId: 0, broker: seed }) },
    retrier: (fn: (bail: (e: Error) => never) => Promise<unknown>) => fn((e) => { throw e; }),
    logger: { debug: () => undefined },
    findBroker: async ({ nodeId }: { nodeId: number }): Promise<Broker> => {
      if (!reachable(nodeId)) throw Object.assign(new Error(`broker ${nodeId} not found`), { name: 'KafkaJSBrokerNotFound' });
      return { nodeId };
    },
    refreshMetadata: async () => undefined,
  });
  return { c, asked };
}
const txn = (groupId: string) => ({ groupId, coordinatorType: 1 });

describe('transaction coordinator lookups', () => {
  afterEach(() => vi.useRealTimers());

  it('asks once per transactional id and cluster, and again after KEEP_MS', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { c, asked } = cluster(async () => 3);
    for (let i = 0; i < 4; i++) expect((await c.findGroupCoordinator(txn('pinrich.enrich-p0'))).nodeId).toBe(3);
    await c.findGroupCoordinator(txn('pinrich.enrich-p1'));
    expect(asked).toEqual(['pinrich.enrich-p0', 'pinrich.enrich-p1']);
    vi.setSystemTime(Date.now() + KEEP_MS + 1);
    await c.findGroupCoordinator(txn('pinrich.enrich-p0'));
    expect(asked).toHaveLength(3);
    // Another cluster (another producer: a replaced one) keeps nothing of this one's.
    const other = cluster(async () => 3);
    await other.c.findGroupCoordinator(txn('pinrich.enrich-p0'));
    expect(other.asked).toHaveLength(1);
  });

  it('keeps no failed lookup', async () => {
    let fail = true;
    const { c, asked } = cluster(async () => {
      if (fail) throw Object.assign(new Error('coordinator not available'), { type: 'COORDINATOR_NOT_AVAILABLE' });
      return 2;
    });
    await expect(c.findGroupCoordinator(txn('pinrich.enrich-p0'))).rejects.toThrow(/not available/);
    fail = false;
    expect((await c.findGroupCoordinator(txn('pinrich.enrich-p0'))).nodeId).toBe(2);
    expect(asked).toHaveLength(2);
  });

  it('looks the coordinator up again when its broker cannot be had', async () => {
    let coordinator = 4;
    let up = new Set([4]);
    const { c, asked } = cluster(async () => coordinator, (id) => up.has(id));
    expect((await c.findGroupCoordinator(txn('pinrich.enrich-p0'))).nodeId).toBe(4);
    // Broker 4 leaves; the coordinator moved to 5.
    coordinator = 5;
    up = new Set([5]);
    expect((await c.findGroupCoordinator(txn('pinrich.enrich-p0'))).nodeId).toBe(5);
    expect((await c.findGroupCoordinator(txn('pinrich.enrich-p0'))).nodeId).toBe(5);
    expect(asked).toHaveLength(2);
  });

  it('asks for a consumer group coordinator every time, as kafkajs does', async () => {
    const { c, asked } = cluster(async () => 1);
    await c.findGroupCoordinator({ groupId: 'pinrich.enrich' });
    await c.findGroupCoordinator({ groupId: 'pinrich.enrich', coordinatorType: 0 });
    expect(asked).toHaveLength(2);
  });
});
