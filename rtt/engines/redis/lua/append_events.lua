-- Store one event per recipient, a stream item each and push entries, atomically.
-- KEYS[1] frame hash  KEYS[2] push outbox stream  KEYS[3] writes counter
-- KEYS[4 ..] per recipient: seq counter, stream zset, events hash (3 keys each, n recipients)
-- ARGV[1] frame id  ARGV[2] frame head  ARGV[3] frame tail  ARGV[4] frame ttl (ms)
-- ARGV[5] max stream items  ARGV[6] n recipients  ARGV[7] n pushes
-- ARGV[8 ..] 3 fields per recipient: ev_id, mid, event json; then 7 fields per push:
--            profile, kind, ref, title, body, data, created_at
-- Returns {writes, seq_1 .. seq_n}
local n, pushes = tonumber(ARGV[6]), tonumber(ARGV[7])
if #KEYS ~= 3 + 3 * n or #ARGV ~= 7 + 3 * n + 7 * pushes then
  return redis.error_reply("ERR append_events: argument count")
end

local fid, max_items = ARGV[1], tonumber(ARGV[5])
redis.call("HSET", KEYS[1], "head", ARGV[2], "tail", ARGV[3])
redis.call("PEXPIRE", KEYS[1], ARGV[4])
local result = {0}
for i = 1, n do
  local k, a = 3 + 3 * (i - 1), 7 + 3 * (i - 1)
  local seq = redis.call("INCR", KEYS[k + 1])
  redis.call("ZADD", KEYS[k + 2], seq, seq .. ":" .. fid .. ":" .. ARGV[a + 2])
  redis.call("ZREMRANGEBYRANK", KEYS[k + 2], 0, -(max_items + 1))
  redis.call("HSET", KEYS[k + 3], ARGV[a + 1], ARGV[a + 3])
  result[i + 1] = seq
end
if pushes > 0 and redis.call("EXISTS", KEYS[2]) == 0 then
  -- the outbox stream is born with its consumer group, so dispatchers never miss an entry
  redis.call("XGROUP", "CREATE", KEYS[2], "rtt-push", "0", "MKSTREAM")
end
local p = 7 + 3 * n
for i = 0, pushes - 1 do
  local o = p + 7 * i
  redis.call("XADD", KEYS[2], "*", "profile", ARGV[o + 1], "kind", ARGV[o + 2],
    "ref", ARGV[o + 3], "title", ARGV[o + 4], "body", ARGV[o + 5], "data", ARGV[o + 6],
    "created_at", ARGV[o + 7], "attempts", 0)
end
result[1] = redis.call("INCR", KEYS[3])
return result
