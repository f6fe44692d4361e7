-- Claim a request key (Store.claim) in one atomic step, whichever node asks.
-- KEYS[1] the key"s record (a hash: fp, token, done, response)
-- ARGV fingerprint, token, ttl in ms
local held = redis.call("HMGET", KEYS[1], "fp", "token", "done", "response")
if not held[1] then
  redis.call("HSET", KEYS[1], "fp", ARGV[1], "token", ARGV[2], "done", "0")
  redis.call("PEXPIRE", KEYS[1], ARGV[3])
  return {"owned"}
end
if held[1] ~= ARGV[1] then
  return {"conflict"}
end
if held[3] == "1" then
  return {"done", held[4]}
end
if held[2] ~= ARGV[2] then
  return {"pending"}
end
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return {"owned"}
