-- Store one event per recipient, a stream item each and push entries, atomically.
-- KEYS[1] frame hash  KEYS[2] push outbox stream  KEYS[3] writes counter
-- ARGV[1] frame id  ARGV[2] frame head  ARGV[3] frame tail  ARGV[4] frame ttl (ms)
-- ARGV[5] max stream items  ARGV[6] profile key prefix (keys.py)
-- ARGV[7] json array of [profile, ev_id, mid, event json, created_at], one per recipient
-- ARGV[8] n pushes  ARGV[9 ..] 7 per push: profile, kind, ref, title, body, data, created_at
-- Each recipient's keys are derived here, as in append_message.lua.
-- Returns {writes, seq_1 .. seq_n}
local pushes = tonumber(ARGV[8])
local recipients = cjson.decode(ARGV[7])
local n = #recipients
if #KEYS ~= 3 or #ARGV ~= 8 + 7 * pushes then
  return redis.error_reply("ERR append_events: argument count")
end

local fid, max_items = ARGV[1], tonumber(ARGV[5])
redis.call("HSET", KEYS[1], "head", ARGV[2], "tail", ARGV[3])
redis.call("PEXPIRE", KEYS[1], ARGV[4])
local result = {0}
local prefix = ARGV[6]
for i = 1, n do
  local r = recipients[i]
  local key = prefix .. r[1] .. "}"
  local seq = redis.call("INCR", key .. ":seq")
  redis.call("ZADD", key .. ":stream", seq, seq .. ":" .. fid .. ":" .. r[3])
  redis.call("ZREMRANGEBYRANK", key .. ":stream", 0, -(max_items + 1))
  redis.call("HSET", key .. ":events", r[2], r[4])
  redis.call("ZADD", key .. ":evorder", r[5], r[2])
  result[i + 1] = seq
end
if pushes > 0 and redis.call("EXISTS", KEYS[2]) == 0 then
  -- the outbox stream is born with its consumer group, so dispatchers never miss an entry
  redis.call("XGROUP", "CREATE", KEYS[2], "rtt-push", "0", "MKSTREAM")
end
local p = 8
for i = 0, pushes - 1 do
  local o = p + 7 * i
  redis.call("XADD", KEYS[2], "*", "profile", ARGV[o + 1], "kind", ARGV[o + 2],
    "ref", ARGV[o + 3], "title", ARGV[o + 4], "body", ARGV[o + 5], "data", ARGV[o + 6],
    "created_at", ARGV[o + 7], "attempts", 0)
end
result[1] = redis.call("INCR", KEYS[3])
return result
