-- Take `count` tokens from the app's system-channel bucket (`rate` per second, holding at
-- most `rate`), on the Redis clock so every node agrees. At least min(count, rate) tokens must
-- be there; a send above one second's worth may then leave the bucket in debt.
-- KEYS[1] the app's bucket hash (tokens, stamp in ms)
-- ARGV[1] count  ARGV[2] rate per second
-- Every key is checked before the first write (_checks.lua).
-- Returns 1 if taken, 0 if refused (nothing taken)
need(KEYS[1], "hash")
local count, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call("HMGET", KEYS[1], "tokens", "stamp")
local tokens, stamp = tonumber(state[1]), tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens, stamp = rate, now
end
tokens = math.min(rate, tokens + math.max(0, now - stamp) * rate / 1000)
local taken = 0
if tokens >= math.min(count, rate) then
  tokens = tokens - count
  taken = 1
end
redis.call("HSET", KEYS[1], "tokens", tostring(tokens), "stamp", now)
-- a bucket untouched long enough to be full again carries no state worth keeping
redis.call("PEXPIRE", KEYS[1], math.ceil(1000 * (rate - tokens) / rate) + 1000)
return taken
