-- A profile's stream and its seq, for every script that appends to a stream (scripts.py
-- prepends this file). The seq is the `#seq` field of the profile's box hash (keys.SEQ_FIELD),
-- so the HSET that gives a recipient its inbox entry also advances its seq. The checks read
-- what the writes need: HGET and ZCARD fail on a key of another type (before any write, see
-- _checks.lua) and give the last seq and the stream's size, kept here for the writes.
local SEQ = "#seq"
local last_seq, stream_size = {}, {}

local function read_profile(box, stream)
  local seq = redis.call("HGET", box, SEQ)
  if seq and not string.match(seq, "^%d+$") then
    error({err = "WRONGTYPE " .. box .. " holds a #seq that is not an integer"})
  end
  last_seq[box] = tonumber(seq or "0")
  stream_size[stream] = redis.call("ZCARD", stream)
end

-- `member`'s item as the next of the profile read_profile read: returns its seq, which the
-- caller writes to the box (HSET box SEQ seq ...) with what else it sets there. The stream
-- keeps its newest max_items; it is nearly always under that bound (RTT_STREAM_MAX_SECONDS
-- empties it long before RTT_STREAM_MAX_ITEMS fills it), so trimming is rare.
local function append_item(box, stream, fid, mid, max_items)
  local seq = last_seq[box] + 1
  last_seq[box] = seq
  redis.call("ZADD", stream, seq, seq .. ":" .. fid .. ":" .. mid)
  local size = stream_size[stream] + 1
  if size > max_items then
    redis.call("ZREMRANGEBYRANK", stream, 0, -(max_items + 1))
    size = max_items
  end
  stream_size[stream] = size
  return seq
end
