--[[
set-document: write (or delete) a pin's published document, never replacing a newer one.

The document key lives in the pin's own slot, apart from its partition's state, so the epoch
fence of commit-flushes cannot cover it. Instead the write itself is ordered: a document is
newer when its version is higher, or equal with a later updated_at (an instance that lost its
partition while it held a built document can publish it under the same version the new owner
then publishes with fuller state; the later build wins). A tombstone deletes the document unless
the stored one is newer than the version it ends, and leaves that version behind in a marker
key (in the same slot), so a late write of a document it ended (a zombie's, the rebuild's) is
refused too, not taken for a pin's first document: only a higher version (the pin created again)
is written over a tombstone. The marker lives as long as Kafka keeps a tombstone on a compacted
topic by default (delete.retention.ms, one day).

So `pinrich enrich rebuild` replaying older documents, or a zombie writing late, leaves what
readers (score, `labels export`) see as it is.

The version and updated_at are read from the documents' JSON text: `"version":` and
`"updated_at":"` only occur there as keys (inside a JSON string every quote is escaped), so a
match in the document's last 128 bytes is the key's, wherever the tail starts.

Many documents in one call where the keys allow it (one Redis server: a tick's documents in a
few calls instead of one script run each; on a Redis Cluster each document's keys are its own
slot, so the caller sends one per call).

KEYS (two per document; on a cluster one document, its pin's slot):
  2i-1 the document key of the i-th document   2i its tombstone marker key
ARGV (two per document):
  2i-1 the document JSON, or '' for a tombstone   2i a tombstone's version (the last document's)
Returns:
  per document, 1 written, 0 refused (the stored document or tombstone is newer)
]]
local function stamp(doc)
  -- Both keys end the document (core/document.ts writes them last): look in its tail first, so
  -- the cost does not grow with the pin's text; the whole document only when they are not there.
  local tail = string.sub(doc, -128)
  local v, u = string.match(tail, '"version":(%d+)'), string.match(tail, '"updated_at":"([^"]*)"')
  if not (v and u) then v, u = string.match(doc, '"version":(%d+)'), string.match(doc, '"updated_at":"([^"]*)"') end
  return tonumber(v or '0'), u or ''
end
local TOMBSTONE_TTL_SECONDS = 86400
local function set(key, tomb, doc, version)
  local cur = redis.call('GET', key)
  if doc == '' then
    if cur and stamp(cur) > tonumber(version) then return 0 end
    redis.call('DEL', key)
    local ended = tonumber(redis.call('GET', tomb) or '-1')
    redis.call('SET', tomb, math.max(ended, tonumber(version)), 'EX', TOMBSTONE_TTL_SECONDS)
    return 1
  end
  local nv, nu = stamp(doc)
  if cur then
    local v, u = stamp(cur)
    if nv < v or (nv == v and nu < u) then return 0 end
  else
    local ended = redis.call('GET', tomb)
    if ended and nv <= tonumber(ended) then return 0 end
  end
  redis.call('SET', key, doc)
  return 1
end
local out = {}
for i = 1, #KEYS / 2 do out[i] = set(KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 * i - 1], ARGV[2 * i]) end
return out
