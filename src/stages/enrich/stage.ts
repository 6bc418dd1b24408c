/**
 * Enrich stage: pins.events + pins.engagement + pins.captions -> per-pin state in Redis ->
 * compacted pins.enriched (and, optionally, relevance.pairs mined from search engagement).
 *
 * `handle` only applies records to the state (each change atomic, engagement deduplicated by
 * event_id) and marks the pin dirty; offsets are committed once that is done, because the dirty
 * mark is as durable as the state. `tick` flushes pins that have been dirty for at least the
 * coalescing window: it builds the document, publishes it only when its content hash changed
 * (version + 1), and clears the dirty mark after the publish. So a burst of engagement on a pin
 * within the window yields one new version, and a crash anywhere re-flushes rather than loses.
 */
import type { Caption } from '../../../schemas/caption.js';
import type { EngagementEvent } from '../../../schemas/engagement-event.js';
import type { EnrichedDocument } from '../../../schemas/enriched-document.js';
import type { Pair } from '../../../schemas/pair.js';
import type { PinEvent } from '../../../schemas/pin-event.js';
import type { OutMessage } from '../../adapters/kafka/client.js';
import type { Topics } from '../../config.js';
import { decodeRecord } from '../../core/decode.js';
import { buildDocument, pairIdOf, type PinFields } from '../../core/document.js';
import { loadLanguageDetector, needsDetection } from '../../core/language.js';
import { cleanText, foldText } from '../../core/text.js';
import { imageKeyOf } from '../../core/image-key.js';
import { PinrichError } from '../../errors.js';
import type { Clock } from '../../runtime/clock.js';
import type { Logger } from '../../runtime/log.js';
import type { InRecord, Rejection, Stage, StageResult } from '../../runtime/stage.js';
import type { EngagementChange, EnrichStateStore, FlushCommit, PinChange, Published, StoredPin } from './ports.js';

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

export function createEnrichStage(deps: EnrichStageDeps): Stage & { stats(): EnrichStats } {
  const { store, topics, clock } = deps;
  const maxFlush = deps.maxFlushPerTick ?? 2_000;
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
  };

  async function assertState(): Promise<void> {
    if (deps.requireState && !(await store.stateReady())) throw stateMissingError();
  }

  async function handle(batch: InRecord[]): Promise<StageResult> {
    await assertState();
    const rejected: Rejection[] = [];
    const now = clock.now();
    const topic = batch[0]?.topic;
    if (topic === topics.engagement) {
      const changes: EngagementChange[] = [];
      for (const record of batch) {
        const d = decodeRecord('engagement_event', record.value, deps.maxRecordBytes);
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
        changes.push({ pinId: e.pin_id, eventId: e.event_id, kind: isSave ? 'board' : 'query', text, partition: record.partition });
      }
      const results = await store.applyEngagements(changes, now);
      for (const r of results) {
        if (r === 0) stats.duplicateEngagements++;
        else if (r < 0) stats.ignoredEngagements++;
        else stats.engagementEvents++;
      }
    } else if (topic === topics.pinEvents) {
      const changes: PinChange[] = [];
      for (const record of batch) {
        const d = decodeRecord('pin_event', record.value, deps.maxRecordBytes);
        if (!d.ok) {
          rejected.push({ record, code: d.code, reason: d.reason });
          continue;
        }
        const e: PinEvent = d.value;
        changes.push({ partition: record.partition, pinId: e.pin_id, eventTimeMs: Date.parse(e.event_time), type: e.type, pin: e.type === 'deleted' ? null : pinFieldsOf(e) });
      }
      // One round trip for the batch, applied in order (each change atomic, as one by one).
      for (const applied of await store.applyPins(changes, now)) {
        if (applied) stats.pinEvents++;
        else stats.stalePinEvents++;
      }
    } else if (topic === topics.captions) {
      for (const record of batch) {
        const d = decodeRecord('caption', record.value, deps.maxRecordBytes);
        if (!d.ok) {
          rejected.push({ record, code: d.code, reason: d.reason });
          continue;
        }
        const c: Caption = d.value;
        await store.applyCaption(record.partition, c.pin_id, { image_key: c.image_key, status: c.status, text: c.text }, now);
        stats.captions++;
      }
    } else {
      throw new Error(`enrich stage got a record of unexpected topic ${topic}`);
    }
    // Redis may have restarted while the batch was applied: then these offsets must not be
    // committed (the rebuild replays them; every change above is idempotent).
    await assertState();
    return { outputs: [], rejected };
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
      const doc: EnrichedDocument = { ...content, version: p.version + 1, updated_at: nowIso };
      const json = JSON.stringify(doc);
      outputs.push({ topic: topics.enriched, key: p.pinId, value: json });
      published = { hash: content.content_hash, version: doc.version, doc: json };
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
  async function tick(assigned: ReadonlyMap<string, readonly number[]>): Promise<StageResult> {
    if (deps.requireState && !(await store.stateReady())) {
      // Flush nothing; say so every 10 s (handle() fails loudly too, when input arrives).
      if (clock.now() - lastMissingWarn >= 10_000) {
        lastMissingWarn = clock.now();
        deps.log.error(stateMissingError().message);
      }
      return { outputs: [], rejected: [] };
    }
    const partitions = new Set<number>();
    for (const [topic, parts] of assigned) if (topic === topics.pinEvents || topic === topics.engagement || topic === topics.captions) parts.forEach((p) => partitions.add(p));
    const now = clock.now();
    const nowIso = new Date(now).toISOString();
    const outputs: OutMessage[] = [];
    const commits: FlushCommit[] = [];
    // Due pins of every partition at once (the same pins as asking partition by partition with
    // what is left of the budget: partitions in order, oldest first), then one read of them all.
    const ordered = [...partitions].sort((a, b) => a - b);
    const dueBy = await Promise.all(ordered.map((partition) => store.duePins(partition, now - deps.windowMs, maxFlush)));
    const due: Array<{ partition: number; pinId: string }> = [];
    ordered.forEach((partition, i) => {
      for (const pinId of dueBy[i]!) if (due.length < maxFlush) due.push({ partition, pinId });
    });
    const pins = await store.readPins(due, deps.topK);
    // The language detector is loaded on first need only (see core/language.ts).
    if (pins.some((p) => !p.deleted && p.pin && needsDetection(p.pin.language))) await loadLanguageDetector();
    pins.forEach((p, i) => {
      const plan = planFlush(p, nowIso);
      outputs.push(...plan.outputs);
      commits.push({ partition: due[i]!.partition, pin: p, published: plan.published, queries: plan.queries });
    });
    if (outputs.length) await assertState(); // the pins read above came from complete state
    return {
      outputs,
      rejected: [],
      commit: async () => {
        await store.commitFlushes(commits);
      },
    };
  }

  return {
    name: 'enrich',
    stats: () => ({ ...stats }),
    handle: (batch) => handle(batch),
    tick: (assigned) => tick(assigned),
    async close() {},
  };
}
