-- Mark read or delete a profile's box entries.
-- KEYS[1] the profile's box hash  KEYS[2 ..] each message's holders set (n messages)
-- ARGV[1] "read" | "delete"  ARGV[2] box  ARGV[3] profile  ARGV[4] now
-- ARGV[5 ..] n message ids, aligned with KEYS[2 ..]
-- Every key and entry is checked (and decoded) before the first write (_checks.lua).
-- Returns how many of the ids exist in that box.
if #KEYS ~= #ARGV - 3 or (ARGV[1] ~= "read" and ARGV[1] ~= "delete") then
  return redis.error_reply("ERR box_entries: arguments")
end
local delete = ARGV[1] == "delete"
need(KEYS[1], "hash")
local found, seen = {}, {}
for i = 5, #ARGV do
  local field = ARGV[2] .. ":" .. ARGV[i]
  local entry = redis.call("HGET", KEYS[1], field)
  if entry and not seen[field] then
    seen[field] = true
    if delete then
      need(KEYS[i - 3], "set")
      found[#found + 1] = {field, i - 3}
    else
      found[#found + 1] = {field, cjson.decode(entry)}
    end
  end
end
for _, f in ipairs(found) do
  if delete then
    redis.call("HDEL", KEYS[1], f[1])
    redis.call("SREM", KEYS[f[2]], ARGV[2] .. "|" .. ARGV[3])
  elseif f[2][1] == 0 then
    local e = f[2]
    redis.call("HSET", KEYS[1], f[1],
      "[1," .. string.format("%d", e[2]) .. "," .. ARGV[4] .. "," .. string.format("%d", e[4] + 1) .. "]")
  end
end
return #found
