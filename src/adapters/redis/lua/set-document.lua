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

KEYS (the pin's slot):
  1 the document key
ARGV:
  1 the document JSON, or '' for a tombstone   2 a tombstone's version (the last document's)
Returns:
  1 written, 0 refused (the stored document is newer)
]]
local function stamp(doc)
  -- Both keys end the document (core/document.ts writes them last): look in its tail first, so
  -- the cost does not grow with the pin's text; the whole document only when they are not there.
  local tail = string.sub(doc, -128)
  local v, u = string.match(tail, '"version":(%d+)'), string.match(tail, '"updated_at":"([^"]*)"')
  if not (v and u) then v, u = string.match(doc, '"version":(%d+)'), string.match(doc, '"updated_at":"([^"]*)"') end
  return tonumber(v or '0'), u or ''
end
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if cur and stamp(cur) > tonumber(ARGV[2]) then return 0 end
  redis.call('DEL', KEYS[1])
  return 1
end
if cur then
  local v, u = stamp(cur)
  local nv, nu = stamp(ARGV[1])
  if nv < v or (nv == v and nu < u) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
