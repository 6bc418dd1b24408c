/**
 * A kafkajs partition assigner that keeps co-partitioned topics together: partition N of every
 * subscribed topic goes to the same group member (Kafka Streams assigns its tasks the same way).
 *
 * The enrich inputs (pins.events, pins.engagement, pins.captions) are keyed and partitioned by
 * pin id, and the enrich state of input partition N is one unit, claimed by one owner (its Redis
 * epoch, its Kafka transactional id). kafkajs' default RoundRobinAssigner deals out the topics'
 * partitions one by one, so with a member count that does not divide the partition count (3
 * instances, 4 partitions) pins.events-0 and pins.engagement-0 land on different members: each
 * claims partition 0 from the other, and neither makes progress.
 *
 * Partitions go to the members (sorted by member id) in turn, partition N to member N mod count.
 * The worker offers kafkajs' round robin as its second choice: the group picks a protocol every
 * member offers, so during a rolling upgrade from a pinrich without this assigner the group runs
 * round robin (as before), and this one once every member offers it.
 */
import { AssignerProtocol, type Assigner, type PartitionAssigner } from 'kafkajs';

export const CO_PARTITIONED_ASSIGNER_NAME = 'PinrichCoPartitioned';

/** Partition N of every topic, for each member: the pure part, on member ids and partition counts. */
export function coPartitionedAssignment(memberIds: readonly string[], partitionsByTopic: ReadonlyMap<string, number>): Map<string, Record<string, number[]>> {
  const members = [...memberIds].sort();
  const out = new Map<string, Record<string, number[]>>(members.map((m) => [m, {}]));
  if (members.length === 0) return out;
  const most = Math.max(0, ...partitionsByTopic.values());
  for (let p = 0; p < most; p++) {
    const assignment = out.get(members[p % members.length]!)!;
    for (const [topic, count] of partitionsByTopic) if (p < count) (assignment[topic] ??= []).push(p);
  }
  return out;
}

export const CoPartitionedAssigner: PartitionAssigner = ({ cluster }): Assigner => ({
  name: CO_PARTITIONED_ASSIGNER_NAME,
  version: 0,
  async assign({ members, topics }) {
    const counts = new Map(topics.map((t) => [t, cluster.findTopicPartitionMetadata(t).length] as const));
    return [...coPartitionedAssignment(members.map((m) => m.memberId), counts)].map(([memberId, topicPartitions]) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: topicPartitions, userData: Buffer.alloc(0) }),
    }));
  },
  protocol({ topics }) {
    return { name: CO_PARTITIONED_ASSIGNER_NAME, metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) };
  },
});
