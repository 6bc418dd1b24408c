--[[
apply-caption: record a pin's caption (status and text for its current image key).

KEYS (one hash slot: the pin's partition tag {pN}):
  1 pin hash   2 dirty zset of the partition
ARGV:
  1 caption JSON (stable fields only)   2 pin id   3 now (ms)
Returns:
  1 when the caption changed, 0 when identical, -1 for a deleted pin (ignored).
]]
if redis.call('HGET', KEYS[1], 'deleted') == '1' then return -1 end
if redis.call('HGET', KEYS[1], 'caption') == ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'caption', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[2])
return 1
