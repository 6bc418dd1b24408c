--[[
apply-pin: apply one pin event (created | updated | deleted) to a pin's state.

A pin event older than the last one applied (by event time) is stale and ignored, so a
redelivered or reordered pin event cannot roll a pin back.

KEYS (one hash slot: the pin's partition tag {pN}):
  1 pin hash   2 boards zset   3 queries zset   4 new-query set   5 dirty zset of the partition
ARGV:
  1 pin id   2 event time (ms)   3 type: created | updated | deleted   4 pin fields JSON ('' for deleted)
  5 now (ms): when the pin became dirty
Returns:
  1 when applied, 0 when older than the state (stale, ignored).
]]
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
