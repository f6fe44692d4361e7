-- Record a system-channel sender (fromUserId) of the app, within its bound.
-- KEYS[1] the app's sender set
-- ARGV[1] sender  ARGV[2] max senders
-- Every key is checked before the first write (_checks.lua).
-- Returns 1 if it is (now) recorded, 0 if it is new and the set is full (nothing written)
need(KEYS[1], "set")
if redis.call("SISMEMBER", KEYS[1], ARGV[1]) == 1 then
  return 1
end
if redis.call("SCARD", KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call("SADD", KEYS[1], ARGV[1])
return 1
