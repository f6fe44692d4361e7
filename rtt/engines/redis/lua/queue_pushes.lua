-- Queue push entries for an item that is not stored (a system-channel send with
-- shouldPersist 0), with the writer every send script uses (_outbox.lua).
-- KEYS[1] the app's push outbox stream  KEYS[2] the set of every outbox (keys.OUTBOXES)
-- ARGV[1] push entries: a json array of [profile, kind, ref, title, body, data, created_at]
-- Every key is checked before the first write (_checks.lua).
local pushes = cjson.decode(ARGV[1])
need(KEYS[1], "stream")
need(KEYS[2], "set")
queue_pushes(KEYS[1], KEYS[2], pushes)
return #pushes
