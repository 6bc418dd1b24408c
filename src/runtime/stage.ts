/**
 * The one contract every worker stage implements. The runtime (worker.ts) owns Kafka: it feeds
 * a stage batches of raw records, publishes what the stage returns, runs the stage's `commit`
 * once those records are durable on Kafka, and only then commits the consumed offsets.
 */
import type { DeadLetterCode } from '../../schemas/dead-letter.js';
import type { OutMessage } from '../adapters/kafka/client.js';

export type StageName = 'caption' | 'enrich' | 'score' | 'dump';

/** A consumed record, exactly as it came off the topic. */
export interface InRecord {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  value: Buffer | null;
  /** Broker/producer timestamp, ms since epoch. */
  timestamp: number;
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
  /** Effects to apply after `outputs` are durably published (e.g. mark documents emitted). */
  commit?: () => Promise<void>;
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
  close(): Promise<void>;
}

export const EMPTY_RESULT: StageResult = Object.freeze({ outputs: [], rejected: [] }) as StageResult;
