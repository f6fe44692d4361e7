-- Adopt the store's epoch, or start a new one if the data a node relied on is gone.
-- KEYS[1] epoch string  KEYS[2] writes counter  KEYS[3] key layout (keys.LAYOUT)
-- ARGV[1] the epoch this node believes in ("" at start)  ARGV[2] highest writes it has seen
-- ARGV[3] a fresh epoch to install if needed  ARGV[4] the layout this node writes
-- Returns {epoch, writes}. A missing epoch key, or a writes counter lower than one already
-- acknowledged, means Redis lost data: install ARGV[3] so every client RESYNCs, and mark the
-- store as written in this node's layout.
local epoch = redis.call("GET", KEYS[1])
local writes = tonumber(redis.call("GET", KEYS[2]) or "0")
local lost = (not epoch) or (epoch == ARGV[1] and writes < tonumber(ARGV[2]))
if lost then
  redis.call("SET", KEYS[1], ARGV[3])
  redis.call("SET", KEYS[3], ARGV[4])
  epoch = ARGV[3]
end
return {epoch, writes}
