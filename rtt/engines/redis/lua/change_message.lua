-- Update or delete a message, compare-and-set on its version, with a stream item per holder.
-- KEYS[1] message hash  KEYS[2] holders set
-- KEYS[3 .. 6] the app's message indexes (keys.message_orders): msgCr, -msgCr, msgUp, -msgUp
-- KEYS[7] frame hash  KEYS[8] writes counter
-- KEYS[9 ..] per holder profile: seq counter, stream zset, box hash (3 keys each, n holders)
-- KEYS[#KEYS] the app's message numbers zset (keys.message_numbers)
-- ARGV[1] "update" | "delete"  ARGV[2] msg_id  ARGV[3] expected version  ARGV[4] content
-- ARGV[5] now  ARGV[6] frame id  ARGV[7] frame head  ARGV[8] frame tail  ARGV[9] frame ttl (ms)
-- ARGV[10] max stream items  ARGV[11] n holders  ARGV[12 ..] holder profile ids (sorted)
-- Returns {writes, seq_1 .. seq_n}, or an error reply NOTFOUND / VERSION / RETRY (the holders
-- changed since the caller read them: read again and retry). Every key is checked before the
-- first write (_checks.lua).
local n = tonumber(ARGV[11])
if #KEYS ~= 8 + 3 * n + 1 or #ARGV ~= 11 + n then
  return redis.error_reply("ERR change_message: argument count")
end
need(KEYS[1], "hash")
need(KEYS[2], "set")
local version = redis.call("HGET", KEYS[1], "msg_ver")
if not version then
  return redis.error_reply("NOTFOUND")
end
if version ~= ARGV[3] then
  return redis.error_reply("VERSION")
end
local seen, count = {}, 0
for _, member in ipairs(redis.call("SMEMBERS", KEYS[2])) do
  local profile = string.sub(member, string.find(member, "|", 1, true) + 1)
  if not seen[profile] then
    seen[profile] = true
    count = count + 1
  end
end
if count ~= n then
  return redis.error_reply("RETRY")
end
for i = 1, n do
  if not seen[ARGV[11 + i]] then
    return redis.error_reply("RETRY")
  end
end
for k = 3, 6 do
  need(KEYS[k], "zset")
end
need(KEYS[7], "hash")
need_counter(KEYS[8])
need(KEYS[#KEYS], "zset")
for i = 1, n do
  local base = 8 + 3 * (i - 1)
  need_counter(KEYS[base + 1])
  need(KEYS[base + 2], "zset")
  need(KEYS[base + 3], "hash")
end

local msg_id, fid, max_items = ARGV[2], ARGV[6], tonumber(ARGV[10])
if ARGV[1] == "update" then
  redis.call("HSET", KEYS[1], "content", ARGV[4], "msg_up", ARGV[5])
  redis.call("HINCRBY", KEYS[1], "msg_ver", 1)
  redis.call("ZADD", KEYS[5], ARGV[5], msg_id)
  redis.call("ZADD", KEYS[6], -tonumber(ARGV[5]), msg_id)
else
  redis.call("DEL", KEYS[1], KEYS[2])
  for k = 3, 6 do
    redis.call("ZREM", KEYS[k], msg_id)
  end
  redis.call("ZREM", KEYS[#KEYS], msg_id)
end
redis.call("HSET", KEYS[7], "head", ARGV[7], "tail", ARGV[8])
redis.call("PEXPIRE", KEYS[7], ARGV[9])
local result = {0}
for i = 1, n do
  local base = 8 + 3 * (i - 1)
  if ARGV[1] == "delete" then
    redis.call("HDEL", KEYS[base + 3], "inbox:" .. msg_id, "sent:" .. msg_id)
  end
  local seq = redis.call("INCR", KEYS[base + 1])
  redis.call("ZADD", KEYS[base + 2], seq, seq .. ":" .. fid .. ":")
  keep_newest(KEYS[base + 2], max_items)
  result[i + 1] = seq
end
result[1] = redis.call("INCR", KEYS[8])
return result
