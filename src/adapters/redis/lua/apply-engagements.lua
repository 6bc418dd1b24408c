--[[
apply-engagements: count many engagement events of ONE partition, deduplicated by event id.

One round trip and one script run per chunk of events instead of one EVAL each (the per-call
cost dominated the enrich worker's throughput). The per-event work is only what deduplication
needs: the SET NX EX of the event's marker. The counting is aggregated inside the script: one
ZINCRBY per distinct (pin, kind, text) by its number of new events, and per pin one HINCRBY of
the engagement count, one of `gen` and one ZADD NX on the dirty set. Deduplication is exact and
atomic with the counting: an event's marker is written together with its count or not at all,
and a duplicate inside the chunk fails its SET NX. The effects are exactly those of applying the
events one by one, in order (they commute within a chunk: a chunk holds no pin event, so
`deleted` cannot change inside it).

KEYS (one hash slot: every key carries the partition tag {pN}):
  1..E                 event markers (E = ARGV[3])
  E+4(g-1)+1 .. +4     per pin group g (1-based): pin hash, boards zset, queries zset, new-query set
  E+4G+1               the partition's dirty zset
ARGV:
  1 marker TTL (s): the dedup horizon   2 now (ms)   3 E (events)   4 G (pin groups)
  5 '1' to remember new queries for relevance pairs, else '0'
  then per group g at 5+(g-1)+1: pin id
  then 3 per event i at 5+G+3(i-1)+1 .. +3: group index, 'b' (board) | 'q' (query), folded text
Returns:
  one integer per event, in order: 0 duplicate event, -1 deleted pin (ignored), 1 counted.
]]
local nE, nG = tonumber(ARGV[3]), tonumber(ARGV[4])
local mine = ARGV[5] == '1'
local dirty = KEYS[nE + 4 * nG + 1]
local ea = 5 + nG
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
    redis.call('ZADD', dirty, 'NX', ARGV[2], ARGV[5 + g])
  end
end
return out
