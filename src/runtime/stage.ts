/**
 * The one contract every worker stage implements. The runtime (worker.ts) owns Kafka: it feeds
 * a stage batches of raw records, publishes what the stage returns, runs the stage's `commit`
 * once those records are durable on Kafka, and only then commits the consumed offsets.
 */
import type { IHeaders, KafkaMessage } from 'kafkajs';
import type { DeadLetterCode } from '../../schemas/dead-letter.js';
import type { OutMessage, PartitionedPublisher } from '../adapters/kafka/client.js';
import type { WorkerName } from '../workers.js';

/** A stage is named after its worker (src/workers.ts). */
export type StageName = WorkerName;

/** A consumed record, exactly as it came off the topic. */
export interface InRecord {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  value: Buffer | null;
  /** Broker/producer timestamp, ms since epoch. */
  timestamp: number;
  /** The record's headers as its producer wrote them (values as bytes; kafkajs' object, not a copy). */
  headers?: IHeaders;
}

/** A consumed kafkajs message as the stages see it. */
export function inRecordOf(topic: string, partition: number, m: KafkaMessage): InRecord {
  return { topic, partition, offset: m.offset, key: m.key === null ? null : m.key.toString('utf8'), value: m.value, timestamp: Number(m.timestamp), headers: m.headers };
}

/** A record the stage gives up on: it goes to `<topic>.dlq` with the raw bytes. */
export interface Rejection {
  record: InRecord;
  code: DeadLetterCode;
  reason: string;
}

export interface StageResult {
  outputs: OutMessage[];
  rejected: Rejection[];
  /**
   * Effects to apply after `outputs` are durably published (e.g. mark documents emitted).
   * `fenced`: input partitions whose outputs ({@link OutMessage.ownerPartition}) were refused
   * because another instance took the partition over: nothing of theirs was published.
   */
  commit?: (fenced?: ReadonlySet<number>) => Promise<void>;
  /**
   * Only read on results of `handle`: the offset to commit for the batch's partition once this
   * result is delivered, in Kafka's convention (the next offset to read, i.e. last safe + 1).
   * - absent (every stage whose effects are durable when `handle` returns): commit past the
   *   batch's last record, as always;
   * - `null`: commit nothing now. The stage holds these records in memory (e.g. the dump
   *   buffering rows for one Parquet object); they are redelivered after a restart or rebalance;
   * - `"N"`: commit N, at most the batch's last offset + 1. Used when a buffered span became
   *   durable while later records of the batch are still held.
   * The fetch position always advances past the batch, whatever is committed.
   */
  commitOffset?: string | null;
  /**
   * Only read on results of `tick`: offsets (Kafka's convention: the next to read) the stage
   * made durable outside `handle` — the enrich stage, which applies buffered records to its
   * state on the tick. The worker commits them after `outputs` and `commit`, then reports them
   * back through {@link Stage.committed}.
   */
  commitOffsets?: Array<{ topic: string; partition: number; offset: string }>;
  /**
   * Only read on results of `tick`: the tick stopped at its budget with more work already due
   * (the enrich stage's due pins). The worker runs the next tick at once instead of after the
   * tick period, so a backlog drains at the rate ticks run, not one budget per period.
   */
  moreDue?: boolean;
}

export interface StageContext {
  signal: AbortSignal;
  /** Keep group membership alive during long batches. */
  heartbeat(): Promise<void>;
}

export interface Stage {
  readonly name: StageName;
  /** Process one batch of records of one topic-partition. Throws only for infrastructure errors (retried). */
  handle(batch: InRecord[], ctx: StageContext): Promise<StageResult>;
  /** Periodic work outside batches (e.g. flushing coalesced documents), for the given partitions. */
  tick?(assigned: ReadonlyMap<string, readonly number[]>, ctx: StageContext): Promise<StageResult>;
  /**
   * Called each time this instance (re)joins its group, with its new assignment. After a rejoin
   * Kafka redelivers every assigned partition from its last committed offset, so a stage that
   * holds uncommitted records (`commitOffset`) must drop them here or it would hold them twice.
   */
  onAssignment?(assigned: ReadonlyMap<string, readonly number[]>): void;
  /**
   * The stage commits its offsets from `tick` (StageResult.commitOffsets): the worker then stops
   * by pausing the consumer and running a last tick while still a group member, so what the
   * stage holds is made durable and committed before it leaves the group.
   */
  readonly commitsOnTick?: boolean;
  /**
   * Publishes the outputs that name an {@link OutMessage.ownerPartition}, one transaction per
   * input partition, so that only the partition's current owner can (the enrich stage).
   */
  readonly partitionedPublisher?: PartitionedPublisher;
  /** The worker committed these offsets of a tick's `commitOffsets`. */
  committed?(offsets: ReadonlyArray<{ topic: string; partition: number; offset: string }>): void;
  close(): Promise<void>;
}

export const EMPTY_RESULT: StageResult = Object.freeze({ outputs: [], rejected: [] }) as StageResult;
