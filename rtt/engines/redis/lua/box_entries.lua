-- Mark read or delete a profile's box entries.
-- KEYS[1] the profile's box hash  KEYS[2 ..] each message's holders set (n messages)
-- ARGV[1] "read" | "delete"  ARGV[2] box  ARGV[3] profile  ARGV[4] now
-- ARGV[5 ..] n message ids, aligned with KEYS[2 ..]
-- Returns how many of the ids exist in that box.
if #KEYS ~= #ARGV - 3 or (ARGV[1] ~= "read" and ARGV[1] ~= "delete") then
  return redis.error_reply("ERR box_entries: arguments")
end
local found = 0
for i = 5, #ARGV do
  local field = ARGV[2] .. ":" .. ARGV[i]
  local entry = redis.call("HGET", KEYS[1], field)
  if entry then
    found = found + 1
    if ARGV[1] == "delete" then
      redis.call("HDEL", KEYS[1], field)
      redis.call("SREM", KEYS[i - 3], ARGV[2] .. "|" .. ARGV[3])
    else
      local e = cjson.decode(entry)
      if e[1] == 0 then
        redis.call("HSET", KEYS[1], field,
          "[1," .. string.format("%d", e[2]) .. "," .. ARGV[4] .. "," .. string.format("%d", e[4] + 1) .. "]")
      end
    end
  end
end
return found
