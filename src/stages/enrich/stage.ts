/**
 * Enrich stage: pins.events + pins.engagement + pins.captions -> per-pin state in Redis ->
 * compacted pins.enriched (and, optionally, relevance.pairs mined from search engagement).
 *
 * As Kafka Streams and Flink do, records are aggregated in memory for one flush interval and
 * each partition's changes are written once per interval, atomically with the input offsets they
 * cover (docs/architecture.md, "Enrich state"):
 *
 * - `handle` only decodes records into the partition's in-memory buffer (per pin, in arrival
 *   order) and returns at once, holding its offsets (`commitOffset: null`): the consumer keeps
 *   fetching instead of waiting on Redis. Records the state already covers (below the offsets
 *   stored with it) are skipped: that is how a redelivered record is recognised. When the
 *   buffered bytes reach the budget, `handle` waits for the next flush (backpressure).
 * - `tick` writes each partition's buffer in one script run (apply-batch: state, dedup by event
 *   id, dirty marks and the covered offsets together, fenced by the partition's owner epoch),
 *   then flushes pins that have been dirty for at least the coalescing window: builds each
 *   document, publishes it only when its content hash changed (version + 1), and clears the dirty
 *   mark after the publish; the worker then commits the covered offsets to Kafka.
 *
 * So a burst of engagement on a pin within the window yields one new version; a crash anywhere
 * re-applies only records the state does not cover and re-flushes rather than loses; an
 * instance that lost a partition without noticing (a zombie) writes nothing to its state.
 */
import type { Caption } from '../../../schemas/caption.js';
import type { EngagementEvent } from '../../../schemas/engagement-event.js';
import type { Pair } from '../../../schemas/pair.js';
import type { PinEvent } from '../../../schemas/pin-event.js';
import type { OutMessage, PartitionedPublisher } from '../../adapters/kafka/client.js';
import { partitionOf } from '../../adapters/kafka/partitioner.js';
import type { Topics } from '../../config.js';
import { decodeRecord } from '../../core/decode.js';
import { decodeEngagement } from './decode-engagement.js';
import { buildDocument, documentJson, pairIdOf, type PinFields } from '../../core/document.js';
import { loadLanguageDetector, needsDetection } from '../../core/language.js';
import { cleanText, foldText } from '../../core/text.js';
import { imageKeyOf } from '../../core/image-key.js';
import { PinrichError } from '../../errors.js';
import type { Clock } from '../../runtime/clock.js';
import type { Logger } from '../../runtime/log.js';
import type { InRecord, Rejection, Stage, StageContext, StageResult } from '../../runtime/stage.js';
import type { EnrichStateStore, FlushCommit, PartitionClaim, PinOp, Published, StoredPin } from './ports.js';

export interface EnrichStageDeps {
  store: EnrichStateStore;
  topics: Topics;
  topK: number;
  windowMs: number;
  minePairs: boolean;
  maxRecordBytes: number;
  clock: Clock;
  log: Logger;
  /** Pins flushed per tick at most (bounds memory and tick latency). */
  maxFlushPerTick?: number;
  /**
   * Refuse to apply or flush anything while the state marker is missing (the worker; not the
   * rebuild, which is what writes it). Without it, a Redis that restarted empty would turn into
   * documents built from a fraction of each pin's history.
   */
  requireState?: boolean;
  /**
   * Bytes of input records held in memory, all partitions together, before `handle` waits for
   * the next flush (PINRICH_ENRICH_BUFFER_BYTES). Bounds what the worker keeps between flushes.
   */
  bufferBytes?: number;
  /**
   * Coalescing window while catching up (the last flush found the buffer full: a backlog), so a
   * backlog yields fewer documents per event (PINRICH_ENRICH_CATCHUP_WINDOW_MS).
   */
  catchUpWindowMs?: number;
  /**
   * Fence writes by the partitions' owner epochs (the worker). The rebuild writes without: it
   * runs while the workers hold, and must not fence them.
   */
  fence?: boolean;
  /**
   * The partition count of an input topic (the worker: the broker's metadata; the rebuild: its
   * snapshot). With it, a record on another partition than its pin's (a producer that keyed it
   * otherwise, or partitioned with another hash than Kafka's Java clients' murmur2) is not applied
   * where it arrived, which would split the pin's state across two partitions: it is sent on to
   * its pin's partition of the same topic (an output; the rebuild publishes none, and applies
   * the copy the worker sent on). Absent (stage tests): no check.
   */
  inputPartitions?: (topic: string) => Promise<number>;
  /**
   * Publish each partition's documents and pairs in that partition's own Kafka transaction (the
   * worker): a zombie's publish then fails at the broker once the partition's new owner claimed
   * it (see adapters/kafka/client.ts). Without it (the rebuild, stage tests) outputs go out plain.
   */
  publisher?: PartitionedPublisher;
}

/** Thrown while the enrich state is missing: retriable, so the worker holds its offsets. */
export function stateMissingError(): PinrichError {
  return new PinrichError(
    'state_unavailable',
    'enrich state is missing from Redis (state marker absent: Redis restarted empty or was flushed); holding offsets and publishing nothing until `pinrich enrich rebuild` has run',
    { retriable: true },
  );
}

export interface EnrichStats {
  pinEvents: number;
  engagementEvents: number;
  duplicateEngagements: number;
  ignoredEngagements: number;
  captions: number;
  stalePinEvents: number;
  documents: number;
  tombstones: number;
  unchanged: number;
  pairs: number;
  /** Records that arrived on another partition than their pin's, sent on to it (see `inputPartitions`). */
  rerouted: number;
}

/** Image key of the pin's image: the one rule the caption stage keys its caption records by. */
function imageKey(url: string | undefined): string | null {
  return url ? imageKeyOf(url) : null;
}

export function pinFieldsOf(event: Extract<PinEvent, { type: 'created' | 'updated' }>): PinFields {
  return {
    title: cleanText(event.title),
    description: cleanText(event.description),
    image_key: imageKey(event.image_url),
    link_url: event.link?.url ?? null,
    link_title: cleanText(event.link?.title ?? ''),
    link_description: cleanText(event.link?.description ?? ''),
    language: event.language ?? null,
  };
}

/** One partition's records buffered since the last flush. */
interface Pending {
  pins: Map<string, PinOp[]>;
  eventIds: string[];
  seenIds: Set<string>;
  /** Per topic, the next offset after the last buffered record. */
  offsets: Map<string, bigint>;
  bytes: number;
  /** In-buffer duplicates of an event id (dropped here; counted as duplicates). */
  duplicates: number;
}

const emptyPending = (): Pending => ({ pins: new Map(), eventIds: [], seenIds: new Set(), offsets: new Map(), bytes: 0, duplicates: 0 });

/** A partition this instance works on since its last (re)join. */
interface Owned {
  partition: number;
  claim: Promise<PartitionClaim>;
  /** Set once the claim resolved. */
  epoch?: number;
  /** Per topic, the next offset the state covers (records below are already applied). */
  covered: Map<string, bigint>;
  /** Per topic, the next offset not yet taken in (applied, held or buffered). */
  next: Map<string, bigint>;
  /**
   * Per topic, the next offset this instance has not yet handed back to the worker (whose
   * delivery published the batch's dead letters). Commits never pass it: a record the state
   * covers (replayed by a rebuild, applied before a crash) still owes its dead letter, which only
   * this pass publishes, and a commit past it would skip that record on the next rejoin.
   */
  delivered: Map<string, bigint>;
  pending: Pending;
  /** Batches the state refused while its marker was missing: applied first, in order, once it is back. */
  held: Pending[];
  /** Another instance claimed it: its records are dropped until the next assignment. */
  fenced: boolean;
  /**
   * Its state is missing (lost with a Redis node): nothing is applied or published from it;
   * its batches are held until the state is rebuilt, then it is claimed again (same epoch).
   */
  lost: boolean;
  /** Its Kafka transactional id is claimed (InitProducerId done): its documents may be published. */
  publishing: boolean;
}

/** Memory cost of a buffered record beyond its bytes (maps, op objects): a rough constant. */
const RECORD_OVERHEAD_BYTES = 160;
/**
 * Records wait in the buffer at most this long before `handle` starts a state flush, whatever
 * the tick is doing: a record's document can only be built once it is in the state, so the wait
 * adds to freshness. Short against the coalescing window; long enough that a flush carries
 * thousands of records at steady rates (one script run per partition each time).
 */
const STATE_FLUSH_AGE_MS = 50;

export function createEnrichStage(deps: EnrichStageDeps): Stage & { stats(): EnrichStats; flushState(): Promise<void> } {
  const { store, topics, clock } = deps;
  const maxFlush = deps.maxFlushPerTick ?? 2_000;
  const bufferBytes = deps.bufferBytes ?? 16 * 1024 * 1024;
  const catchUpWindowMs = Math.max(deps.windowMs, deps.catchUpWindowMs ?? deps.windowMs);
  const fence = deps.fence ?? false;
  const stats: EnrichStats = {
    pinEvents: 0,
    engagementEvents: 0,
    duplicateEngagements: 0,
    ignoredEngagements: 0,
    captions: 0,
    stalePinEvents: 0,
    documents: 0,
    tombstones: 0,
    unchanged: 0,
    pairs: 0,
    rerouted: 0,
  };

  let owned = new Map<number, Owned>();
  /** The input partitions of this instance's latest assignment (undefined before the first). */
  let assignedPartitions: Set<number> | undefined;
  /** Offsets covered by the state and not yet confirmed committed to Kafka. */
  const toCommit = new Map<string, { topic: string; partition: number; offset: string }>();
  /**
   * The highest offset offered for commit per (topic, partition) since the assignment. Offers
   * arrive out of order: a state flush computes its commit points when its partition is applied
   * but hands them over when every partition's apply is done, and a batch delivered meanwhile
   * offers a later point. An older offer replacing a newer one was committed, taken off, and the
   * newer point never offered again: the group's last offsets stayed uncommitted (seen at the
   * end of a backlog). So only a higher offset is taken.
   */
  const offered = new Map<string, bigint>();
  function offerCommit(c: { topic: string; partition: number; offset: string }): void {
    const key = `${c.topic}\n${c.partition}`;
    const at = BigInt(c.offset);
    if (at <= (offered.get(key) ?? -1n)) return;
    offered.set(key, at);
    toCommit.set(key, c);
  }
  let buffered = 0; // bytes of every partition's pending + held batches
  let pendingBytes = 0; // bytes of the pending batches alone (not yet handed to a flush)
  let pendingSince: number | undefined; // when the oldest pending record was buffered
  let stateMissing = false;
  let catchingUp = false;
  /** Resolved after each state flush: what a `handle` waiting on the budget waits for. */
  let flushed: { promise: Promise<void>; resolve: () => void } | undefined;
  const waitForFlush = () => {
    flushed ??= (() => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { promise, resolve };
    })();
    return flushed.promise;
  };
  const signalFlushed = () => {
    const f = flushed;
    flushed = undefined;
    f?.resolve();
  };

  function ownedPartition(partition: number): Owned {
    let o = owned.get(partition);
    if (!o) {
      // Without fencing (the rebuild) nothing is claimed: the workers' epochs stay valid.
      // The state first, then the Kafka producer: once a zombie's publish is refused at the
      // broker, its commit-flushes is refused by the epoch too (it never records a document
      // that was not published).
      // The Kafka claim runs beside the records' intake (it takes a round trip to the transaction
      // coordinator, and handle() must not hold the consumer for it); nothing of the partition is
      // published before it is done.
      const claim = fence ? store.claimPartition(partition) : Promise.resolve<PartitionClaim>({ epoch: 0, ready: true, offsets: new Map() });
      const entry: Owned = { partition, claim, covered: new Map(), next: new Map(), delivered: new Map(), pending: emptyPending(), held: [], fenced: false, lost: false, publishing: !deps.publisher };
      if (fence && deps.publisher) void claim.then(() => claimPublishing(entry), () => undefined);
      entry.claim.then(
        (c) => {
          entry.epoch = c.epoch;
          entry.covered = new Map(c.offsets);
          entry.next = new Map(c.offsets);
        },
        () => {
          if (owned.get(partition) === entry) owned.delete(partition); // claimed again on the next batch
        },
      );
      owned.set(partition, (o = entry));
    }
    return o;
  }

  /**
   * The inputs' one partition count. While they differ it throws (the worker retries the batch
   * and says why, holding it): a pin's partition would depend on the topic, and its state would
   * be split whatever is sent where. Kafka Streams refuses such inputs at start for the same reason.
   */
  async function coPartitioned(countOf: (topic: string) => Promise<number>): Promise<number> {
    const inputs = [topics.pinEvents, topics.engagement, topics.captions];
    const counts = await Promise.all(inputs.map((t) => countOf(t)));
    if (counts.some((n) => n !== counts[0])) {
      const have = inputs.map((t, i) => `${t} ${counts[i]}`).join(', ');
      throw new PinrichError('config_invalid', `enrich's inputs must share one partition count (they are co-partitioned by pin id), and have ${have}; give them the same count (PINRICH_TOPIC_PARTITIONS)`, { retriable: true });
    }
    return counts[0]!;
  }

  let lastSentOnWarn = -Infinity;
  let sentOnSinceWarn = 0;
  /** Say (at most every 10 s) that records arrive on the wrong partition: their producer's partitioning is not pinrich's. */
  function warnSentOn(topic: string, partition: number, n: number): void {
    sentOnSinceWarn += n;
    if (clock.now() - lastSentOnWarn < 10_000) return;
    lastSentOnWarn = clock.now();
    deps.log.warn(
      "enrich: records arrived on another partition than their pin's and were sent on to it; their producer should key them by pin_id with Kafka's default (murmur2) partitioner",
      { topic, partition, records: sentOnSinceWarn },
    );
    sentOnSinceWarn = 0;
  }

  function addOp(p: Pending, pinId: string, op: PinOp): void {
    let ops = p.pins.get(pinId);
    if (!ops) p.pins.set(pinId, (ops = []));
    ops.push(op);
  }

  async function handle(batch: InRecord[], ctx?: StageContext): Promise<StageResult> {
    if (stateMissing && deps.requireState) throw stateMissingError();
    const rejected: Rejection[] = [];
    const first = batch[0];
    if (!first) return { outputs: [], rejected, commitOffset: null };
    const { topic, partition } = first;
    if (topic !== topics.engagement && topic !== topics.pinEvents && topic !== topics.captions) throw new Error(`enrich stage got a record of unexpected topic ${topic}`);
    // A batch of a partition this instance no longer has (fetched before a rebalance): claiming
    // it would fence its new owner. Nothing is taken; the records stay uncommitted.
    if (fence && assignedPartitions && !assignedPartitions.has(partition)) return { outputs: [], rejected, commitOffset: null };
    // Asked before anything of the partition is read: from the buffer swap on, nothing below
    // may wait (a state flush in between would take the buffer these records go into).
    const partitions = deps.inputPartitions ? await coPartitioned(deps.inputPartitions) : undefined;
    let o = ownedPartition(partition);
    await o.claim;
    o = owned.get(partition) ?? o; // a rejoin during the claim: use the fresh entry
    if (owned.get(partition) !== o) return { outputs: [], rejected, commitOffset: null };
    if (o.fenced) return { outputs: [], rejected, commitOffset: null };
    const from = o.next.get(topic) ?? -1n;
    const p = o.pending;
    let bytes = 0;
    const outputs: OutMessage[] = [];
    /**
     * True when `pinId` belongs to another partition: the record is then sent on to it, and
     * nothing of it is applied here. Also for a record the state already covers: sending on is
     * at-least-once, as dead letters are (the copy's duplicates are dropped by event id, or are
     * the same pin event or caption again).
     */
    const sentOn = (record: InRecord, pinId: string): boolean => {
      if (partitions === undefined) return false;
      const home = partitionOf(pinId, partitions);
      if (home === partition) return false;
      // The copy keeps what its producer gave the record besides the key: its headers (a trace
      // context, a schema id) and its timestamp (retention and time-based lookups see the
      // original time), as a Kafka Streams repartition topic does.
      outputs.push({ topic, key: pinId, value: record.value, partition: home, headers: record.headers, ...(record.timestamp >= 0 ? { timestamp: String(record.timestamp) } : {}) });
      stats.rerouted++;
      return true;
    };
    for (const record of batch) {
      // Already taken in: in the state (applied, but its Kafka commit did not happen before a
      // crash or move, or replayed by `enrich rebuild`) or in the buffer (this batch retried).
      // Recognised by its offset: nothing of it is applied again. It is still decoded, because a
      // bad record's dead letter is not part of the state: the rebuild never publishes one, and
      // a batch that failed (state missing) published none, so only this pass can. Dead letters
      // are at-least-once: a redelivered bad record may be dead-lettered twice, never not at all.
      const already = BigInt(record.offset) < from;
      if (!already) bytes += (record.value?.length ?? 0) + RECORD_OVERHEAD_BYTES;
      if (topic === topics.engagement) {
        const d = decodeEngagement(record.value, deps.maxRecordBytes);
        if (!d.ok) {
          rejected.push({ record, code: d.code, reason: d.reason });
          continue;
        }
        const e: EngagementEvent = d.value;
        const isSave = e.type === 'save';
        const text = foldText(isSave ? e.board_title : e.query);
        if (!text) {
          rejected.push({ record, code: 'schema_violation', reason: `${isSave ? 'board_title' : 'query'} is empty after normalisation` });
          continue;
        }
        if (sentOn(record, e.pin_id) || already) continue;
        if (p.seenIds.has(e.event_id)) {
          p.duplicates++;
          continue;
        }
        p.seenIds.add(e.event_id);
        const event = p.eventIds.push(e.event_id) - 1;
        const ops = p.pins.get(e.pin_id);
        const last = ops?.[ops.length - 1];
        const item = { event, kind: isSave ? ('board' as const) : ('query' as const), text };
        if (last?.op === 'engagements') last.events.push(item);
        else addOp(p, e.pin_id, { op: 'engagements', events: [item] });
      } else if (topic === topics.pinEvents) {
        const d = decodeRecord('pin_event', record.value, deps.maxRecordBytes);
        if (!d.ok) {
          rejected.push({ record, code: d.code, reason: d.reason });
          continue;
        }
        const e: PinEvent = d.value;
        if (sentOn(record, e.pin_id) || already) continue;
        addOp(p, e.pin_id, { op: 'pin', eventTimeMs: Date.parse(e.event_time), type: e.type, pin: e.type === 'deleted' ? null : pinFieldsOf(e) });
      } else {
        const d = decodeRecord('caption', record.value, deps.maxRecordBytes);
        if (!d.ok) {
          rejected.push({ record, code: d.code, reason: d.reason });
          continue;
        }
        const c: Caption = d.value;
        if (sentOn(record, c.pin_id) || already) continue;
        addOp(p, c.pin_id, { op: 'caption', caption: { image_key: c.image_key, status: c.status, text: c.text } });
      }
    }
    const next = BigInt(batch[batch.length - 1]!.offset) + 1n;
    if (next > from) {
      p.offsets.set(topic, next);
      o.next.set(topic, next);
    }
    p.bytes += bytes;
    buffered += bytes;
    pendingBytes += bytes;
    if (bytes > 0) pendingSince ??= clock.now();
    // Half the budget buffered (a backlog), or records waiting long enough to delay their
    // documents: write them now rather than on the next tick, while handle() goes on filling.
    if (pendingBytes >= bufferBytes / 2 || (pendingSince !== undefined && clock.now() - pendingSince >= STATE_FLUSH_AGE_MS)) void flushStateInBackground();
    // Backpressure: hold this batch (and so this partition's fetching) until a flush made room.
    // While the state is missing nothing drains: fail (retriable), the worker holds the batch.
    const waitUntil = clock.now() + 30_000;
    while (buffered >= bufferBytes && owned.get(partition) === o) {
      if (stateMissing && deps.requireState) throw stateMissingError();
      if (clock.now() > waitUntil) throw new PinrichError('state_unavailable', 'enrich state flushes are not draining the buffer (is Redis reachable?); holding offsets', { retriable: true });
      catchingUp = true;
      await Promise.race([waitForFlush(), new Promise((r) => setTimeout(r, 1_000))]);
      // Stay in the group while held; a rebalance ends the wait (the worker gives the batch up).
      await ctx?.heartbeat();
    }
    if (outputs.length > 0) warnSentOn(topic, partition, outputs.length);
    const owner = o;
    return {
      outputs,
      rejected,
      commitOffset: null,
      // Runs once the worker has published this batch's dead letters.
      commit: async () => {
        if (owned.get(partition) !== owner || owner.fenced) return;
        if (next > (owner.delivered.get(topic) ?? -1n)) owner.delivered.set(topic, next);
        // Records the state already covered (applied before a crash, or by a rebuild, never
        // committed to Kafka): nothing to apply, but their offsets must still be committed, or the
        // group never catches up.
        const at = commitPoint(owner, topic);
        if (at !== undefined && BigInt(first.offset) < at) offerCommit({ topic, partition, offset: at.toString() });
      },
    };
  }

  /** Where a partition's topic may be committed: covered by the state and delivered (undefined: nowhere yet). */
  function commitPoint(o: Owned, topic: string): bigint | undefined {
    const covered = o.covered.get(topic);
    const delivered = o.delivered.get(topic);
    if (covered === undefined || delivered === undefined) return undefined;
    return covered < delivered ? covered : delivered;
  }

  /** Claim the partition's transactional id; retried from the tick when Kafka refused. */
  let claimingPublish = new Set<Owned>();
  function claimPublishing(o: Owned): void {
    if (o.publishing || claimingPublish.has(o) || owned.get(o.partition) !== o) return;
    claimingPublish.add(o);
    deps.publisher!.claim(o.partition).then(
      () => {
        claimingPublish.delete(o);
        if (owned.get(o.partition) === o) o.publishing = true;
      },
      (err: unknown) => {
        claimingPublish.delete(o);
        deps.log.warn('enrich: claiming the partition\'s transactional id failed; the next tick retries', { partition: o.partition, error: String(err) });
      },
    );
  }

  /**
   * Another instance claimed this partition: this one is a zombie (its group membership is gone
   * and kafkajs has not noticed yet). Write and publish nothing more; the records go to the new
   * owner, which reads them from the last committed offset.
   */
  function fenceOff(o: Owned, why: string): void {
    if (o.fenced) return;
    o.fenced = true;
    for (const h of o.held) buffered -= h.bytes;
    buffered -= o.pending.bytes;
    pendingBytes -= o.pending.bytes;
    o.held = [];
    o.pending = emptyPending();
    o.next = new Map(o.covered);
    deps.log.warn(`enrich partition claimed by another instance (${why}); dropping its buffered records`, { partition: o.partition });
  }

  /** The partition's state is missing: hold everything of it until it is rebuilt. */
  function markLost(o: Owned): void {
    if (!o.lost) deps.log.error(`${stateMissingError().message} (partition ${o.partition})`);
    o.lost = true;
    stateMissing = true;
  }

  /**
   * A lost partition whose state is back (`pinrich enrich rebuild` marked it ready): claim it
   * again with the same epoch (the rebuild wrote none), and take the offsets the rebuilt state
   * covers. The held batches are then applied on top: records the rebuild replayed too change
   * nothing (idempotent by event id, event time and content). True when it is this one's again.
   */
  async function resume(o: Owned): Promise<boolean> {
    const c = await store.claimPartition(o.partition, o.epoch);
    if (owned.get(o.partition) !== o || !c.ready) return false;
    if (c.epoch !== o.epoch) {
      fenceOff(o, 'a higher epoch after the rebuild');
      return false;
    }
    for (const [topic, next] of c.offsets) {
      if (next > (o.covered.get(topic) ?? -1n)) o.covered.set(topic, next);
      if (next > (o.next.get(topic) ?? -1n)) o.next.set(topic, next);
    }
    o.lost = false;
    deps.log.info('enrich partition state is back; resuming it', { partition: o.partition });
    return true;
  }

  /** Apply one partition's batch; true when applied (or nothing to apply). */
  async function applyPending(o: Owned, p: Pending): Promise<'applied' | 'fenced' | 'missing'> {
    if (p.offsets.size === 0) return 'applied';
    const outcome = await store.applyBatch(
      {
        partition: o.partition,
        epoch: fence ? o.epoch! : null,
        requireReady: deps.requireState ?? false,
        offsets: [...p.offsets].map(([topic, next]) => ({ topic, next: next.toString() })),
        eventIds: p.eventIds,
        pins: [...p.pins].map(([pinId, ops]) => ({ pinId, ops })),
      },
      clock.now(),
    );
    if (outcome.status !== 'applied') return outcome.status;
    stats.engagementEvents += outcome.counted;
    stats.duplicateEngagements += outcome.duplicates + p.duplicates;
    stats.ignoredEngagements += outcome.ignored;
    stats.pinEvents += outcome.pinsApplied;
    stats.stalePinEvents += outcome.pinsStale;
    stats.captions += outcome.captions;
    for (const [topic, next] of p.offsets) if (next > (o.covered.get(topic) ?? -1n)) o.covered.set(topic, next);
    return 'applied';
  }

  /**
   * Write every partition's buffered records to the state (one script run per partition, all
   * partitions at once: each is its own cluster slot). Returns the offsets now covered, per
   * (topic, partition), for the worker to commit.
   */
  let stateFlush: Promise<Array<{ topic: string; partition: number; offset: string }>> | undefined;
  /** One state flush at a time: a call while one runs waits for it, then runs its own. */
  function flushState(): Promise<Array<{ topic: string; partition: number; offset: string }>> {
    const run = (stateFlush ?? Promise.resolve([])).catch(() => []).then(() => flushStateNow());
    stateFlush = run;
    void run.finally(() => {
      if (stateFlush === run) stateFlush = undefined;
    }).catch(() => undefined);
    return run;
  }
  let background: Promise<void> | undefined;
  /** A flush started by handle(); its offsets are committed with the next tick. */
  function flushStateInBackground(): Promise<void> {
    background ??= flushState()
      .then((committed) => {
        for (const c of committed) offerCommit(c);
      })
      .catch((err: unknown) => deps.log.warn('enrich state flush failed; the next tick retries', { error: String(err) }))
      .finally(() => (background = undefined));
    return background;
  }

  async function flushStateNow(): Promise<Array<{ topic: string; partition: number; offset: string }>> {
    const parts = [...owned.values()].filter((o) => o.epoch !== undefined && !o.fenced);
    const wasFull = buffered >= bufferBytes / 2;
    pendingSince = undefined; // every pending buffer is taken below
    const committed: Array<{ topic: string; partition: number; offset: string }> = [];
    await Promise.all(
      parts.map(async (o) => {
        // Swap the buffer first: handle() keeps filling a new one meanwhile.
        if (o.pending.offsets.size > 0) {
          o.held.push(o.pending);
          pendingBytes -= o.pending.bytes;
          o.pending = emptyPending();
        }
        let appliedAny = false;
        if (o.lost && !(await resume(o))) return;
        while (o.held.length > 0) {
          const p = o.held[0]!;
          const status = await applyPending(o, p);
          if (owned.get(o.partition) !== o) return; // reassigned meanwhile: the entry is gone
          if (status === 'missing') return markLost(o);
          if (status === 'fenced') return fenceOff(o, 'state write refused');
          o.held.shift();
          buffered -= p.bytes;
          appliedAny = true;
        }
        if (!appliedAny) return;
        for (const topic of o.covered.keys()) {
          const at = commitPoint(o, topic);
          if (at !== undefined) committed.push({ topic, partition: o.partition, offset: at.toString() });
        }
      }),
    );
    stateMissing = [...owned.values()].some((o) => o.lost);
    catchingUp = wasFull || (catchingUp && buffered >= bufferBytes / 2);
    signalFlushed();
    return committed;
  }

  /** Build what to publish for one pin; null when there is nothing to publish. */
  function planFlush(p: StoredPin, nowIso: string): { outputs: OutMessage[]; published: Published | null; queries: string[] } {
    if (p.deleted) {
      if (p.hash === 'deleted') return { outputs: [], published: null, queries: [] };
      stats.tombstones++;
      return {
        outputs: [{ topic: topics.enriched, key: p.pinId, value: null }],
        published: { hash: 'deleted', version: p.version, doc: null },
        queries: [],
      };
    }
    // Engagement or a caption can arrive before the pin itself: nothing to publish yet.
    if (!p.pin) return { outputs: [], published: null, queries: [] };
    const content = buildDocument(p.pinId, { pin: p.pin, caption: p.caption, boards: p.boards, queries: p.queries, engagementCount: p.engagements }, deps.topK);
    const outputs: OutMessage[] = [];
    let published: Published | null = null;
    if (content.content_hash === p.hash) stats.unchanged++;
    else {
      const version = p.version + 1;
      // = JSON.stringify of the EnrichedDocument, encoded once: the produce and the document's
      // write to Redis (set-document) send these bytes as they are.
      const doc = Buffer.from(documentJson(content, version, nowIso));
      outputs.push({ topic: topics.enriched, key: p.pinId, value: doc });
      published = { hash: content.content_hash, version, doc };
      stats.documents++;
    }
    for (const query of deps.minePairs ? p.newQueries : []) {
      const pair: Pair = {
        schema: 'pair',
        schema_version: 1,
        pair_id: pairIdOf(p.pinId, query),
        pin_id: p.pinId,
        query,
        source: 'search_engagement',
        language: content.language,
        created_at: nowIso,
      };
      outputs.push({ topic: topics.pairs, key: p.pinId, value: JSON.stringify(pair) });
      stats.pairs++;
    }
    return { outputs, published, queries: p.newQueries };
  }

  let lastMissingWarn = -Infinity;
  let lastProbe = -Infinity;
  /**
   * Once a second, each owned partition's meta hash is checked (a resumed claim with its own
   * epoch: writes nothing unless the epoch is gone): a partition lost with a restarted Redis node
   * is detected even when no record of it arrives, and a zombie learns it was fenced early.
   */
  async function probeOwned(): Promise<void> {
    if (!fence || clock.now() - lastProbe < 1_000) return;
    lastProbe = clock.now();
    await Promise.all(
      [...owned.values()].map(async (o) => {
        if (o.epoch === undefined || o.fenced || o.lost) return;
        const c = await store.claimPartition(o.partition, o.epoch);
        if (owned.get(o.partition) !== o) return;
        if (c.epoch !== o.epoch) fenceOff(o, 'a higher epoch');
        else if (deps.requireState && !c.ready) markLost(o);
      }),
    );
  }
  async function tick(assigned: ReadonlyMap<string, readonly number[]>): Promise<StageResult> {
    await probeOwned();
    // The state flush runs while the pins already due are read: the read needs nothing of it
    // (a pin it changes meanwhile keeps its dirty mark: commit-flushes compares `gen`), and
    // Redis works on one while the worker builds the other's arguments or documents.
    const stateFlushed = flushState();
    stateFlushed.catch(() => undefined); // awaited below; failing there fails the tick
    const offsetsFlushed = async () => {
      for (const c of await stateFlushed) offerCommit(c);
      return [...toCommit.values()];
    };
    if (deps.requireState && (stateMissing || !(await store.stateReady()))) {
      const commitOffsets = await offsetsFlushed();
      // Flush nothing; say so every 10 s (handle() fails loudly too, when input arrives).
      if (clock.now() - lastMissingWarn >= 10_000) {
        lastMissingWarn = clock.now();
        deps.log.error(stateMissingError().message);
      }
      return { outputs: [], rejected: [], commitOffsets };
    }
    const partitions = new Set<number>();
    for (const [topic, parts] of assigned) if (topic === topics.pinEvents || topic === topics.engagement || topic === topics.captions) parts.forEach((p) => partitions.add(p));
    // Every assigned partition is claimed on the first tick after the assignment, records or not:
    // the claim's InitProducerId aborts what a crashed owner left open in the partition's
    // transaction, and a partition whose input was all committed sends no batch, while its open
    // transaction holds every read_committed reader of pins.enriched at the last stable offset
    // until it times out. A claim that failed is retried here too. (Claiming inside onAssignment,
    // at the group join itself, left a slow-starting worker's commits stuck: measured, dropped.)
    if (fence) for (const p of partitions) if (!owned.has(p)) ownedPartition(p);
    const epochs = new Map<number, number>();
    /**
     * The entries this tick works with: a rejoin during the tick replaces them, and what the old
     * epoch is refused must not fence the fresh claim of the same partition.
     */
    const owners = new Map<number, Owned>();
    const current = (partition: number) => {
      const o = owners.get(partition);
      return o && owned.get(partition) === o ? o : undefined;
    };
    /** A read or commit the state refused for a partition: it moved away, or its state is missing. */
    const refused = (partition: number, status: 'fenced' | 'missing') => {
      const o = current(partition);
      if (!o) return;
      if (status === 'fenced') fenceOff(o, 'state read refused');
      else markLost(o);
    };
    if (fence) {
      for (const p of [...partitions]) {
        const o = owned.get(p);
        // Publish only from partitions this instance has claimed (in Redis and in Kafka) and
        // still owns, with state.
        if (o && !o.publishing && o.epoch !== undefined && !o.fenced) claimPublishing(o);
        if (o?.epoch === undefined || o.fenced || o.lost || !o.publishing) partitions.delete(p);
        else {
          epochs.set(p, o.epoch);
          owners.set(p, o);
        }
      }
    }
    const now = clock.now();
    const nowIso = new Date(now).toISOString();
    const windowMs = catchingUp ? catchUpWindowMs : deps.windowMs;
    const outputs: OutMessage[] = [];
    const commits: FlushCommit[] = [];
    // The oldest due pins across every partition, up to the budget: asked of each partition at
    // once, then merged by how long each pin has waited. (Taking partition 0's first would starve
    // the later partitions whenever the earlier ones alone fill the budget, as a steady load does.)
    // One more than the budget per partition: tells whether due pins are left for the next tick.
    const dueBy = await Promise.all([...partitions].map(async (partition) => (await store.duePins(partition, now - windowMs, maxFlush + 1)).map((d) => ({ partition, ...d }))));
    const candidates = dueBy.flat().sort((a, b) => a.dirtySince - b.dirtySince || a.partition - b.partition);
    const due = candidates.slice(0, maxFlush);
    const moreDue = candidates.length > maxFlush;
    const pins = await store.readPins(due, deps.topK, fence ? epochs : undefined, refused);
    // The language detector is loaded on first need only (see core/language.ts).
    if (pins.some((p) => p && !p.deleted && p.pin && needsDetection(p.pin.language))) await loadLanguageDetector();
    pins.forEach((p, i) => {
      if (!p) return; // fenced: not this instance's to publish
      const plan = planFlush(p, nowIso);
      const partition = due[i]!.partition;
      if (deps.publisher) for (const m of plan.outputs) m.ownerPartition = partition;
      outputs.push(...plan.outputs);
      commits.push({ partition: due[i]!.partition, pin: p, published: plan.published, queries: plan.queries });
    });
    const commitOffsets = await offsetsFlushed();
    if (outputs.length && deps.requireState && (stateMissing || !(await store.stateReady()))) return { outputs: [], rejected: [], commitOffsets }; // the pins read above came from complete state
    return {
      outputs,
      rejected: [],
      moreDue,
      commit: async (fenced) => {
        // A partition whose transaction was refused: another instance owns it now (its epoch
        // fences the state too, but only once it has claimed it: record nothing from here).
        for (const p of fenced ?? []) {
          const o = current(p);
          if (o) fenceOff(o, 'publish refused by the broker');
        }
        const kept = fenced?.size ? commits.filter((c) => !fenced.has(c.partition)) : commits;
        await store.commitFlushes(kept, fence ? epochs : undefined, refused);
      },
      commitOffsets,
    };
  }

  return {
    name: 'enrich',
    commitsOnTick: true,
    stats: () => ({ ...stats }),
    handle: (batch, ctx) => handle(batch, ctx),
    tick: (assigned) => tick(assigned),
    /** Write everything buffered to the state now (`pinrich enrich rebuild`, after each batch). */
    async flushState() {
      await flushState();
      if (stateMissing) throw stateMissingError();
    },
    committed(offsets) {
      for (const c of offsets) {
        const key = `${c.topic}\n${c.partition}`;
        if (toCommit.get(key)?.offset === c.offset) toCommit.delete(key);
      }
    },
    onAssignment(assigned) {
      // A rejoin: Kafka redelivers every assigned partition from its committed offset, so
      // whatever is buffered is dropped and every partition is claimed again on its next batch.
      const kept = new Set<number>();
      for (const [topic, parts] of assigned) if (topic === topics.pinEvents || topic === topics.engagement || topic === topics.captions) parts.forEach((p) => kept.add(p));
      for (const p of owned.keys()) if (!kept.has(p)) void deps.publisher?.release(p);
      assignedPartitions = kept;
      claimingPublish = new Set();
      owned = new Map();
      toCommit.clear();
      offered.clear(); // Kafka redelivers from the committed offset: every point is offered again
      buffered = 0;
      pendingBytes = 0;
      pendingSince = undefined;
      signalFlushed();
    },
    ...(deps.publisher ? { partitionedPublisher: deps.publisher } : {}),
    async close() {
      await deps.publisher?.close();
    },
  };
}
