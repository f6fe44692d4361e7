-- Settle a claimed request key (Store.settle), only if ARGV[1] still holds it.
-- KEYS[1] the key"s record; ARGV token, "1" to record (else drop the claim), response, ttl ms
local held = redis.call("HMGET", KEYS[1], "token", "done")
if held[1] ~= ARGV[1] or held[2] ~= "0" then
  return 0
end
if ARGV[2] == "1" then
  redis.call("HSET", KEYS[1], "done", "1", "response", ARGV[3])
  redis.call("PEXPIRE", KEYS[1], ARGV[4])
else
  redis.call("DEL", KEYS[1])
end
return 1
