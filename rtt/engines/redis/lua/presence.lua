-- Count a node's sessions of one profile up (+1) or down (-1).
-- KEYS[1] the node's profile counts hash  ARGV[1] member (keys.presence_member)  ARGV[2] delta
-- Increments commute: a leave that lands after a later join (they travel on different pooled
-- connections) leaves the count right, where a set's late SREM would undo the join. A count
-- may go below zero for a moment; the field is dropped only at exactly zero.
need(KEYS[1], "hash")
local count = redis.call("HINCRBY", KEYS[1], ARGV[1], ARGV[2])
if count == 0 then
  redis.call("HDEL", KEYS[1], ARGV[1])
end
return count
