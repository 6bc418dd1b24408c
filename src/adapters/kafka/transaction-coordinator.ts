/**
 * kafkajs 2.2.4 looks its transaction coordinator up again (a FindCoordinator request) before
 * every AddPartitionsToTxn and every EndTxn: two extra round trips in each transaction, in
 * series with the others. Enrich publishes one transaction per input partition per tick, so
 * those lookups were 22 % of its Kafka requests at 2,500 events/s (bench/results/enrich-levers.md).
 * The Java producer finds its coordinator once and asks again only when the coordinator
 * answered NOT_COORDINATOR or went away.
 *
 * Here the answer (the coordinator's node id) is kept per kafkajs cluster (one per producer)
 * and transactional id, for at most {@link KEEP_MS}. The broker connection itself is still
 * taken through kafkajs' `findBroker`, which connects when needed. A coordinator that moved
 * fails the next request of the transaction; pinrich's partitioned publisher then replaces the
 * producer, whose new cluster starts with nothing cached (adapters/kafka/client.ts). Lookups of
 * consumer group coordinators go through as before (kafkajs' consumer keeps its own).
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface CoordinatorMetadata {
  coordinator: { nodeId: number };
}
type Lookup = (this: object, args: { groupId: string; coordinatorType?: number }) => Promise<CoordinatorMetadata>;

/** FindCoordinator's key type of a transaction coordinator (0 is a consumer group's). */
const TRANSACTION = 1;
/** How long a found coordinator is used without asking again. */
export const KEEP_MS = 60_000;

const found = new WeakMap<object, Map<string, { metadata: Promise<CoordinatorMetadata>; at: number }>>();

// kafkajs' internal cluster class: the version is pinned in package-lock.json, and the unit test
// of this module fails if the method is renamed or no longer used for transactions.
const Cluster = require('kafkajs/src/cluster/index.js') as { prototype: { findGroupCoordinatorMetadata: Lookup } };
const lookUp = Cluster.prototype.findGroupCoordinatorMetadata;

Cluster.prototype.findGroupCoordinatorMetadata = function (this: object, args) {
  if (args.coordinatorType !== TRANSACTION) return lookUp.call(this, args);
  let byId = found.get(this);
  if (!byId) found.set(this, (byId = new Map()));
  const kept = byId.get(args.groupId);
  if (kept && Date.now() - kept.at < KEEP_MS) return kept.metadata;
  const metadata = lookUp.call(this, args);
  const entry = { metadata, at: Date.now() };
  byId.set(args.groupId, entry);
  // A failed lookup is not kept: the next call asks again.
  metadata.catch(() => (byId.get(args.groupId) === entry ? byId.delete(args.groupId) : undefined));
  return metadata;
};
