-- Every script that queues push entries writes them with this (scripts.py prepends this file
-- after _checks.lua). The outbox stream is born with its consumer group, so dispatchers never
-- miss an entry; `outboxes` is the set of every outbox (keys.OUTBOXES) the sweep visits.
local function queue_pushes(stream, outboxes, pushes)
  if #pushes > 0 and redis.call("EXISTS", stream) == 0 then
    redis.call("XGROUP", "CREATE", stream, "rtt-push", "0", "MKSTREAM")
    redis.call("SADD", outboxes, stream)
  end
  for _, e in ipairs(pushes) do
    redis.call("XADD", stream, "*", "profile", e[1], "kind", e[2], "ref", e[3], "title", e[4],
      "body", e[5], "data", e[6], "created_at", e[7], "attempts", 0)
  end
end
