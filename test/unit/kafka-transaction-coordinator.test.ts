/**
 * The transaction-coordinator cache pinrich adds to kafkajs (src/adapters/kafka/transaction-coordinator.ts),
 * through kafkajs' own lookup method on a cluster whose broker pool is a stand-in that counts
 * FindCoordinator requests: a transactional id is looked up once per cluster (and again after
 * KEEP_MS or a failed lookup), consumer groups every time as before. The same on the real broker,
 * counted per request of real transactions: test/integration/partitioned-publisher.test.ts.
 */
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KEEP_MS } from '../../src/adapters/kafka/transaction-coordinator.js';

type Lookup = (args: { groupId: string; coordinatorType?: number }) => Promise<{ coordinator: { nodeId: number } }>;
const { prototype } = createRequire(import.meta.url)('kafkajs/src/cluster/index.js') as { prototype: { findGroupCoordinatorMetadata: Lookup } };

/** A cluster (kafkajs' own class and methods) whose one broker answers FindCoordinator with `answer`. */
function cluster(answer: () => Promise<{ coordinator: { nodeId: number } }>) {
  const asked: Array<{ groupId: string; coordinatorType?: number }> = [];
  const broker = {
    findGroupCoordinator: (args: { groupId: string; coordinatorType?: number }) => {
      asked.push(args);
      return answer();
    },
  };
  const c = Object.assign(Object.create(prototype) as { findGroupCoordinatorMetadata: Lookup }, {
    brokerPool: { withBroker: (fn: (b: { nodeId: number; broker: typeof broker }) => Promise<unknown>) => fn({ nodeId: 1, broker }) },
    retrier: (fn: (bail: (e: Error) => never) => Promise<unknown>) => fn((e) => { throw e; }),
    logger: { debug: () => undefined },
  });
  return { c, asked };
}
const found = (nodeId: number) => async () => ({ coordinator: { nodeId } });

describe('transaction coordinator lookups', () => {
  afterEach(() => vi.useRealTimers());

  it('asks once per transactional id and cluster, and again after KEEP_MS', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { c, asked } = cluster(found(3));
    for (let i = 0; i < 4; i++) expect((await c.findGroupCoordinatorMetadata({ groupId: 'pinrich.enrich-p0', coordinatorType: 1 })).coordinator.nodeId).toBe(3);
    await c.findGroupCoordinatorMetadata({ groupId: 'pinrich.enrich-p1', coordinatorType: 1 });
    expect(asked.map((a) => a.groupId)).toEqual(['pinrich.enrich-p0', 'pinrich.enrich-p1']);
    vi.setSystemTime(Date.now() + KEEP_MS + 1);
    await c.findGroupCoordinatorMetadata({ groupId: 'pinrich.enrich-p0', coordinatorType: 1 });
    expect(asked).toHaveLength(3);
    // Another cluster (another producer: a replaced one) keeps nothing of this one's.
    const other = cluster(found(3));
    await other.c.findGroupCoordinatorMetadata({ groupId: 'pinrich.enrich-p0', coordinatorType: 1 });
    expect(other.asked).toHaveLength(1);
  });

  it('keeps no failed lookup', async () => {
    let fail = true;
    const { c, asked } = cluster(async () => {
      if (fail) throw Object.assign(new Error('coordinator not available'), { type: 'COORDINATOR_NOT_AVAILABLE' });
      return { coordinator: { nodeId: 2 } };
    });
    await expect(c.findGroupCoordinatorMetadata({ groupId: 'pinrich.enrich-p0', coordinatorType: 1 })).rejects.toThrow(/not available/);
    fail = false;
    expect((await c.findGroupCoordinatorMetadata({ groupId: 'pinrich.enrich-p0', coordinatorType: 1 })).coordinator.nodeId).toBe(2);
    expect(asked).toHaveLength(2);
  });

  it('asks for a consumer group coordinator every time, as kafkajs does', async () => {
    const { c, asked } = cluster(found(1));
    await c.findGroupCoordinatorMetadata({ groupId: 'pinrich.enrich' });
    await c.findGroupCoordinatorMetadata({ groupId: 'pinrich.enrich', coordinatorType: 0 });
    expect(asked).toHaveLength(2);
  });
});
