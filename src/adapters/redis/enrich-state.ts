/**
 * The enrich stage's state port (stages/enrich/ports.ts) on Redis. Every state change is one Lua
 * script (./lua/*.lua), so a change and the bookkeeping that goes with it (dedup marker,
 * generation counter, dirty mark) happen together or not at all. The key layout, and why every
 * key of a partition shares one hash tag, is in ./keys.ts; each script call touches the keys of
 * one partition only (one Redis Cluster slot).
 *
 * Flushing protocol (no lock needed): read state together with `gen`; publish; write the
 * published documents; then `commitFlushes` records the new hash/version and removes the dirty
 * mark only if `gen` is unchanged, so a change that raced the flush is flushed again next time.
 * A tick's pins are read and committed in batches (read-pins, commit-flushes), a few hundred
 * pins of one partition per script call.
 */
import { crossSlotPipeline, type Redis } from './client.js';
import type { CaptionState, PinFields } from '../../core/document.js';
import type { EnrichStateStore, StoredPin } from '../../stages/enrich/ports.js';
import { redisKeys, type RedisKeys } from './keys.js';
import { withScripts, type Scripted } from './lua.js';

/** Engagement events per apply-engagements call: bounds how long one call holds Redis (~1 ms). */
const ENGAGEMENTS_PER_CALL = 500;
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

  return {
    async applyPins(changes, nowMs) {
      if (changes.length === 0) return [];
      // Pipelined in order: each change is its own atomic script run, exactly as one by one.
      const pipe = pipeline();
      for (const c of changes) {
        pipe.pinrichApplyPin(5, ...pinKeys(c.partition, c.pinId), k.dirty(c.partition), c.pinId, c.eventTimeMs, c.type, c.pin ? JSON.stringify(c.pin) : '', nowMs);
      }
      return (await execAll(pipe)).map((v) => Number(v) === 1);
    },
    async applyEngagements(changes, nowMs) {
      if (changes.length === 0) return [];
      const pipe = pipeline();
      const order: number[] = []; // input index of each result, in pipeline order
      for (const [partition, list] of byPartition(changes)) {
        for (let from = 0; from < list.length; from += ENGAGEMENTS_PER_CALL) {
          const chunk = list.slice(from, from + ENGAGEMENTS_PER_CALL);
          const markers: string[] = [];
          const groupKeys: string[] = [];
          const groupArgs: string[] = [];
          const eventArgs: Array<string | number> = [];
          const groups = new Map<string, number>(); // pin id -> group index (1-based)
          for (const { item: c, index } of chunk) {
            let g = groups.get(c.pinId);
            if (g === undefined) {
              groups.set(c.pinId, (g = groups.size + 1));
              groupKeys.push(...pinKeys(partition, c.pinId));
              groupArgs.push(c.pinId);
            }
            markers.push(k.event(partition, c.eventId));
            eventArgs.push(g, c.kind === 'board' ? 'b' : 'q', c.text);
            order.push(index);
          }
          const all = [...markers, ...groupKeys, k.dirty(partition)];
          pipe.pinrichApplyEngagements(all.length, ...all, dedupTtlSeconds, nowMs, chunk.length, groups.size, minePairs ? '1' : '0', ...groupArgs, ...eventArgs);
        }
      }
      const out = new Array<number>(changes.length);
      let n = 0;
      for (const value of await execAll(pipe)) for (const r of value as number[]) out[order[n++]!] = Number(r);
      return out;
    },
    async applyCaption(partition, pinId, caption, nowMs) {
      return Number(await redis.pinrichApplyCaption(2, k.pin(partition, pinId), k.dirty(partition), JSON.stringify(caption), pinId, nowMs));
    },
    async duePins(partition, dueBeforeMs, limit) {
      return redis.zrangebyscore(k.dirty(partition), '-inf', dueBeforeMs, 'LIMIT', 0, limit);
    },
    async allFlushed(partitions) {
      const counts = await Promise.all(partitions.map((p) => redis.zcard(k.dirty(p))));
      return counts.every((n) => n === 0);
    },
    async readPins(pins, topK) {
      if (pins.length === 0) return [];
      const pipe = pipeline();
      const order: number[] = [];
      for (const [partition, list] of byPartition(pins)) {
        for (let from = 0; from < list.length; from += PINS_PER_CALL) {
          const chunk = list.slice(from, from + PINS_PER_CALL);
          const callKeys = chunk.flatMap(({ item }) => pinKeys(partition, item.pinId));
          chunk.forEach(({ index }) => order.push(index));
          pipe.pinrichReadPins(callKeys.length, ...callKeys, topK);
        }
      }
      const rows = new Array<unknown[]>(pins.length);
      let n = 0;
      for (const value of await execAll(pipe)) for (const row of value as unknown[][]) rows[order[n++]!] = row;
      return pins.map(({ pinId }, i): StoredPin => {
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
    async commitFlushes(items) {
      if (items.length === 0) return [];
      // The documents first (each in its own pin's slot), then per partition the state that
      // says they were published: a crash in between re-flushes the pin (nothing lost).
      const docs = pipeline();
      let anyDoc = false;
      for (const { pin, published } of items) {
        if (!published) continue;
        anyDoc = true;
        if (published.doc === null) docs.del(keys.document(pin.pinId));
        else docs.set(keys.document(pin.pinId), published.doc);
      }
      if (anyDoc) await execAll(docs);
      const pipe = pipeline();
      const order: number[] = [];
      for (const [partition, list] of byPartition(items)) {
        for (let from = 0; from < list.length; from += PINS_PER_CALL) {
          const chunk = list.slice(from, from + PINS_PER_CALL);
          const callKeys: string[] = [k.dirty(partition)];
          const args: Array<string | number> = [];
          for (const { item, index } of chunk) {
            const { pin, published, queries } = item;
            callKeys.push(k.pin(partition, pin.pinId), k.newQueries(partition, pin.pinId));
            args.push(pin.pinId, pin.gen, published?.hash ?? '', published?.version ?? 0, queries.length, ...queries);
            order.push(index);
          }
          pipe.pinrichCommitFlushes(callKeys.length, ...callKeys, ...args);
        }
      }
      const out = new Array<boolean>(items.length);
      let n = 0;
      for (const value of await execAll(pipe)) for (const r of value as number[]) out[order[n++]!] = Number(r) === 1;
      return out;
    },
    async stateReady() {
      return (await redis.exists(k.stateMarker())) === 1;
    },
    async markStateReady(info, onlyIfAbsent = false) {
      if (onlyIfAbsent) await redis.set(k.stateMarker(), JSON.stringify(info), 'NX');
      else await redis.set(k.stateMarker(), JSON.stringify(info));
    },
    async restorePublished(partition, pinId, hash, version, doc) {
      // Two slots (the partition's state, the pin's document): two commands, not one MULTI.
      // A tombstone carries no version: keep the one of the document before it.
      if (doc === null) await Promise.all([redis.hset(k.pin(partition, pinId), 'hash', hash), redis.del(keys.document(pinId))]);
      else await Promise.all([redis.hset(k.pin(partition, pinId), 'hash', hash, 'ver', version), redis.set(keys.document(pinId), doc)]);
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
