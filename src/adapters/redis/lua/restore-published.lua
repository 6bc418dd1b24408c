--[[
restore-published: `pinrich enrich rebuild` puts back a pin's last published content hash and
version (read from pins.enriched), never over a newer one.

The rebuild reads pins.enriched up to a snapshot while workers may go on publishing on
partitions whose state was not lost (a Redis Cluster node restarted: only its slots are gone);
those pins already hold a later version, which must stay, or the worker would publish a version
it already published.

KEYS (the partition's slot):
  1 the pin's state hash
ARGV:
  1 content hash ('deleted' for a tombstone)   2 version (a tombstone: that of the document it ends)
  3 '1' for a tombstone (the version is kept as it is), else '0'
Returns:
  1 restored, 0 kept (the state holds a later version)
]]
local cur = tonumber(redis.call('HGET', KEYS[1], 'ver') or '-1')
local v = tonumber(ARGV[2])
if ARGV[3] == '1' then
  if cur > v then return 0 end
  redis.call('HSET', KEYS[1], 'hash', ARGV[1])
  return 1
end
if cur > v then return 0 end
redis.call('HSET', KEYS[1], 'hash', ARGV[1], 'ver', ARGV[2])
return 1
