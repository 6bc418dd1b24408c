--[[
apply-batch: apply one flush interval of ONE partition's records to its state, atomically with
the input offsets they cover, fenced by the owner epoch.

The worker aggregates a partition's records in memory for one flush interval and writes them
here in one script run (as Kafka Streams and Flink write each changed key once per commit
interval): pin events, captions and engagement segments per pin, in their arrival order, so the
result is exactly that of applying the records one by one. With the state it records, in the
same run, the next input offset of every topic it covers: a redelivered record below it is
recognised by its offset and skipped by the worker, without a per-event marker.

Engagement is deduplicated by event id against the dedup horizon: per partition, B time buckets
of seen ids (sets; the newest is KEYS[3]), each expiring after the horizon. A new id goes into
the newest bucket; an id in any live bucket is a duplicate (SMISMEMBER over all events at once).

KEYS (one hash slot: every key carries the partition tag {pN}):
  1 meta hash (epoch, ready, o:<topic>)   2 dirty zset   3 .. 2+B seen-id buckets (newest first)
  then 4 per pin g (1-based) at 2+B+4(g-1)+1 .. +4: pin hash, boards zset, queries zset, new-query set
ARGV:
  1 owner epoch of the caller ('' = no check: the rebuild)   2 '1' to require the state marker (ready), else '0'   3 now (ms)
  4 B   5 TTL of the newest bucket (s)   6 '1' to remember new queries for pairs, else '0'
  7 G pins   8 T topics   9 E events
  then T pairs: topic, next offset
  then the E event ids (unique within the call), in the order the 'e' ops below take them, as
  one JSON array
  then the pins' ops as one JSON array (decoded with cjson; ~4 values per event as separate
  arguments cost the client more than the one JSON.stringify), per pin g: pin id, op count,
  then its ops:
    'p' event-time-ms type(created|updated|deleted) pin-JSON   a pin event
    'c' caption-JSON                                           a caption
    'e' m, then m triples: 'b'|'q', folded text, n = the number of the segment's events with
        this text; those n events are the next n of the E ids (so a duplicate among them takes
        one off this text's count)
Returns:
  { status, counted, duplicates, ignored, pins applied, pins stale, captions changed }
  status 1 applied; -1 fenced (another instance claimed the partition: nothing written);
  -2 the partition's state is missing (nothing written): its meta hash has no `ready` flag, or
  no owner epoch at all (it was lost with a Redis node and rebuilt: the caller claims it again).
  The state is checked before the epoch: a meta hash lost with a restarted node must read as
  missing state (held, repaired by `pinrich enrich rebuild`), not as another owner's claim.
]]
local meta, dirty = KEYS[1], KEYS[2]
if ARGV[2] == '1' and redis.call('HGET', meta, 'ready') ~= '1' then return { -2, 0, 0, 0, 0, 0, 0 } end
if ARGV[1] ~= '' then
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then return { -2, 0, 0, 0, 0, 0, 0 } end
  if epoch ~= ARGV[1] then return { -1, 0, 0, 0, 0, 0, 0 } end
end
local now, nB, ttl, mine = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6] == '1'
local nG, nT, nE = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local a = 10
-- Never backwards: the rebuild replays a partition the worker may have taken further meanwhile.
for _ = 1, nT do
  local f = 'o:' .. ARGV[a]
  local cur = tonumber(redis.call('HGET', meta, f) or '-1')
  if tonumber(ARGV[a + 1]) > cur then redis.call('HSET', meta, f, ARGV[a + 1]) end
  a = a + 2
end

-- Deduplication: which event ids are already in a live bucket (in chunks: Lua's unpack limit).
local ids, A = cjson.decode(ARGV[a]), cjson.decode(ARGV[a + 1])
local dup = {}
local CH = 4000
for from = 0, nE - 1, CH do
  local to = math.min(nE, from + CH)
  local chunk = {}
  for i = from + 1, to do chunk[#chunk + 1] = ids[i] end
  for b = 1, nB do
    local seen = redis.call('SMISMEMBER', KEYS[2 + b], unpack(chunk))
    for j = 1, #seen do if seen[j] == 1 then dup[from + j] = true end end
  end
  local fresh = {}
  for j = 1, #chunk do if not dup[from + j] then fresh[#fresh + 1] = chunk[j] end end
  if #fresh > 0 then redis.call('SADD', KEYS[3], unpack(fresh)) end
end
if nE > 0 then redis.call('EXPIRE', KEYS[3], ttl) end
a = 1 -- from here on, A (the ops) is read

local counted, dups, ignored, applied, stale, captions = 0, 0, 0, 0, 0, 0
local ev = 1 -- the next event id (1-based position in the call's ids) an engagement segment takes
local changedPins = {} -- ZADD arguments (score, member) of the pins marked dirty below
for g = 1, nG do
  local base = 2 + nB + 4 * (g - 1)
  local h, kb, kq, kn = KEYS[base + 1], KEYS[base + 2], KEYS[base + 3], KEYS[base + 4]
  local pinId, nOps = A[a], tonumber(A[a + 1])
  a = a + 2
  -- The pin's counters are read once and written once (HSET below), not incremented per op:
  -- two script steps per pin instead of one per segment plus one for `gen`.
  local f = redis.call('HMGET', h, 'deleted', 'etime', 'engagements', 'gen')
  local deleted = f[1] == '1'
  local etime = tonumber(f[2] or '-1')
  local engagements = tonumber(f[3] or '0')
  local gen = tonumber(f[4] or '0')
  local changed = false
  for _ = 1, nOps do
    local op = A[a]
    if op == 'p' then
      local t = tonumber(A[a + 1])
      if t < etime then stale = stale + 1
      else
        if A[a + 2] == 'deleted' then
          redis.call('HSET', h, 'deleted', '1', 'etime', A[a + 1])
          redis.call('HDEL', h, 'pin', 'caption')
          redis.call('DEL', kb, kq, kn)
          deleted = true
          engagements = 0
        else
          redis.call('HSET', h, 'pin', A[a + 3], 'etime', A[a + 1], 'deleted', '0')
          deleted = false
        end
        etime = t
        applied = applied + 1
        changed = true
      end
      a = a + 4
    elseif op == 'c' then
      if not deleted and redis.call('HGET', h, 'caption') ~= A[a + 1] then
        redis.call('HSET', h, 'caption', A[a + 1])
        changed = true
      end
      captions = captions + 1
      a = a + 2
    else
      -- Counted in the caller per distinct text; only duplicates are taken off here. Each
      -- text's events are the next n event ids of the call (ev runs through them).
      local m, n = tonumber(A[a + 1]), 0
      local t = a + 2
      for _ = 1, m do
        local c = tonumber(A[t + 2])
        local fresh = c
        for i = ev, ev + c - 1 do if dup[i] then fresh = fresh - 1 end end
        ev = ev + c
        dups = dups + c - fresh
        if fresh > 0 then
          if deleted then ignored = ignored + fresh
          else
            local kind, text = A[t], A[t + 1]
            local total = tonumber(redis.call('ZINCRBY', kind == 'b' and kb or kq, fresh, text))
            if mine and kind == 'q' and total == fresh then redis.call('SADD', kn, text) end
            n = n + fresh
          end
        end
        t = t + 3
      end
      if n > 0 then
        engagements = engagements + n
        counted = counted + n
        changed = true
      end
      a = t
    end
  end
  if changed then
    redis.call('HSET', h, 'gen', gen + 1, 'engagements', engagements)
    changedPins[#changedPins + 1] = now
    changedPins[#changedPins + 1] = pinId
  end
end
-- Dirty marks in one ZADD per 2,000 pins (NX: a pin already dirty keeps its older time; 4,000
-- arguments, as the dedup chunks above: under Lua's unpack limit).
for from = 1, #changedPins, CH do
  redis.call('ZADD', dirty, 'NX', unpack(changedPins, from, math.min(#changedPins, from + CH - 1)))
end
return { 1, counted, dups, ignored, applied, stale, captions }
