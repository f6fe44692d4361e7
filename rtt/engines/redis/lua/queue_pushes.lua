-- Queue push entries for an item that is not stored (a system-channel send with
-- shouldPersist 0), with the writer every send script uses (_outbox.lua).
-- KEYS[1] the app's push outbox stream  KEYS[2] the set of every outbox (keys.OUTBOXES)
-- ARGV[1] push entries, grouped as _outbox.lua reads them
-- Every key is checked before the first write (_checks.lua).
local pushes = cjson.decode(ARGV[1])
need(KEYS[1], "stream")
need(KEYS[2], "set")
return queue_pushes(KEYS[1], KEYS[2], pushes)
