--[[
read-pins: many pins' state of ONE partition in one call (the flush reads a tick's due pins).

Per pin: the hash, the top-k board titles and queries, and the new-query set. Top k is by count
desc, with ties at the cut resolved by text ascending (a plain ZRANGE REV would keep the
reverse-lexicographic ones), so documents never depend on Redis' tie order.

Fenced like apply-batch: a caller that no longer owns the partition (its epoch is not the
partition's) reads nothing, so it cannot publish documents from what it reads; and a partition
whose state is missing (no `ready` flag or no epoch: lost with a restarted Redis node) reads
nothing either, so nothing is published from partial state. The state is checked first.

KEYS (one hash slot: the partition tag {pN}):
  1 the partition's meta hash; then 4 per pin: pin hash, boards zset, queries zset, new-query set
ARGV:
  1 k (top-K size)   2 owner epoch of the caller ('' = no check: `pinrich enrich rebuild`, tests)
  3 '1' to read the new-query sets (pairs are mined), else '0' (they are then empty: not read)
Returns:
  -1 when fenced; -2 when the state is missing (only checked with an epoch); else one array per pin, in KEYS order: { HGETALL flat, top boards WITHSCORES,
  top queries WITHSCORES, SMEMBERS new queries }.
]]
if ARGV[2] ~= '' then
  local m = redis.call('HMGET', KEYS[1], 'ready', 'epoch')
  if m[1] ~= '1' or not m[2] then return -2 end
  if m[2] ~= ARGV[2] then return -1 end
end
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
local mine = ARGV[3] == '1'
local out = {}
for p = 0, (#KEYS - 1) / 4 - 1 do
  local b = 1 + 4 * p
  out[p + 1] = { redis.call('HGETALL', KEYS[b + 1]), top(KEYS[b + 2]), top(KEYS[b + 3]), mine and redis.call('SMEMBERS', KEYS[b + 4]) or {} }
end
return out
