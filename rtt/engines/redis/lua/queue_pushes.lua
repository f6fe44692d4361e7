-- Queue push entries for an item that is not stored (a system-channel send with
-- shouldPersist 0), exactly as append_message.lua writes its push entries.
-- KEYS[1] the app's push outbox stream  KEYS[2] the set of every outbox (keys.OUTBOXES)
-- ARGV[1] push entries: a json array of [profile, kind, ref, title, body, data, created_at]
-- Every key is checked before the first write (_checks.lua).
local pushes = cjson.decode(ARGV[1])
need(KEYS[1], "stream")
need(KEYS[2], "set")
if #pushes > 0 and redis.call("EXISTS", KEYS[1]) == 0 then
  -- the outbox stream is born with its consumer group, so dispatchers never miss an entry
  redis.call("XGROUP", "CREATE", KEYS[1], "rtt-push", "0", "MKSTREAM")
  redis.call("SADD", KEYS[2], KEYS[1])
end
for _, e in ipairs(pushes) do
  redis.call("XADD", KEYS[1], "*", "profile", e[1], "kind", e[2], "ref", e[3], "title", e[4],
    "body", e[5], "data", e[6], "created_at", e[7], "attempts", 0)
end
return #pushes
