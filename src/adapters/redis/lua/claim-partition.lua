--[[
claim-partition: this instance takes over the enrich state of one input partition.

Called when the partition is assigned to this instance. Bumps the partition's owner epoch, so
every later write of a previous owner (a zombie: an instance frozen past its session timeout
whose partitions moved) fails its epoch check and changes nothing; and returns the input
offsets the state already covers, so records the state holds are not applied twice when Kafka
redelivers them (they were applied, but their Kafka commit did not happen before the move).

KEYS (one hash slot: the partition tag {pN}):
  1 the partition's meta hash: epoch, ready, o:<topic> -> next offset not yet in the state
ARGV:
  none
Returns:
  { new epoch, ready ('1' or ''), then the meta hash flat (field, value, ...) }
]]
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
return { epoch, redis.call('HGET', KEYS[1], 'ready') or '', redis.call('HGETALL', KEYS[1]) }
