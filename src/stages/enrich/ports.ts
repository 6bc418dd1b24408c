/**
 * The port of the enrich stage: the per-pin state it writes (and reads back to build documents).
 * Owned by the stage; `adapters/redis/enrich-state.ts` implements it on Redis. Readers of the
 * published documents (score, `labels export`) do not use this port: they have their own,
 * narrower one (`DocumentReader`, stages/score/ports.ts).
 *
 * Every method that touches a pin names the pin's input partition: the state of a partition is
 * kept together (one Redis Cluster hash slot per partition, see adapters/redis/keys.ts), which
 * the co-partitioned enrich inputs make possible (one pin, one partition).
 */
import type { CaptionState, PinFields } from '../../core/document.js';

export interface StoredPin {
  pinId: string;
  gen: string;
  deleted: boolean;
  pin: PinFields | null;
  caption: CaptionState | null;
  engagements: number;
  version: number;
  hash: string;
  boards: Array<{ text: string; count: number }>;
  queries: Array<{ text: string; count: number }>;
  newQueries: string[];
}

/** One change to a pin, in arrival order (see {@link PartitionBatch}). */
export type PinOp =
  | { op: 'pin'; eventTimeMs: number; type: 'created' | 'updated' | 'deleted'; pin: PinFields | null }
  | { op: 'caption'; caption: CaptionState }
  /** Consecutive engagement events; `event` indexes {@link PartitionBatch.eventIds}. */
  | { op: 'engagements'; events: Array<{ event: number; kind: 'board' | 'query'; text: string }> };

/**
 * One flush interval of one partition's records, aggregated per pin (each pin's changes in
 * arrival order), with the input offsets they cover. Written atomically, fenced by `epoch`.
 */
export interface PartitionBatch {
  partition: number;
  /** The owner epoch this instance got from {@link EnrichStateStore.claimPartition}; null = no fencing (the rebuild). */
  epoch: number | null;
  /** Refuse to write when the partition's state is not marked complete (the worker; not the rebuild). */
  requireReady: boolean;
  /** Per topic, the next input offset once this batch is in the state. */
  offsets: Array<{ topic: string; next: string }>;
  /** Engagement event ids of the batch, unique (in-batch duplicates are dropped before). */
  eventIds: string[];
  pins: Array<{ pinId: string; ops: PinOp[] }>;
}

export interface ApplyOutcome {
  /**
   * `fenced`: another instance claimed the partition; `missing`: the partition's state is not
   * there (no `ready` flag, or no owner epoch: lost with a Redis node, then rebuilt: claim it
   * again with {@link EnrichStateStore.claimPartition}'s `resumeEpoch`). Nothing written then.
   */
  status: 'applied' | 'fenced' | 'missing';
  counted: number;
  duplicates: number;
  ignored: number;
  pinsApplied: number;
  pinsStale: number;
  captions: number;
}

export interface PartitionClaim {
  epoch: number;
  /** The partition's state is marked complete. */
  ready: boolean;
  /** Per topic, the next input offset the state already covers. */
  offsets: Map<string, bigint>;
}

/**
 * What a flush published for one pin (null in {@link FlushCommit}: nothing). `doc` null = tombstone;
 * otherwise the document's JSON (the stage hands over the UTF-8 bytes it produced to Kafka).
 */
export interface Published {
  hash: string;
  version: number;
  doc: Buffer | string | null;
}

export interface FlushCommit {
  partition: number;
  pin: StoredPin;
  published: Published | null;
  queries: string[];
}

/** Told of each partition a fenced read or commit refused, and why (see {@link ApplyOutcome.status}). */
export type RefusedPartition = (partition: number, status: 'fenced' | 'missing') => void;

export interface EnrichStateStore {
  /**
   * Take over a partition: bump its owner epoch (fencing any previous owner's later writes) and
   * return what its state already covers. With `resumeEpoch` (the state was lost and rebuilt,
   * its epoch with it): put that epoch back unless a higher one is there, and return the
   * partition's epoch after that (the caller still owns it when it is `resumeEpoch`).
   */
  claimPartition(partition: number, resumeEpoch?: number): Promise<PartitionClaim>;
  /** Apply one partition's batch atomically with its offsets (one script run, one cluster slot). */
  applyBatch(batch: PartitionBatch, nowMs: number): Promise<ApplyOutcome>;
  /** Pins of `partition` dirty since at most `dueBeforeMs` (epoch ms), oldest first, with that time. */
  duePins(partition: number, dueBeforeMs: number, limit: number): Promise<Array<{ pinId: string; dirtySince: number }>>;
  /** True when no pin of these partitions is dirty (every change flushed). */
  allFlushed(partitions: readonly number[]): Promise<boolean>;
  /**
   * The state of many pins. With `epochs` (partition -> owner epoch), a partition this instance
   * no longer owns yields null for its pins: nothing may be published from it.
   */
  readPins(pins: ReadonlyArray<{ partition: number; pinId: string }>, topK: number, epochs?: ReadonlyMap<number, number>, onRefused?: RefusedPartition): Promise<Array<StoredPin | null>>;
  /**
   * After publishing: record each pin's published document (null: nothing published) and drop
   * its published new queries; true per pin whose dirty mark was cleared (false: it changed
   * since it was read and stays dirty).
   */
  commitFlushes(items: FlushCommit[], epochs?: ReadonlyMap<number, number>, onRefused?: RefusedPartition): Promise<boolean[]>;
  /** True when the state marker is present: the state is complete (see stages/enrich/rebuild.ts). */
  stateReady(): Promise<boolean>;
  /**
   * Write the state marker, and mark each of `partitions` complete. `onlyIfAbsent` keeps an
   * existing marker (fresh-deployment start) and then marks partitions only when it wrote it.
   */
  markStateReady(info: { source: 'fresh' | 'rebuild'; at: string }, partitions: readonly number[], onlyIfAbsent?: boolean): Promise<void>;
  /**
   * Rebuild: put back a pin's last published version, content hash and document (null =
   * tombstone: hash only, `version` the one of the document it ends), never over a later one.
   */
  restorePublished(partition: number, pinId: string, hash: string, version: number, doc: string | null): Promise<void>;
  /** Rebuild: forget new-query marks of queries already published as pairs. */
  forgetNewQueries(partition: number, pinId: string, queries: string[]): Promise<void>;
  /**
   * Exact counts of a pin, for tests and inspection, looked up in each of `partitions` (a pin's
   * state is in one of them: its input partition).
   */
  counts(pinId: string, partitions: readonly number[]): Promise<{ boards: Record<string, number>; queries: Record<string, number>; engagements: number }>;
}
