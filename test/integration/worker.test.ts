/**
 * The consume loop (runtime/worker.ts) on the real broker, with a stage that does nothing but
 * record what it was given: group-membership failures must end in a rejoin and a redelivery,
 * never in a dead consumer.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createKafka, createPublisher, type Publisher } from '../../src/adapters/kafka/client.js';
import type { Config } from '../../src/config.js';
import { systemClock } from '../../src/runtime/clock.js';
import { createLogger } from '../../src/runtime/log.js';
import { PinrichError } from '../../src/errors.js';
import { EMPTY_RESULT, type InRecord, type Stage } from '../../src/runtime/stage.js';
import { startWorker } from '../../src/runtime/worker.js';
import { subscriptionOf } from '../../src/workers.js';
import { caughtUp, produce, setupTopics, testConfig, waitFor } from '../support/harness.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** A Kafka client and publisher for `config`, closed after the file; `lines` gets the log lines. */
async function kafkaFor(config: Config, lines: string[] = []) {
  const log = createLogger('warn', {}, (line) => lines.push(line));
  const kafka = createKafka(config, log);
  const publisher: Publisher = await createPublisher(kafka);
  cleanups.push(() => publisher.close());
  return { log, kafka, publisher };
}

describe('consume loop', () => {
  it('a member evicted during a long batch rejoins, gets the batch again and commits it', async () => {
    const config = testConfig();
    const t = await setupTopics(config);
    await produce(config, t.pairs, Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: { n: i } })));

    const lines: string[] = [];
    const { log, kafka, publisher } = await kafkaFor(config, lines);

    const sessionTimeoutMs = 6_000; // the broker's minimum
    const handled: string[] = [];
    let stalled = false;
    const stage: Stage = {
      name: 'score',
      async handle(batch: InRecord[]) {
        handled.push(...batch.map((r) => `${r.partition}:${r.offset}`));
        if (!stalled) {
          // No heartbeat for longer than the session timeout: the group evicts this member, and
          // the commit after this batch fails with UNKNOWN_MEMBER_ID.
          stalled = true;
          await new Promise((r) => setTimeout(r, sessionTimeoutMs + 4_000));
        }
        return EMPTY_RESULT;
      },
      async close() {},
    };
    const groupId = `${config.groupPrefix}.evicted`;
    const worker = await startWorker({ kafka, groupId, topics: [t.pairs], stage, publisher, log, clock: systemClock, sessionTimeoutMs });
    cleanups.push(() => worker.stop());

    await waitFor('the group to commit every record', () => caughtUp(config, groupId, [t.pairs]), 90_000, 500);
    // The stalled batch was redelivered after the rejoin: some offsets were handled twice, and
    // every one of the 20 records at least once.
    const distinct = new Set(handled);
    expect(distinct.size).toBe(20);
    expect(handled.length).toBeGreaterThan(20);
    // kafkajs rejoined by itself: the consumer never crashed (a wrapped membership error used to
    // crash it for good), and the worker reports itself healthy.
    expect(lines.filter((l) => l.includes('Crash:') || l.includes('consumer crashed'))).toEqual([]);
    expect(worker.health()).toEqual({ joined: true, crashed: false });
  }, 120_000);

  it("enrich's group assigns partition N of all three inputs to one instance, whatever the instance count", async () => {
    const config = testConfig({ PINRICH_TOPIC_PARTITIONS: '4' });
    await setupTopics(config);
    const { log, kafka, publisher } = await kafkaFor(config);
    const idle: Stage = { name: 'enrich', handle: async () => EMPTY_RESULT, async close() {} };
    // The enrich worker's own subscription (its three inputs, its consumer settings).
    const sub = subscriptionOf('enrich', config);
    expect(sub.topics).toHaveLength(3);
    const admin = kafka.admin();
    await admin.connect();
    cleanups.push(() => admin.disconnect());
    const members = async () => {
      const { groups } = await admin.describeGroups([sub.groupId]);
      const { AssignerProtocol } = await import('kafkajs');
      return (groups[0]?.members ?? []).map((m) => AssignerProtocol.MemberAssignment.decode(m.memberAssignment)?.assignment ?? {});
    };
    // 2 then 3 instances (3 does not divide 4: kafkajs' round robin would split partition 0's topics).
    let started = 0;
    for (const count of [2, 3]) {
      for (; started < count; started++) {
        const w = await startWorker({ ...sub, kafka, stage: idle, publisher, log, clock: systemClock, sessionTimeoutMs: 6_000 });
        cleanups.push(() => w.stop());
      }
      // Every member holding something: the rebalance for the newest one is done.
      const assignments = await waitFor(`an assignment of ${count} members`, async () => {
        const m = await members();
        return m.length === count && m.every((a) => Object.values(a).some((parts) => parts.length > 0)) ? m : undefined;
      }, 60_000, 200);
      const owners = new Map<number, Set<number>>(); // partition -> member indexes holding it (any topic)
      const seen: string[] = [];
      assignments.forEach((a, member) => {
        for (const [topic, parts] of Object.entries(a)) {
          for (const p of parts) {
            (owners.get(p) ?? owners.set(p, new Set()).get(p)!).add(member);
            seen.push(`${topic}:${p}`);
          }
        }
      });
      expect(seen.sort()).toEqual(sub.topics.flatMap((t) => [0, 1, 2, 3].map((p) => `${t}:${p}`)).sort());
      for (const [p, holders] of owners) expect(holders.size, `partition ${p} is held by ${holders.size} members`).toBe(1);
    }
  }, 120_000);

  it("enrich's group admits a member of an older pinrich (round robin only) during a rolling upgrade", async () => {
    const config = testConfig();
    await setupTopics(config);
    const { log, kafka, publisher } = await kafkaFor(config);
    const sub = subscriptionOf('enrich', config);
    const idle: Stage = { name: 'enrich', handle: async () => EMPTY_RESULT, async close() {} };
    const current = await startWorker({ ...sub, kafka, stage: idle, publisher, log, clock: systemClock, sessionTimeoutMs: 6_000 });
    cleanups.push(() => current.stop());
    const older = kafka.consumer({ groupId: sub.groupId, sessionTimeout: 6_000 }); // kafkajs' default assigner only
    cleanups.push(() => older.disconnect());
    await older.connect();
    for (const topic of sub.topics) await older.subscribe({ topic, fromBeginning: true });
    await older.run({ eachBatch: async () => {} });
    const admin = kafka.admin();
    await admin.connect();
    cleanups.push(() => admin.disconnect());
    const group = await waitFor('both members in the group', async () => {
      const { groups } = await admin.describeGroups([sub.groupId]);
      return groups[0]?.members.length === 2 && groups[0].state === 'Stable' ? groups[0] : undefined;
    }, 60_000, 200);
    expect(group.protocol).toBe('RoundRobinAssigner');
    expect(current.health()).toEqual({ joined: true, crashed: false });
  }, 120_000);

  it('a batch held by a failing stage is given up when the group rebalances: a joining member gets its partitions at once', async () => {
    const config = testConfig();
    const t = await setupTopics(config);
    await produce(config, t.pairs, Array.from({ length: 40 }, (_, i) => ({ key: `k${i}`, value: { n: i } })));
    const lines: string[] = [];
    const { log, kafka, publisher } = await kafkaFor(config, lines);
    const groupId = `${config.groupPrefix}.held`;

    // The first member's stage fails every batch (its infrastructure is down): the worker holds
    // the batch and retries it, heartbeating.
    let heldCalls = 0;
    const failing: Stage = {
      name: 'score',
      async handle() {
        heldCalls++;
        throw new PinrichError('state_unavailable', 'down for this test', { retriable: true });
      },
      async close() {},
    };
    const held = await startWorker({ kafka, groupId, topics: [t.pairs], stage: failing, publisher, log, clock: systemClock, sessionTimeoutMs: 6_000 });
    cleanups.push(() => held.stop());
    await waitFor('the first member to hold a batch', async () => heldCalls >= 2, 30_000, 200);

    // A second member joins. The group's rebalance waits for every member to rejoin, and kafkajs
    // rejoins only once the held batch returns: held through the rebalance, it would keep the
    // newcomer waiting for the whole rebalance timeout (60 s), then evict the first member.
    const handled = new Set<number>();
    const working: Stage = {
      name: 'score',
      async handle(batch: InRecord[]) {
        for (const r of batch) handled.add(r.partition);
        return EMPTY_RESULT;
      },
      async close() {},
    };
    const joined = Date.now();
    const second = await startWorker({ kafka, groupId, topics: [t.pairs], stage: working, publisher, log, clock: systemClock, sessionTimeoutMs: 6_000 });
    cleanups.push(() => second.stop());
    await waitFor('the second member to consume its partition', async () => handled.size > 0, 40_000, 200);
    const waitedMs = Date.now() - joined;
    // Both are members after the rebalance: the first one rejoined rather than being evicted.
    const admin = kafka.admin();
    await admin.connect();
    const { groups } = await admin.describeGroups([groupId]).finally(() => admin.disconnect());
    expect(groups[0]?.members).toHaveLength(2);
    expect(held.health()).toEqual({ joined: true, crashed: false });
    console.log(`[worker] the newcomer consumed ${(waitedMs / 1000).toFixed(1)} s after joining (rebalance timeout 60 s)`);
  }, 120_000);
});
