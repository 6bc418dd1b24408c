/**
 * The enrich stage's state port (stages/enrich/ports.ts) on Redis. Every state change is one Lua
 * script (./lua/*.lua), so a change and the bookkeeping that goes with it (dedup marker,
 * generation counter, dirty mark) happen together or not at all. The key layout, and why every
 * key of a partition shares one hash tag, is in ./keys.ts; each script call touches the keys of
 * one partition only (one Redis Cluster slot).
 *
 * Writes: a partition's records of one flush interval are applied in one apply-batch run,
 * together with the input offsets they cover and fenced by the partition's owner epoch
 * (claim-partition), so a redelivered record is recognised by its offset and a zombie owner
 * writes nothing.
 *
 * Flushing protocol (no lock needed): read state together with `gen`; publish; write the
 * published documents; then `commitFlushes` records the new hash/version and removes the dirty
 * mark only if `gen` is unchanged, so a change that raced the flush is flushed again next time.
 * A tick's pins are read and committed in batches (read-pins, commit-flushes), a few hundred
 * pins of one partition per script call.
 */
import { crossSlotPipeline, isCluster, type Redis } from './client.js';
import type { CaptionState, PinFields } from '../../core/document.js';
import type { EnrichStateStore, StoredPin } from '../../stages/enrich/ports.js';
import { redisKeys, type RedisKeys } from './keys.js';
import { withScripts, type Scripted } from './lua.js';

/**
 * The dedup horizon as time buckets: an event id goes into the bucket of the time it is applied
 * and is a duplicate while any of the last `buckets` buckets holds it. The newest bucket lives
 * for the horizon plus one bucket, so an id is remembered for at least the horizon (and at most
 * one bucket longer): 8 buckets of horizon/7 each.
 */
export function dedupBuckets(horizonSeconds: number): { buckets: number; bucketSeconds: number; newestTtlSeconds: number } {
  const buckets = 8;
  const bucketSeconds = Math.max(1, Math.ceil(horizonSeconds / (buckets - 1)));
  return { buckets, bucketSeconds, newestTtlSeconds: horizonSeconds + bucketSeconds };
}
/** Pins per read-pins / commit-flushes call: bounds how long one call holds Redis. */
const PINS_PER_CALL = 200;

/** Group items by partition, keeping each item's index in the input. */
function byPartition<T extends { partition: number }>(items: readonly T[]): Map<number, Array<{ item: T; index: number }>> {
  const out = new Map<number, Array<{ item: T; index: number }>>();
  items.forEach((item, index) => {
    let list = out.get(item.partition);
    if (!list) out.set(item.partition, (list = []));
    list.push({ item, index });
  });
  return out;
}

/**
 * The enrich state on `plainRedis` under `keysOrPrefix` (the key builder, or the
 * PINRICH_REDIS_PREFIX it is built from). `dedupTtlSeconds` is the dedup horizon of engagement
 * event ids; `minePairs` keeps the new-query sets for relevance pairs.
 */
export function createRedisEnrichStore(plainRedis: Redis, keysOrPrefix: RedisKeys | string, dedupTtlSeconds: number, minePairs: boolean): EnrichStateStore {
  const keys = typeof keysOrPrefix === 'string' ? redisKeys(keysOrPrefix) : keysOrPrefix;
  const dedup = dedupBuckets(dedupTtlSeconds);
  const redis = withScripts(plainRedis);
  const k = keys.enrich;
  // Cross-slot on a cluster (documents of many pins, several partitions): see crossSlotPipeline.
  const pipeline = () => crossSlotPipeline(redis) as Scripted<ReturnType<Redis['pipeline']>>;
  const pinKeys = (partition: number, pinId: string) => [k.pin(partition, pinId), k.boards(partition, pinId), k.queries(partition, pinId), k.newQueries(partition, pinId)];

  const parseCounts = (flat: string[]) => {
    const out: Array<{ text: string; count: number }> = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ text: flat[i]!, count: Number(flat[i + 1]) });
    return out;
  };
  const execAll = async (pipe: ReturnType<typeof pipeline>): Promise<unknown[]> =>
    ((await pipe.exec()) ?? []).map(([err, value]) => {
      if (err) throw err;
      return value;
    });

  /**
   * Write published documents (null: a tombstone), each never over a newer one, nor over a
   * tombstone of its version or a later one (set-document).
   * On one server a few hundred go in one script run; on a cluster each document key is its own
   * slot, so one per run (all in flight together).
   */
  const setDocuments = async (docs: ReadonlyArray<{ pinId: string; doc: Buffer | string | null; version: number }>): Promise<void> => {
    if (docs.length === 0) return;
    const perCall = isCluster(plainRedis) ? 1 : PINS_PER_CALL;
    const pipe = pipeline();
    for (let from = 0; from < docs.length; from += perCall) {
      const chunk = docs.slice(from, from + perCall);
      const args: Array<string | number | Buffer> = chunk.flatMap((d) => [keys.document(d.pinId), keys.deletedDocument(d.pinId)]);
      for (const d of chunk) args.push(d.doc ?? '', d.version);
      pipe.pinrichSetDocument(2 * chunk.length, ...args);
    }
    await execAll(pipe);
  };

  return {
    async claimPartition(partition, resumeEpoch) {
      const args = resumeEpoch === undefined ? [] : [resumeEpoch];
      const [epoch, ready, flat] = (await redis.pinrichClaimPartition(1, k.meta(partition), ...args)) as [number, string, string[]];
      const offsets = new Map<string, bigint>();
      for (let i = 0; i < flat.length; i += 2) if (flat[i]!.startsWith('o:')) offsets.set(flat[i]!.slice(2), BigInt(flat[i + 1]!));
      return { epoch: Number(epoch), ready: ready === '1', offsets };
    },
    async applyBatch(batch, nowMs) {
      const { partition } = batch;
      const bucket = Math.floor(nowMs / 1000 / dedup.bucketSeconds);
      const callKeys = [k.meta(partition), k.dirty(partition)];
      for (let b = 0; b < dedup.buckets; b++) callKeys.push(k.seen(partition, bucket - b));
      const args: Array<string | number> = [];
      const ids: string[] = []; // the event ids, in the order the segments below take them
      for (const { pinId, ops } of batch.pins) {
        callKeys.push(...pinKeys(partition, pinId));
        args.push(pinId, ops.length);
        for (const op of ops) {
          if (op.op === 'pin') args.push('p', String(op.eventTimeMs), op.type, op.pin ? JSON.stringify(op.pin) : '');
          else if (op.op === 'caption') args.push('c', JSON.stringify(op.caption));
          else {
            // Counted here per distinct text (Redis then takes only duplicates off): far fewer
            // script steps per event than counting event by event. The segment's event ids go
            // to the script grouped by text, in the order of its texts, so each text's events
            // are the next n ids of the call: no per-event index or text number is sent.
            const slots = new Map<string, { kind: 'b' | 'q'; text: string; ids: string[] }>();
            for (const e of op.events) {
              const kind = e.kind === 'board' ? 'b' : 'q';
              const id = kind + e.text;
              let s = slots.get(id);
              if (!s) slots.set(id, (s = { kind, text: e.text, ids: [] }));
              s.ids.push(batch.eventIds[e.event]!);
            }
            args.push('e', slots.size);
            for (const s of slots.values()) {
              args.push(s.kind, s.text, s.ids.length);
              for (const id of s.ids) ids.push(id);
            }
          }
        }
      }
      const head: Array<string | number> = [batch.epoch ?? '', batch.requireReady ? '1' : '0', nowMs, dedup.buckets, dedup.newestTtlSeconds, minePairs ? '1' : '0', batch.pins.length, batch.offsets.length, ids.length];
      for (const o of batch.offsets) head.push(o.topic, o.next);
      // The event ids and the per-pin ops go as two JSON arrays (the script decodes them with
      // cjson): two arguments instead of ~4 per event. ioredis builds a command string piece by
      // piece per argument, and that was the largest allocation site of a backlog run (16 % of
      // the worker's allocated bytes); JSON.stringify writes one string at once.
      // Arrays, not spread: the keys can outnumber what a JS call can take (ioredis flattens them).
      head.push(JSON.stringify(ids), JSON.stringify(args));
      const r = ((await redis.pinrichApplyBatch(callKeys.length, callKeys as never, head as never)) as number[]).map(Number);
      const status = r[0] === 1 ? 'applied' : r[0] === -1 ? 'fenced' : 'missing'; // -2: missing
      return { status, counted: r[1]!, duplicates: r[2]!, ignored: r[3]!, pinsApplied: r[4]!, pinsStale: r[5]!, captions: r[6]! };
    },
    async duePins(partition, dueBeforeMs, limit) {
      const flat = await redis.zrangebyscore(k.dirty(partition), '-inf', dueBeforeMs, 'WITHSCORES', 'LIMIT', 0, limit);
      const due: Array<{ pinId: string; dirtySince: number }> = [];
      for (let i = 0; i < flat.length; i += 2) due.push({ pinId: flat[i]!, dirtySince: Number(flat[i + 1]) });
      return due;
    },
    async allFlushed(partitions) {
      const counts = await Promise.all(partitions.map((p) => redis.zcard(k.dirty(p))));
      return counts.every((n) => n === 0);
    },
    async readPins(pins, topK, epochs, onRefused) {
      if (pins.length === 0) return [];
      const pipe = pipeline();
      const calls: Array<{ partition: number; chunk: Array<{ index: number }> }> = [];
      for (const [partition, list] of byPartition(pins)) {
        for (let from = 0; from < list.length; from += PINS_PER_CALL) {
          const chunk = list.slice(from, from + PINS_PER_CALL);
          const callKeys = [k.meta(partition), ...chunk.flatMap(({ item }) => pinKeys(partition, item.pinId))];
          calls.push({ partition, chunk });
          pipe.pinrichReadPins(callKeys.length, ...callKeys, topK, epochs?.get(partition) ?? '', minePairs ? '1' : '0');
        }
      }
      const rows = new Array<unknown[] | null>(pins.length).fill(null);
      (await execAll(pipe)).forEach((value, c) => {
        const { partition, chunk } = calls[c]!;
        // Refused (fenced: this instance lost the partition; missing: its state is gone): nothing to publish.
        if (!Array.isArray(value)) return onRefused?.(partition, Number(value) === -1 ? 'fenced' : 'missing');
        chunk.forEach(({ index }, j) => (rows[index] = value[j] as unknown[]));
      });
      return pins.map(({ pinId }, i): StoredPin | null => {
        if (rows[i] === null) return null;
        const [flat, boards, queries, newq] = rows[i] as [string[], string[], string[], string[]];
        const h: Record<string, string> = {};
        for (let j = 0; j < flat.length; j += 2) h[flat[j]!] = flat[j + 1]!;
        return {
          pinId,
          gen: h.gen ?? '',
          deleted: h.deleted === '1',
          pin: h.pin ? (JSON.parse(h.pin) as PinFields) : null,
          caption: h.caption ? (JSON.parse(h.caption) as CaptionState) : null,
          engagements: Number(h.engagements ?? 0),
          version: Number(h.ver ?? 0),
          hash: h.hash ?? '',
          boards: parseCounts(boards),
          queries: parseCounts(queries),
          newQueries: newq.sort(),
        };
      });
    },
    async commitFlushes(items, epochs, onRefused) {
      if (items.length === 0) return [];
      // The documents first (each in its own pin's slot, never over a newer one: set-document),
      // then per partition the state that says they were published: a crash in between
      // re-flushes the pin (nothing lost).
      await setDocuments(items.flatMap(({ pin, published }) => (published ? [{ pinId: pin.pinId, doc: published.doc, version: published.version }] : [])));
      const pipe = pipeline();
      const calls: Array<{ partition: number; chunk: Array<{ index: number }> }> = [];
      for (const [partition, list] of byPartition(items)) {
        for (let from = 0; from < list.length; from += PINS_PER_CALL) {
          const chunk = list.slice(from, from + PINS_PER_CALL);
          const callKeys: string[] = [k.meta(partition), k.dirty(partition)];
          const args: Array<string | number> = [epochs?.get(partition) ?? ''];
          for (const { item } of chunk) {
            const { pin, published, queries } = item;
            callKeys.push(k.pin(partition, pin.pinId), k.newQueries(partition, pin.pinId));
            args.push(pin.pinId, pin.gen, published?.hash ?? '', published?.version ?? 0, queries.length, ...queries);
          }
          calls.push({ partition, chunk });
          pipe.pinrichCommitFlushes(callKeys.length, ...callKeys, ...args);
        }
      }
      const out = new Array<boolean>(items.length).fill(false);
      (await execAll(pipe)).forEach((value, c) => {
        const { partition, chunk } = calls[c]!;
        if (!Array.isArray(value)) return onRefused?.(partition, Number(value) === -1 ? 'fenced' : 'missing'); // nothing recorded
        chunk.forEach(({ index }, j) => (out[index] = Number(value[j]) === 1));
      });
      return out;
    },
    async stateReady() {
      return (await redis.exists(k.stateMarker())) === 1;
    },
    async markStateReady(info, partitions, onlyIfAbsent = false) {
      if (onlyIfAbsent) {
        if ((await redis.set(k.stateMarker(), JSON.stringify(info), 'NX')) === null) return;
      } else await redis.set(k.stateMarker(), JSON.stringify(info));
      await Promise.all(partitions.map((p) => redis.hset(k.meta(p), 'ready', '1')));
    },
    async restorePublished(partition, pinId, hash, version, doc) {
      // Two slots (the partition's state, the pin's document): two scripts, not one MULTI; each
      // keeps a later version the workers wrote meanwhile (partitions whose state was not lost).
      // A tombstone carries no version: keep the one of the document before it.
      await Promise.all([
        redis.pinrichRestorePublished(1, k.pin(partition, pinId), hash, version, doc === null ? '1' : '0'),
        setDocuments([{ pinId, doc, version }]),
      ]);
    },
    async forgetNewQueries(partition, pinId, queries) {
      if (queries.length) await redis.srem(k.newQueries(partition, pinId), ...queries);
    },
    async counts(pinId, partitions) {
      const out = { boards: {} as Record<string, number>, queries: {} as Record<string, number>, engagements: 0 };
      for (const partition of partitions) {
        const [boards, queries, engagements] = await Promise.all([
          redis.zrange(k.boards(partition, pinId), 0, -1, 'WITHSCORES'),
          redis.zrange(k.queries(partition, pinId), 0, -1, 'WITHSCORES'),
          redis.hget(k.pin(partition, pinId), 'engagements'),
        ]);
        for (const c of parseCounts(boards)) out.boards[c.text] = (out.boards[c.text] ?? 0) + c.count;
        for (const c of parseCounts(queries)) out.queries[c.text] = (out.queries[c.text] ?? 0) + c.count;
        out.engagements += Number(engagements ?? 0);
      }
      return out;
    },
  };
}
