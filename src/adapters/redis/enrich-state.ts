/**
 * Per-pin enrichment state in Redis. Every state change is one Lua script, so a change and the
 * bookkeeping that goes with it (dedup marker, generation counter, dirty mark) happen together
 * or not at all.
 *
 * Keys (P = configured prefix; {pin} is a hash tag so one pin's keys share a cluster slot):
 *   P pin:{id}            hash: pin (JSON), caption (JSON), etime, deleted, gen, engagements, ver, hash
 *   P pin:{id}:boards     zset: folded board title -> saves
 *   P pin:{id}:queries    zset: folded query -> search engagements
 *   P pin:{id}:newq       set: folded queries not yet published as relevance pairs
 *   P pin:{id}:evt:<eid>  string with TTL: engagement event already counted
 *   P doc:{id}            string: the last published enriched document (read by the score worker)
 *   P dirty:<partition>   zset: pin id -> ms when it first changed since its last flush
 *   P state:epoch         string (JSON): written once the state is known complete — on a fresh
 *                         deployment, or by `pinrich enrich rebuild`. Redis here keeps nothing
 *                         across a restart, so a missing marker means the state above is gone
 *                         (or partial) and must be rebuilt before anything is published from it.
 *
 * Flushing protocol (no lock needed): read state together with `gen`; publish; then
 * `commitFlush` records the new hash/version and removes the dirty mark only if `gen` is
 * unchanged, so a change that raced the flush is flushed again next time.
 */
import type { Redis } from 'ioredis';
import type { CaptionState, PinFields } from '../../core/document.js';

// KEYS: 1 pin hash, 2 boards, 3 queries, 4 newq, 5 dirty
// ARGV: 1 pin id, 2 event time ms, 3 type (created|updated|deleted), 4 pin JSON, 5 now ms
// Returns 1 when applied, 0 when older than the state (stale, ignored).
const APPLY_PIN = `
local last = tonumber(redis.call('HGET', KEYS[1], 'etime') or '-1')
if tonumber(ARGV[2]) < last then return 0 end
if ARGV[3] == 'deleted' then
  redis.call('HSET', KEYS[1], 'deleted', '1', 'etime', ARGV[2], 'engagements', 0)
  redis.call('HDEL', KEYS[1], 'pin', 'caption')
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
else
  redis.call('HSET', KEYS[1], 'pin', ARGV[4], 'etime', ARGV[2], 'deleted', '0')
end
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('ZADD', KEYS[5], 'NX', ARGV[5], ARGV[1])
return 1
`;

// Many engagement events in one call (one round trip and one script run per chunk of events,
// instead of one EVAL each: the per-call cost dominated the enrich worker's throughput).
// KEYS: 5 per event, event i (0-based) at 5i+1..5i+5: event marker, pin hash, counted zset
//       (boards or queries), newq, dirty
// ARGV: 1 marker TTL s, 2 now ms, then 3 per event at 3i+3..3i+5: folded text, pin id,
//       '1' to remember a new query for pairs
// Returns one integer per event, in order: 0 for a duplicate event, -1 for a deleted pin
// (ignored), else the text's new count. Each event's effects are exactly those of applying it
// alone, in order (two events of one batch on one pin see each other's effects).
const APPLY_ENGAGEMENTS = `
local out = {}
for i = 0, #KEYS / 5 - 1 do
  local k = i * 5
  local a = i * 3 + 2
  local n
  if not redis.call('SET', KEYS[k + 1], '1', 'NX', 'EX', ARGV[1]) then n = 0
  elseif redis.call('HGET', KEYS[k + 2], 'deleted') == '1' then n = -1
  else
    n = tonumber(redis.call('ZINCRBY', KEYS[k + 3], 1, ARGV[a + 1]))
    redis.call('HINCRBY', KEYS[k + 2], 'engagements', 1)
    redis.call('HINCRBY', KEYS[k + 2], 'gen', 1)
    if ARGV[a + 3] == '1' and n == 1 then redis.call('SADD', KEYS[k + 4], ARGV[a + 1]) end
    redis.call('ZADD', KEYS[k + 5], 'NX', ARGV[2], ARGV[a + 2])
  end
  out[i + 1] = n
end
return out
`;

/** Engagement events per APPLY_ENGAGEMENTS call: bounds how long one call holds Redis (~1 ms). */
const ENGAGEMENTS_PER_CALL = 500;

// KEYS: 1 pin hash, 2 dirty
// ARGV: 1 caption JSON (stable fields only), 2 pin id, 3 now ms
// Returns 1 when the caption changed, 0 when identical, -1 for a deleted pin.
const APPLY_CAPTION = `
if redis.call('HGET', KEYS[1], 'deleted') == '1' then return -1 end
if redis.call('HGET', KEYS[1], 'caption') == ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'caption', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[2])
return 1
`;

// KEYS: 1 pin hash, 2 dirty, 3 doc key, 4 newq
// ARGV: 1 pin id, 2 gen read before publishing, 3 new content hash ('' = nothing published),
//       4 new version, 5 document JSON ('' = tombstone: delete the doc), 6.. published queries
// Returns 1 when the dirty mark was cleared, 0 when the pin changed meanwhile (still dirty).
const COMMIT_FLUSH = `
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'hash', ARGV[3], 'ver', ARGV[4])
  if ARGV[5] == '' then redis.call('DEL', KEYS[3]) else redis.call('SET', KEYS[3], ARGV[5]) end
end
for i = 6, #ARGV do redis.call('SREM', KEYS[4], ARGV[i]) end
if (redis.call('HGET', KEYS[1], 'gen') or '') == ARGV[2] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
`;

// KEYS: 1 counted zset; ARGV: 1 k
// Returns the top k members WITHSCORES by count desc, ties at the cut resolved by text ascending
// (a plain ZRANGE REV would keep the reverse-lexicographic ones), so documents don't depend on
// Redis' tie order.
const TOP_K = `
local k = tonumber(ARGV[1])
local top = redis.call('ZRANGE', KEYS[1], '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, k, 'WITHSCORES')
if #top < 2 * k then return top end
local kth = top[2 * k]
local out = {}
for i = 1, #top, 2 do
  if tonumber(top[i + 1]) > tonumber(kth) then out[#out + 1] = top[i]; out[#out + 1] = top[i + 1] end
end
local ties = redis.call('ZRANGE', KEYS[1], kth, kth, 'BYSCORE', 'LIMIT', 0, k - #out / 2, 'WITHSCORES')
for i = 1, #ties do out[#out + 1] = ties[i] end
return out
`;

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

export interface EnrichStore {
  applyPin(partition: number, pinId: string, eventTimeMs: number, type: 'created' | 'updated' | 'deleted', pin: PinFields | null, nowMs: number): Promise<boolean>;
  /** Apply many pin events in order, in one round trip; returns per event whether it applied (false: stale). */
  applyPins(changes: PinChange[], nowMs: number): Promise<boolean[]>;
  /** Apply many engagement events in one round trip; returns per event: 0 duplicate, -1 ignored, else new count. */
  applyEngagements(changes: EngagementChange[], nowMs: number): Promise<number[]>;
  applyCaption(partition: number, pinId: string, caption: CaptionState, nowMs: number): Promise<number>;
  /** Pins of `partition` dirty since at most `dueBeforeMs`, oldest first. */
  duePins(partition: number, dueBeforeMs: number, limit: number): Promise<string[]>;
  readPins(pinIds: string[], topK: number): Promise<StoredPin[]>;
  commitFlush(partition: number, pin: StoredPin, published: { hash: string; version: number; doc: string | null } | null, queries: string[]): Promise<boolean>;
  /** The last published document of a pin, or null. */
  getDocument(pinId: string): Promise<string | null>;
  /** True when the state marker is present: the state is complete (see the key list above). */
  stateReady(): Promise<boolean>;
  /** Write the state marker. `onlyIfAbsent` keeps an existing one (fresh-deployment start). */
  markStateReady(info: { source: 'fresh' | 'rebuild'; at: string }, onlyIfAbsent?: boolean): Promise<void>;
  /** Rebuild: put back a pin's last published version, content hash and document (null = tombstone: hash only). */
  restorePublished(pinId: string, hash: string, version: number, doc: string | null): Promise<void>;
  /** Rebuild: forget new-query marks of queries already published as pairs. */
  forgetNewQueries(pinId: string, queries: string[]): Promise<void>;
  /** Exact counts, for tests and `pinrich enrich inspect`. */
  counts(pinId: string): Promise<{ boards: Record<string, number>; queries: Record<string, number>; engagements: number }>;
}

/**
 * The scripts above as ioredis custom commands: sent by SHA (EVALSHA) rather than as text on
 * every call, loaded on first use and again after a Redis restart (NOSCRIPT), also in pipelines.
 */
const SCRIPTS = {
  pinrichApplyPin: APPLY_PIN,
  pinrichApplyEngagements: APPLY_ENGAGEMENTS,
  pinrichApplyCaption: APPLY_CAPTION,
  pinrichCommitFlush: COMMIT_FLUSH,
  pinrichTopK: TOP_K,
} as const;
type ScriptName = keyof typeof SCRIPTS;
type ScriptCall = (numKeys: number, ...args: Array<string | number>) => Promise<unknown>;
type Scripted<T> = T & Record<ScriptName, ScriptCall>;

function withScripts(redis: Redis): Scripted<Redis> {
  const r = redis as Scripted<Redis>;
  for (const [name, lua] of Object.entries(SCRIPTS)) if (typeof r[name as ScriptName] !== 'function') redis.defineCommand(name, { lua });
  return r;
}

export function createRedisEnrichStore(plainRedis: Redis, prefix: string, dedupTtlSeconds: number, minePairs: boolean): EnrichStore {
  const redis = withScripts(plainRedis);
  const pipeline = () => redis.pipeline() as Scripted<ReturnType<Redis['pipeline']>>;
  const pinKey = (id: string) => `${prefix}pin:{${id}}`;
  const dirtyKey = (partition: number) => `${prefix}dirty:${partition}`;
  const docKey = (id: string) => `${prefix}doc:{${id}}`;

  const parseCounts = (flat: string[]) => {
    const out: Array<{ text: string; count: number }> = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ text: flat[i]!, count: Number(flat[i + 1]) });
    return out;
  };

  const applyPins: EnrichStore['applyPins'] = async (changes, nowMs) => {
    if (changes.length === 0) return [];
    // Pipelined in order: each change is its own atomic script run, exactly as one by one.
    const pipe = pipeline();
    for (const c of changes) {
      const k = pinKey(c.pinId);
      pipe.pinrichApplyPin(5, k, `${k}:boards`, `${k}:queries`, `${k}:newq`, dirtyKey(c.partition), c.pinId, c.eventTimeMs, c.type, c.pin ? JSON.stringify(c.pin) : '', nowMs);
    }
    const results = (await pipe.exec()) ?? [];
    return results.map(([err, value]) => {
      if (err) throw err;
      return Number(value) === 1;
    });
  };

  return {
    async applyPin(partition, pinId, eventTimeMs, type, pin, nowMs) {
      const [applied] = await applyPins([{ partition, pinId, eventTimeMs, type, pin }], nowMs);
      return applied!;
    },
    applyPins,
    async applyEngagements(changes, nowMs) {
      if (changes.length === 0) return [];
      const pipe = pipeline();
      for (let from = 0; from < changes.length; from += ENGAGEMENTS_PER_CALL) {
        const chunk = changes.slice(from, from + ENGAGEMENTS_PER_CALL);
        const keys: string[] = [];
        const args: Array<string | number> = [dedupTtlSeconds, nowMs];
        for (const c of chunk) {
          const k = pinKey(c.pinId);
          keys.push(`${k}:evt:${c.eventId}`, k, c.kind === 'board' ? `${k}:boards` : `${k}:queries`, `${k}:newq`, dirtyKey(c.partition));
          args.push(c.text, c.pinId, minePairs && c.kind === 'query' ? '1' : '0');
        }
        pipe.pinrichApplyEngagements(keys.length, ...keys, ...args);
      }
      const results = (await pipe.exec()) ?? [];
      const out: number[] = [];
      for (const [err, value] of results) {
        if (err) throw err;
        for (const n of value as number[]) out.push(Number(n));
      }
      return out;
    },
    async applyCaption(partition, pinId, caption, nowMs) {
      return Number(await redis.pinrichApplyCaption(2, pinKey(pinId), dirtyKey(partition), JSON.stringify(caption), pinId, nowMs));
    },
    async duePins(partition, dueBeforeMs, limit) {
      return redis.zrangebyscore(dirtyKey(partition), '-inf', dueBeforeMs, 'LIMIT', 0, limit);
    },
    async readPins(pinIds, topK) {
      if (pinIds.length === 0) return [];
      const pipe = pipeline();
      for (const id of pinIds) {
        const k = pinKey(id);
        pipe.hgetall(k);
        pipe.pinrichTopK(1, `${k}:boards`, topK);
        pipe.pinrichTopK(1, `${k}:queries`, topK);
        pipe.smembers(`${k}:newq`);
      }
      const res = (await pipe.exec()) ?? [];
      const value = (i: number) => {
        const [err, v] = res[i]!;
        if (err) throw err;
        return v;
      };
      return pinIds.map((pinId, n) => {
        const h = value(n * 4) as Record<string, string>;
        return {
          pinId,
          gen: h.gen ?? '',
          deleted: h.deleted === '1',
          pin: h.pin ? (JSON.parse(h.pin) as PinFields) : null,
          caption: h.caption ? (JSON.parse(h.caption) as CaptionState) : null,
          engagements: Number(h.engagements ?? 0),
          version: Number(h.ver ?? 0),
          hash: h.hash ?? '',
          boards: parseCounts(value(n * 4 + 1) as string[]),
          queries: parseCounts(value(n * 4 + 2) as string[]),
          newQueries: (value(n * 4 + 3) as string[]).sort(),
        };
      });
    },
    async commitFlush(partition, pin, published, queries) {
      const k = pinKey(pin.pinId);
      const r = await redis.pinrichCommitFlush(
        4,
        k,
        dirtyKey(partition),
        docKey(pin.pinId),
        `${k}:newq`,
        pin.pinId,
        pin.gen,
        published?.hash ?? '',
        published?.version ?? 0,
        published?.doc ?? '',
        ...queries,
      );
      return Number(r) === 1;
    },
    getDocument: (pinId) => redis.get(docKey(pinId)),
    async stateReady() {
      return (await redis.exists(`${prefix}state:epoch`)) === 1;
    },
    async markStateReady(info, onlyIfAbsent = false) {
      if (onlyIfAbsent) await redis.set(`${prefix}state:epoch`, JSON.stringify(info), 'NX');
      else await redis.set(`${prefix}state:epoch`, JSON.stringify(info));
    },
    async restorePublished(pinId, hash, version, doc) {
      const pipe = redis.multi();
      // A tombstone carries no version: keep the one of the document before it.
      if (doc === null) pipe.hset(pinKey(pinId), 'hash', hash).del(docKey(pinId));
      else pipe.hset(pinKey(pinId), 'hash', hash, 'ver', version).set(docKey(pinId), doc);
      const res = (await pipe.exec()) ?? [];
      for (const [err] of res) if (err) throw err;
    },
    async forgetNewQueries(pinId, queries) {
      if (queries.length) await redis.srem(`${pinKey(pinId)}:newq`, ...queries);
    },
    async counts(pinId) {
      const k = pinKey(pinId);
      const [boards, queries, engagements] = await Promise.all([
        redis.zrange(`${k}:boards`, 0, -1, 'WITHSCORES'),
        redis.zrange(`${k}:queries`, 0, -1, 'WITHSCORES'),
        redis.hget(k, 'engagements'),
      ]);
      return {
        boards: Object.fromEntries(parseCounts(boards).map((c) => [c.text, c.count])),
        queries: Object.fromEntries(parseCounts(queries).map((c) => [c.text, c.count])),
        engagements: Number(engagements ?? 0),
      };
    },
  };
}
