-- Claim a signed request's nonce for the app, forgetting expired ones in the same step.
-- KEYS[1] the app's nonce zset (member: nonce, score: expiry in ms, Redis clock)
-- ARGV[1] nonce  ARGV[2] ttl (ms)  ARGV[3] max live nonces
-- Every key is checked before the first write (_checks.lua).
-- Returns "fresh", "replayed" or "full"
need(KEYS[1], "zset")
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
if redis.call("ZSCORE", KEYS[1], ARGV[1]) then
  return "replayed"
end
if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[3]) then
  return "full"
end
local expires = now + tonumber(ARGV[2])
redis.call("ZADD", KEYS[1], expires, ARGV[1])
-- the set itself goes once its last nonce could have expired
local last = tonumber(redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")[2])
redis.call("PEXPIRE", KEYS[1], math.max(1, last - now))
return "fresh"
