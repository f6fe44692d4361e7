-- Every script that appends to a profile's stream keeps it to its bound with this (scripts.py
-- prepends this file). A stream is nearly always under its bound (RTT_STREAM_MAX_SECONDS
-- empties it long before RTT_STREAM_MAX_ITEMS fills it), and ZCARD is O(1) where an
-- unconditional ZREMRANGEBYRANK per recipient was a fifth of Redis's CPU per delivery.
local function keep_newest(stream, max_items)
  if redis.call("ZCARD", stream) > max_items then
    redis.call("ZREMRANGEBYRANK", stream, 0, -(max_items + 1))
  end
end
