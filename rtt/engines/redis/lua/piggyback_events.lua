-- Hand one client session the profile's events after its cursor (EventPiggyback.take), in one
-- atomic step whichever node asks: two packets of one session never take the same event.
-- KEYS[1] the session's cursor (the last seq it was handed; keys.piggyback_cursor)
-- KEYS[2] the profile's event seqs zset (keys.event_seqs)  KEYS[3] the profile's events hash
-- ARGV[1] most events  ARGV[2] most bytes  ARGV[3] bytes counted per event besides its JSON
-- ARGV[4] the cursor's lifetime (ms)
-- Returns the events' stored JSON in seq order: at least one if any follow the cursor.
need_counter(KEYS[1])
local after = redis.call("GET", KEYS[1])
local found = redis.call("ZRANGEBYSCORE", KEYS[2], "(" .. (after or "0"), "+inf", "WITHSCORES",
  "LIMIT", 0, tonumber(ARGV[1]))
local budget, overhead = tonumber(ARGV[2]), tonumber(ARGV[3])
local out, total, last = {}, 0, nil
for i = 1, #found, 2 do
  local item = redis.call("HGET", KEYS[3], found[i])
  if item then
    total = total + #item + overhead
    if #out > 0 and total > budget then
      break
    end
    out[#out + 1] = item
  end
  last = found[i + 1]
end
if last then
  redis.call("SET", KEYS[1], last, "PX", ARGV[4])
elseif after then
  redis.call("PEXPIRE", KEYS[1], ARGV[4])
end
return out
