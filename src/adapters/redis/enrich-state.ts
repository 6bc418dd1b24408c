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
 * `commitFlushes` records the new hash/version and removes the dirty mark only if `gen` is
 * unchanged, so a change that raced the flush is flushed again next time. A tick's pins are read
 * and committed in batches (READ_PINS, COMMIT_FLUSHES), a few hundred pins per script call.
 */
import type { Redis } from './client.js';
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
// instead of one EVAL each: the per-call cost dominated the enrich worker's throughput). The
// per-event work is only what deduplication needs — the SET NX EX of the event's marker, the one
// write that must be per event; the counting is aggregated inside the script: one ZINCRBY per
// distinct (pin, kind, text) by its number of new events, and per pin one HINCRBY of the
// engagement count, one of `gen` and one ZADD NX on the dirty set. Deduplication stays exact and
// atomic with the counting: the whole chunk is one script run, so an event's marker is written
// together with its count or not at all, and a duplicate inside the chunk fails its SET NX.
// KEYS: 1..E event markers (E = ARGV[3]); then 4 per pin group g (1-based) at E+4(g-1)+1..+4:
//       pin hash, boards zset, queries zset, newq; then the dirty zsets, D of them
// ARGV: 1 marker TTL s, 2 now ms, 3 E, 4 G (pin groups), 5 '1' to remember new queries for
//       pairs; then 2 per group at 5+2(g-1)+1..+2: pin id, dirty index (1-based among the
//       dirty keys); then 3 per event at 5+2G+3(i-1)+1..+3: group index, 'b' (board) | 'q'
//       (query), folded text
// Returns one integer per event, in order: 0 for a duplicate event, -1 for a deleted pin
// (ignored), 1 when counted. The effects are exactly those of applying the events one by one, in
// order (all of them commute within a chunk: a chunk holds no pin event, so `deleted` cannot
// change inside it; `gen` only has to change when a pin changes, which it does).
// Redis Cluster: the keys of one call span many pins (slots); fine on the single node pinrich
// runs against. A cluster deployment would group a chunk's events by hash slot ({pin} tag) first.
const APPLY_ENGAGEMENTS = `
local nE, nG = tonumber(ARGV[3]), tonumber(ARGV[4])
local mine = ARGV[5] == '1'
local dk = nE + 4 * nG
local ea = 5 + 2 * nG
local out, del, cnt, slots, order = {}, {}, {}, {}, {}
for i = 1, nE do
  local a = ea + 3 * (i - 1)
  local g = tonumber(ARGV[a + 1])
  if not redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then out[i] = 0
  else
    local d = del[g]
    if d == nil then
      d = redis.call('HGET', KEYS[nE + 4 * (g - 1) + 1], 'deleted') == '1'
      del[g] = d
    end
    if d then out[i] = -1
    else
      out[i] = 1
      cnt[g] = (cnt[g] or 0) + 1
      local id = g .. ARGV[a + 2] .. ARGV[a + 3]
      local s = slots[id]
      if s == nil then
        s = { g, ARGV[a + 2], ARGV[a + 3], 0 }
        slots[id] = s
        order[#order + 1] = s
      end
      s[4] = s[4] + 1
    end
  end
end
for j = 1, #order do
  local s = order[j]
  local base = nE + 4 * (s[1] - 1)
  local n = tonumber(redis.call('ZINCRBY', KEYS[base + (s[2] == 'b' and 2 or 3)], s[4], s[3]))
  if mine and s[2] == 'q' and n == s[4] then redis.call('SADD', KEYS[base + 4], s[3]) end
end
for g = 1, nG do
  if cnt[g] then
    local k = KEYS[nE + 4 * (g - 1) + 1]
    redis.call('HINCRBY', k, 'engagements', cnt[g])
    redis.call('HINCRBY', k, 'gen', 1)
    local a = 5 + 2 * (g - 1)
    redis.call('ZADD', KEYS[dk + tonumber(ARGV[a + 2])], 'NX', ARGV[2], ARGV[a + 1])
  end
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

// Many pins' state in one call (the flush reads every due pin of a tick): per pin the hash, the
// top-k board titles and queries, and the new-query set. Top k is by count desc, with ties at the
// cut resolved by text ascending (a plain ZRANGE REV would keep the reverse-lexicographic ones),
// so documents don't depend on Redis' tie order.
// KEYS: 4 per pin: pin hash, boards zset, queries zset, newq.  ARGV: 1 k
// Returns one array per pin: { HGETALL flat, top boards WITHSCORES, top queries WITHSCORES, SMEMBERS newq }.
// Redis Cluster: see APPLY_ENGAGEMENTS (keys span pins; single node here).
const READ_PINS = `
local k = tonumber(ARGV[1])
local function top(key)
  local t = redis.call('ZRANGE', key, '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, k, 'WITHSCORES')
  if #t < 2 * k then return t end
  local kth = t[2 * k]
  local o = {}
  for i = 1, #t, 2 do
    if tonumber(t[i + 1]) > tonumber(kth) then o[#o + 1] = t[i]; o[#o + 1] = t[i + 1] end
  end
  local ties = redis.call('ZRANGE', key, kth, kth, 'BYSCORE', 'LIMIT', 0, k - #o / 2, 'WITHSCORES')
  for i = 1, #ties do o[#o + 1] = ties[i] end
  return o
end
local out = {}
for p = 0, #KEYS / 4 - 1 do
  local b = 4 * p
  out[p + 1] = { redis.call('HGETALL', KEYS[b + 1]), top(KEYS[b + 2]), top(KEYS[b + 3]), redis.call('SMEMBERS', KEYS[b + 4]) }
end
return out
`;

// After publishing many pins' documents (pins are independent): per pin, record what was
// published and forget the published new queries, then clear the dirty mark unless the pin
// changed since it was read (`gen` differs: it stays dirty and is flushed again).
// KEYS: 4 per pin: pin hash, dirty, doc key, newq.
// ARGV: per pin: pin id, gen read before publishing, new content hash ('' = nothing published),
//       new version, document JSON ('' = tombstone: delete the doc), Q, then Q published queries.
// Returns per pin 1 when the dirty mark was cleared, 0 when the pin changed meanwhile.
// Redis Cluster: see APPLY_ENGAGEMENTS.
const COMMIT_FLUSHES = `
local out = {}
local a = 1
for p = 0, #KEYS / 4 - 1 do
  local b = 4 * p
  local q = tonumber(ARGV[a + 5])
  if ARGV[a + 2] ~= '' then
    redis.call('HSET', KEYS[b + 1], 'hash', ARGV[a + 2], 'ver', ARGV[a + 3])
    if ARGV[a + 4] == '' then redis.call('DEL', KEYS[b + 3]) else redis.call('SET', KEYS[b + 3], ARGV[a + 4]) end
  end
  for i = a + 6, a + 5 + q do redis.call('SREM', KEYS[b + 4], ARGV[i]) end
  if (redis.call('HGET', KEYS[b + 1], 'gen') or '') == ARGV[a + 1] then
    redis.call('ZREM', KEYS[b + 2], ARGV[a])
    out[p + 1] = 1
  else
    out[p + 1] = 0
  end
  a = a + 6 + q
end
return out
`;

/** Pins per READ_PINS / COMMIT_FLUSHES call: bounds how long one call holds Redis. */
const PINS_PER_CALL = 200;

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
  /** Apply many engagement events in one round trip; returns per event: 0 duplicate, -1 ignored (deleted pin), 1 counted. */
  applyEngagements(changes: EngagementChange[], nowMs: number): Promise<number[]>;
  applyCaption(partition: number, pinId: string, caption: CaptionState, nowMs: number): Promise<number>;
  /** Pins of `partition` dirty since at most `dueBeforeMs`, oldest first. */
  duePins(partition: number, dueBeforeMs: number, limit: number): Promise<string[]>;
  readPins(pinIds: string[], topK: number): Promise<StoredPin[]>;
  /**
   * After publishing: record each pin's published document (null: nothing published) and drop
   * its published new queries, in few round trips; true per pin whose dirty mark was cleared
   * (false: it changed since it was read and stays dirty).
   */
  commitFlushes(items: Array<{ partition: number; pin: StoredPin; published: { hash: string; version: number; doc: string | null } | null; queries: string[] }>): Promise<boolean[]>;
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
  pinrichReadPins: READ_PINS,
  pinrichCommitFlushes: COMMIT_FLUSHES,
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
        const markers: string[] = [];
        const groupKeys: string[] = [];
        const groupArgs: Array<string | number> = [];
        const eventArgs: Array<string | number> = [];
        const groups = new Map<string, number>(); // pin id + partition -> group index (1-based)
        const dirty = new Map<number, number>(); // partition -> dirty key index (1-based)
        for (const c of chunk) {
          const k = pinKey(c.pinId);
          let d = dirty.get(c.partition);
          if (d === undefined) dirty.set(c.partition, (d = dirty.size + 1));
          const gid = `${c.partition}\n${c.pinId}`;
          let g = groups.get(gid);
          if (g === undefined) {
            groups.set(gid, (g = groups.size + 1));
            groupKeys.push(k, `${k}:boards`, `${k}:queries`, `${k}:newq`);
            groupArgs.push(c.pinId, d);
          }
          markers.push(`${k}:evt:${c.eventId}`);
          eventArgs.push(g, c.kind === 'board' ? 'b' : 'q', c.text);
        }
        const keys = [...markers, ...groupKeys, ...[...dirty.keys()].map(dirtyKey)];
        pipe.pinrichApplyEngagements(keys.length, ...keys, dedupTtlSeconds, nowMs, chunk.length, groups.size, minePairs ? '1' : '0', ...groupArgs, ...eventArgs);
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
      for (let from = 0; from < pinIds.length; from += PINS_PER_CALL) {
        const keys: string[] = [];
        for (const id of pinIds.slice(from, from + PINS_PER_CALL)) {
          const k = pinKey(id);
          keys.push(k, `${k}:boards`, `${k}:queries`, `${k}:newq`);
        }
        pipe.pinrichReadPins(keys.length, ...keys, topK);
      }
      const res = (await pipe.exec()) ?? [];
      const rows: unknown[][] = [];
      for (const [err, v] of res) {
        if (err) throw err;
        rows.push(...(v as unknown[][]));
      }
      return pinIds.map((pinId, n) => {
        const [flat, boards, queries, newq] = rows[n] as [string[], string[], string[], string[]];
        const h: Record<string, string> = {};
        for (let i = 0; i < flat.length; i += 2) h[flat[i]!] = flat[i + 1]!;
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
      const pipe = pipeline();
      for (let from = 0; from < items.length; from += PINS_PER_CALL) {
        const keys: string[] = [];
        const args: Array<string | number> = [];
        for (const { partition, pin, published, queries } of items.slice(from, from + PINS_PER_CALL)) {
          const k = pinKey(pin.pinId);
          keys.push(k, dirtyKey(partition), docKey(pin.pinId), `${k}:newq`);
          args.push(pin.pinId, pin.gen, published?.hash ?? '', published?.version ?? 0, published?.doc ?? '', queries.length, ...queries);
        }
        pipe.pinrichCommitFlushes(keys.length, ...keys, ...args);
      }
      const res = (await pipe.exec()) ?? [];
      const out: boolean[] = [];
      for (const [err, v] of res) {
        if (err) throw err;
        for (const n of v as number[]) out.push(Number(n) === 1);
      }
      return out;
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
