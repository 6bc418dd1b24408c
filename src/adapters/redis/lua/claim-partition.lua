--[[
claim-partition: this instance takes over the enrich state of one input partition.

Called when the partition is assigned to this instance. Bumps the partition's owner epoch, so
every later write of a previous owner (a zombie: an instance frozen past its session timeout
whose partitions moved) fails its epoch check and changes nothing; and returns the input
offsets the state already covers, so records the state holds are not applied twice when Kafka
redelivers them (they were applied, but their Kafka commit did not happen before the move).

With ARGV[1] (a resume): the partition's state was lost with a Redis node and rebuilt (its meta
hash has no epoch any more); the owner puts its own epoch back instead of taking a new one, and
only if no one holds a higher one, so a zombie's older epoch can never win over the owner's.

KEYS (one hash slot: the partition tag {pN}):
  1 the partition's meta hash: epoch, ready, o:<topic> -> next offset not yet in the state
ARGV:
  1 (optional) the caller's epoch to resume with
Returns:
  { epoch (the new one; on a resume the partition's epoch after it: the caller's when it holds
  the partition), ready ('1' or ''), then the meta hash flat (field, value, ...) }
]]
local epoch
if ARGV[1] then
  local cur = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
  epoch = math.max(cur, tonumber(ARGV[1]))
  if epoch > cur then redis.call('HSET', KEYS[1], 'epoch', epoch) end
else
  epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
end
return { epoch, redis.call('HGET', KEYS[1], 'ready') or '', redis.call('HGETALL', KEYS[1]) }
