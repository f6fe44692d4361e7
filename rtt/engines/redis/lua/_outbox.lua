-- Every part that queues push entries writes them with this (scripts.py prepends this file
-- after _checks.lua). `groups` is a json-decoded array of
-- [kind, ref, title, body, data, created_at, [profile, ...]]: the entries of one send share
-- every field but the profile, so each is sent once, not once per recipient. The outbox stream
-- is born with its consumer group, so dispatchers never miss an entry (the set of every outbox
-- the sweep visits is kept by a part of its own, in the `{rtt}` slot). Returns how many entries
-- were written.
local function queue_pushes(stream, groups)
  if #groups > 0 and redis.call("EXISTS", stream) == 0 then
    redis.call("XGROUP", "CREATE", stream, "rtt-push", "0", "MKSTREAM")
  end
  local written = 0
  for _, g in ipairs(groups) do
    for _, profile in ipairs(g[7]) do
      redis.call("XADD", stream, "*", "profile", profile, "kind", g[1], "ref", g[2],
        "title", g[3], "body", g[4], "data", g[5], "created_at", g[6], "attempts", 0)
      written = written + 1
    end
  end
  return written
end
