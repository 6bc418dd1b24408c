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

export interface EngagementChange {
  pinId: string;
  eventId: string;
  kind: 'board' | 'query';
  text: string;
  partition: number;
}

export interface PinChange {
  partition: number;
  pinId: string;
  eventTimeMs: number;
  type: 'created' | 'updated' | 'deleted';
  pin: PinFields | null;
}

/** What a flush published for one pin (null in {@link FlushCommit}: nothing). `doc` null = tombstone. */
export interface Published {
  hash: string;
  version: number;
  doc: string | null;
}

export interface FlushCommit {
  partition: number;
  pin: StoredPin;
  published: Published | null;
  queries: string[];
}

export interface EnrichStateStore {
  /** Apply many pin events in order; returns per event whether it applied (false: stale). */
  applyPins(changes: PinChange[], nowMs: number): Promise<boolean[]>;
  /** Apply many engagement events; returns per event: 0 duplicate, -1 ignored (deleted pin), 1 counted. */
  applyEngagements(changes: EngagementChange[], nowMs: number): Promise<number[]>;
  /** Returns 1 when the caption changed, 0 when identical, -1 for a deleted pin. */
  applyCaption(partition: number, pinId: string, caption: CaptionState, nowMs: number): Promise<number>;
  /** Pins of `partition` dirty since at most `dueBeforeMs`, oldest first. */
  duePins(partition: number, dueBeforeMs: number, limit: number): Promise<string[]>;
  /** True when no pin of these partitions is dirty (every change flushed). */
  allFlushed(partitions: readonly number[]): Promise<boolean>;
  readPins(pins: ReadonlyArray<{ partition: number; pinId: string }>, topK: number): Promise<StoredPin[]>;
  /**
   * After publishing: record each pin's published document (null: nothing published) and drop
   * its published new queries; true per pin whose dirty mark was cleared (false: it changed
   * since it was read and stays dirty).
   */
  commitFlushes(items: FlushCommit[]): Promise<boolean[]>;
  /** True when the state marker is present: the state is complete (see stages/enrich/rebuild.ts). */
  stateReady(): Promise<boolean>;
  /** Write the state marker. `onlyIfAbsent` keeps an existing one (fresh-deployment start). */
  markStateReady(info: { source: 'fresh' | 'rebuild'; at: string }, onlyIfAbsent?: boolean): Promise<void>;
  /** Rebuild: put back a pin's last published version, content hash and document (null = tombstone: hash only). */
  restorePublished(partition: number, pinId: string, hash: string, version: number, doc: string | null): Promise<void>;
  /** Rebuild: forget new-query marks of queries already published as pairs. */
  forgetNewQueries(partition: number, pinId: string, queries: string[]): Promise<void>;
  /**
   * Exact counts of a pin, for tests and inspection, looked up in each of `partitions` (a pin's
   * state is in one of them: its input partition).
   */
  counts(pinId: string, partitions: readonly number[]): Promise<{ boards: Record<string, number>; queries: Record<string, number>; engagements: number }>;
}
