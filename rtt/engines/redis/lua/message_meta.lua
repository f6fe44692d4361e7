-- What a reply needs to know of messages before reading any content: their filter and sort
-- values and the sizes of their parts, for a batch of messages in one call (a command per
-- message costs the node more CPU than everything else a page does).
-- KEYS[1 ..] message hashes     ARGV[1] "1" to include each message's `to` list
-- Returns per key {from_id, reply_to, msg_cr, msg_up, #content, #sender, #to, to or nil};
-- msg_cr is nil for a message that does not exist.
local with_to = ARGV[1] == "1"
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call("HMGET", key, "from_id", "reply_to", "msg_cr", "msg_up")
  out[i] = {v[1], v[2], v[3], v[4],
    redis.call("HSTRLEN", key, "content"), redis.call("HSTRLEN", key, "sender"),
    redis.call("HSTRLEN", key, "to"), with_to and redis.call("HGET", key, "to")}
end
return out
