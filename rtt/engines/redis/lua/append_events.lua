-- Store one event per recipient, a stream item each and push entries, atomically.
-- KEYS[1] frame hash  KEYS[2] push outbox stream  KEYS[3] writes counter
-- KEYS[4] the set of every outbox (keys.OUTBOXES)  KEYS[5] the set of apps with events
-- KEYS[6] the app's event ages zset (keys.event_ages)
-- then per recipient (n of them, aligned with ARGV[6]): seq counter, stream zset, events hash,
-- event order zset, event seqs zset (each event id by its seq: what piggybacking follows)
-- ARGV[1] frame id  ARGV[2] frame head  ARGV[3] frame tail  ARGV[4] frame ttl (ms)
-- ARGV[5] max stream items
-- ARGV[6] json array of [ev_id, mid, event json, created_at, event ages member], one per
-- recipient  ARGV[7] push entries, grouped as _outbox.lua reads them  ARGV[8] the app id
-- Every key is checked before the first write (_checks.lua).
-- Returns {writes, seq_1 .. seq_n}
local pushes = cjson.decode(ARGV[7])
local recipients = cjson.decode(ARGV[6])
local n = #recipients
if #KEYS ~= 6 + 5 * n or #ARGV ~= 8 then
  return redis.error_reply("ERR append_events: argument count")
end
need(KEYS[1], "hash")
need(KEYS[2], "stream")
need_counter(KEYS[3])
need(KEYS[4], "set")
need(KEYS[5], "set")
need(KEYS[6], "zset")
for i = 1, n do
  local k = 6 + 5 * (i - 1)
  need_counter(KEYS[k + 1])
  need(KEYS[k + 2], "zset")
  need(KEYS[k + 3], "hash")
  need(KEYS[k + 4], "zset")
  need(KEYS[k + 5], "zset")
end

local fid, max_items = ARGV[1], tonumber(ARGV[5])
redis.call("HSET", KEYS[1], "head", ARGV[2], "tail", ARGV[3])
redis.call("PEXPIRE", KEYS[1], ARGV[4])
local result = {0}
for i = 1, n do
  local r, k = recipients[i], 6 + 5 * (i - 1)
  local seq = redis.call("INCR", KEYS[k + 1])
  redis.call("ZADD", KEYS[k + 2], seq, seq .. ":" .. fid .. ":" .. r[2])
  keep_newest(KEYS[k + 2], max_items)
  redis.call("HSET", KEYS[k + 3], r[1], r[3])
  redis.call("ZADD", KEYS[k + 4], r[4], r[1])
  redis.call("ZADD", KEYS[k + 5], seq, r[1])
  redis.call("ZADD", KEYS[6], r[4], r[5])
  result[i + 1] = seq
end
if n > 0 then
  redis.call("SADD", KEYS[5], ARGV[#ARGV])
end
queue_pushes(KEYS[2], KEYS[4], pushes)
result[1] = redis.call("INCR", KEYS[3])
return result
