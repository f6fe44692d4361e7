-- Register (or refresh) one device of a profile; past the maximum the oldest are dropped.
-- KEYS[1] the profile's devices hash (keys.push_devices)
-- ARGV[1] field "<platform>:<token>"  ARGV[2] registered at (ms)  ARGV[3] max devices
-- Every key is checked before the first write (_checks.lua).
need(KEYS[1], "hash")
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
local all = redis.call("HGETALL", KEYS[1])
local n, max = #all / 2, tonumber(ARGV[3])
if n > max then
  local devices = {}
  for i = 1, #all, 2 do
    devices[#devices + 1] = {all[i], tonumber(all[i + 1])}
  end
  table.sort(devices, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[1] > b[1]
  end)
  for i = 1, n - max do
    redis.call("HDEL", KEYS[1], devices[i][1])
  end
end
return n
