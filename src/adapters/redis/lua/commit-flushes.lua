--[[
commit-flushes: after a flush's documents are published, record them for many pins of ONE
partition.

Per pin: record the published content hash and version, forget the published new queries, then
clear the dirty mark unless the pin changed since it was read (its `gen` differs: it stays dirty
and is flushed again next time). The published document itself (Pdoc:{pin}, read by score and
`labels export`) lives in the pin's own slot and is written by the caller before this script.

Fenced like apply-batch: nothing is recorded for a caller that lost the partition, nor in a
partition whose state is missing (checked first).

KEYS (one hash slot: the partition tag {pN}):
  1 the partition's meta hash   2 its dirty zset; then 2 per pin: pin hash, new-query set
ARGV:
  1 owner epoch of the caller ('' = no check)
  then per pin: pin id, gen read before publishing, new content hash ('' = nothing published),
  new version, Q, then Q published queries
Returns:
  -1 when fenced; -2 when the state is missing (only checked with an epoch); else per pin, 1 when the dirty mark was cleared, 0 when the pin changed meanwhile.
]]
if ARGV[1] ~= '' then
  local m = redis.call('HMGET', KEYS[1], 'ready', 'epoch')
  if m[1] ~= '1' or not m[2] then return -2 end
  if m[2] ~= ARGV[1] then return -1 end
end
local out = {}
local a = 2
local clean = {} -- pins whose dirty mark goes (one ZREM per few thousand)
for p = 0, (#KEYS - 2) / 2 - 1 do
  local b = 2 + 2 * p
  local q = tonumber(ARGV[a + 4])
  if ARGV[a + 2] ~= '' then
    redis.call('HSET', KEYS[b + 1], 'hash', ARGV[a + 2], 'ver', ARGV[a + 3])
  end
  for from = a + 5, a + 4 + q, 4000 do redis.call('SREM', KEYS[b + 2], unpack(ARGV, from, math.min(a + 4 + q, from + 3999))) end
  if (redis.call('HGET', KEYS[b + 1], 'gen') or '') == ARGV[a + 1] then
    clean[#clean + 1] = ARGV[a]
    out[p + 1] = 1
  else
    out[p + 1] = 0
  end
  a = a + 5 + q
end
for from = 1, #clean, 4000 do redis.call('ZREM', KEYS[2], unpack(clean, from, math.min(#clean, from + 3999))) end
return out
