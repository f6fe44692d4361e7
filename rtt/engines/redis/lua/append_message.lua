-- Store one message, its box entries, a stream item per recipient and push entries, atomically.
-- KEYS[1] message hash      KEYS[2] holders set
-- KEYS[3 .. 6] the app's message indexes (keys.message_orders): msgCr, -msgCr, msgUp, -msgUp
-- KEYS[7] frame hash        KEYS[8] push outbox stream   KEYS[9] writes counter
-- KEYS[10] the set of every outbox (keys.OUTBOXES)
-- KEYS[11] (when ARGV[12] == "1") the sender's box hash
-- then per recipient (n of them, aligned with ARGV[15]): seq counter, stream zset, box hash
-- and last: the app's message counter, then its message numbers zset (keys.message_numbers)
-- ARGV[1] msg_id  ARGV[2] from_id ("" = null)  ARGV[3] sender json  ARGV[4] to json
-- ARGV[5] msg_cr  ARGV[6] content  ARGV[7] reply_to ("" = none)  ARGV[8] frame id
-- ARGV[9] frame head  ARGV[10] frame tail  ARGV[11] frame ttl (ms)  ARGV[12] has sender (0/1)
-- ARGV[13] sender profile  ARGV[14] max stream items
-- ARGV[15] recipients (json array)  ARGV[16] their mids, aligned (json array of strings)
-- ARGV[17] push entries, grouped as _outbox.lua reads them
-- Every key is checked before the first write (_checks.lua).
-- Returns {writes, seq_1 .. seq_n}
local pushes = cjson.decode(ARGV[17])
local has_sender = ARGV[12] == "1"
local profiles, mids = cjson.decode(ARGV[15]), cjson.decode(ARGV[16])
local n = #profiles
local base = 10 + (has_sender and 1 or 0)
if #KEYS ~= base + 3 * n + 2 or #ARGV ~= 17 or #mids ~= n then
  return redis.error_reply("ERR append_message: argument count")
end
if redis.call("EXISTS", KEYS[1]) == 1 then
  return redis.error_reply("ERR append_message: message exists")
end
need(KEYS[2], "set")
for k = 3, 6 do
  need(KEYS[k], "zset")
end
need(KEYS[7], "hash")
need(KEYS[8], "stream")
need_counter(KEYS[9])
need(KEYS[10], "set")
need_counter(KEYS[#KEYS - 1])
need(KEYS[#KEYS], "zset")
if has_sender then
  need(KEYS[11], "hash")
end
for i = 1, n do
  local k = base + 3 * (i - 1)
  need_counter(KEYS[k + 1])
  need(KEYS[k + 2], "zset")
  need(KEYS[k + 3], "hash")
end

local msg_id, cr, fid = ARGV[1], ARGV[5], ARGV[8]
redis.call("HSET", KEYS[1], "from_id", ARGV[2], "sender", ARGV[3], "to", ARGV[4],
  "sent_at", cr, "content", ARGV[6], "msg_cr", cr, "msg_up", cr, "msg_ver", 1,
  "reply_to", ARGV[7])
redis.call("ZADD", KEYS[3], cr, msg_id)
redis.call("ZADD", KEYS[4], -tonumber(cr), msg_id)
redis.call("ZADD", KEYS[5], cr, msg_id)
redis.call("ZADD", KEYS[6], -tonumber(cr), msg_id)
redis.call("ZADD", KEYS[#KEYS], redis.call("INCR", KEYS[#KEYS - 1]), msg_id)
redis.call("HSET", KEYS[7], "head", ARGV[9], "tail", ARGV[10])
redis.call("PEXPIRE", KEYS[7], ARGV[11])

local max_items = tonumber(ARGV[14])
local HOLDERS_PER_CALL = 1000  -- well under Lua's limit on unpack()ed arguments
local entry = "[0," .. cr .. "," .. cr .. ",1]"
local result = {0}
local holders = {}  -- added to the holders set HOLDERS_PER_CALL at a time, not one call each
for i = 1, n do
  local k = base + 3 * (i - 1)
  local seq = redis.call("INCR", KEYS[k + 1])
  redis.call("ZADD", KEYS[k + 2], seq, seq .. ":" .. fid .. ":" .. mids[i])
  keep_newest(KEYS[k + 2], max_items)
  redis.call("HSET", KEYS[k + 3], "inbox:" .. msg_id, entry)
  holders[#holders + 1] = "inbox|" .. profiles[i]
  if #holders == HOLDERS_PER_CALL or i == n then
    redis.call("SADD", KEYS[2], unpack(holders))
    holders = {}
  end
  result[i + 1] = seq
end
if has_sender then
  redis.call("HSET", KEYS[11], "sent:" .. msg_id, "[1," .. cr .. "," .. cr .. ",1]")
  redis.call("SADD", KEYS[2], "sent|" .. ARGV[13])
end
queue_pushes(KEYS[8], KEYS[10], pushes)
result[1] = redis.call("INCR", KEYS[9])
return result
