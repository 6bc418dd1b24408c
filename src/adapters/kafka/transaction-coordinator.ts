/**
 * kafkajs 2.2.4 looks its transaction coordinator up again (a FindCoordinator request) before
 * every AddPartitionsToTxn and every EndTxn: two extra round trips in each transaction, in
 * series with the others. Enrich publishes one transaction per input partition per tick, so
 * those lookups were 22 % of its Kafka requests at 2,500 events/s (bench/results/enrich-levers.md).
 * The Java producer finds its coordinator once and asks again only when the coordinator
 * answered NOT_COORDINATOR or went away.
 *
 * Here the coordinator found for a transactional id is kept per kafkajs cluster (one per
 * producer), for at most {@link KEEP_MS}, and the next lookup takes its broker through kafkajs'
 * `findBroker` (which connects when needed). When that fails (the broker left the metadata or
 * refuses connections) the entry is dropped and kafkajs looks the coordinator up as before. A
 * coordinator that moved to another live broker fails the transaction's next request instead;
 * pinrich's partitioned publisher then replaces the producer, whose new cluster starts with
 * nothing kept (adapters/kafka/client.ts). Consumer group lookups go through unchanged (kafkajs'
 * consumer keeps its coordinator itself).
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface ClusterLike {
  findGroupCoordinator(args: { groupId: string; coordinatorType?: number }): Promise<{ nodeId: number }>;
  findBroker(args: { nodeId: number }): Promise<{ nodeId: number }>;
}

/** FindCoordinator's key type of a transaction coordinator (0 is a consumer group's). */
const TRANSACTION = 1;
/** How long a found coordinator is used without asking again. */
export const KEEP_MS = 60_000;

const kept = new WeakMap<object, Map<string, { nodeId: number; at: number }>>();

// kafkajs' internal cluster class: the version is pinned in package-lock.json, and the tests of
// this module (unit and integration) fail if the method is renamed or no longer used for transactions.
const Cluster = require('kafkajs/src/cluster/index.js') as { prototype: ClusterLike };
const lookUp = Cluster.prototype.findGroupCoordinator;

Cluster.prototype.findGroupCoordinator = async function (this: ClusterLike, args) {
  if (args.coordinatorType !== TRANSACTION) return lookUp.call(this, args);
  let byId = kept.get(this);
  if (!byId) kept.set(this, (byId = new Map()));
  const k = byId.get(args.groupId);
  if (k && Date.now() - k.at < KEEP_MS) {
    try {
      return await this.findBroker({ nodeId: k.nodeId });
    } catch {
      byId.delete(args.groupId); // gone from the metadata, or unreachable: look it up again
    }
  }
  const broker = await lookUp.call(this, args); // a failed lookup keeps nothing
  byId.set(args.groupId, { nodeId: broker.nodeId, at: Date.now() });
  return broker;
};
