--[[
set-document: write (or delete) a pin's published document, never replacing a newer one.

The document key lives in the pin's own slot, apart from its partition's state, so the epoch
fence of commit-flushes cannot cover it. Instead the write itself is ordered: a document is
newer when its version is higher, or equal with a later updated_at (an instance that lost its
partition while it held a built document can publish it under the same version the new owner
then publishes with fuller state; the later build wins). A tombstone deletes the document unless
the stored one is newer than the version it ends. So `pinrich enrich rebuild` replaying older
documents, or a zombie writing late, leaves what readers (score, `labels export`) see as it is.

The version and updated_at are read from the documents' JSON text: `"version":` and
`"updated_at":"` only occur there as keys (inside a JSON string every quote is escaped), so a
match in the document's last 128 bytes is the key's, wherever the tail starts.

Many documents in one call where the keys allow it (one Redis server: a tick's documents in a
few calls instead of one script run each; on a Redis Cluster each document key is its own slot,
so the caller sends one per call).

KEYS (on a cluster: one key, the pin's slot):
  i the document key of the i-th document
ARGV (two per key):
  2i-1 the document JSON, or '' for a tombstone   2i a tombstone's version (the last document's)
Returns:
  per key, 1 written, 0 refused (the stored document is newer)
]]
local function stamp(doc)
  -- Both keys end the document (core/document.ts writes them last): look in its tail first, so
  -- the cost does not grow with the pin's text; the whole document only when they are not there.
  local tail = string.sub(doc, -128)
  local v, u = string.match(tail, '"version":(%d+)'), string.match(tail, '"updated_at":"([^"]*)"')
  if not (v and u) then v, u = string.match(doc, '"version":(%d+)'), string.match(doc, '"updated_at":"([^"]*)"') end
  return tonumber(v or '0'), u or ''
end
local function set(key, doc, version)
  local cur = redis.call('GET', key)
  if doc == '' then
    if cur and stamp(cur) > tonumber(version) then return 0 end
    redis.call('DEL', key)
    return 1
  end
  if cur then
    local v, u = stamp(cur)
    local nv, nu = stamp(doc)
    if nv < v or (nv == v and nu < u) then return 0 end
  end
  redis.call('SET', key, doc)
  return 1
end
local out = {}
for i = 1, #KEYS do out[i] = set(KEYS[i], ARGV[2 * i - 1], ARGV[2 * i]) end
return out
