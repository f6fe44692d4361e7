-- Run before every script (scripts.py prepends this file). Redis never rolls a script back: a
-- command that fails after a write leaves the writes before it in place. So a script first
-- checks every key it will write with these, and only then writes: a key of the wrong type or
-- a counter that is not an integer fails the script with nothing written.
local function need(key, kind)
  local found = redis.call("TYPE", key)["ok"]
  if found ~= "none" and found ~= kind then
    error({err = "WRONGTYPE " .. key .. " holds a " .. found .. ", not a " .. kind})
  end
end

local function need_counter(key)
  local value = redis.call("GET", key)  -- itself fails (WRONGTYPE) on a key that is no string
  if value and not string.match(value, "^%-?%d+$") then
    error({err = "WRONGTYPE " .. key .. " is not an integer counter"})
  end
end
