-- Every write of the store, as parts that each touch the keys of ONE Redis Cluster slot.
-- On one Redis a write is all its parts in one call: atomic, as a script is. On a cluster the
-- caller (parts.py) groups the parts by slot and makes one call per slot.
-- ARGV[1] the plan: a json array of [part name, key count, arg count]; then each part's keys
-- in KEYS and its args in ARGV (from ARGV[2]), part after part.
-- Every part checks its keys first (_checks.lua) and every check runs before the first write,
-- so a call that fails writes nothing. A part gets its keys at KEYS[k + 1 ..] and its args at
-- ARGV[a + 1 ..]; `nk` is its key count. Returns one array per part, in plan order.
local P = {}
local HOLDERS_PER_CALL = 1000  -- well under Lua's limit on unpack()ed arguments

-- counter: KEYS the writes counter (keys.WRITES). Returns {writes}.
P.counter = {
  check = function(k) need_counter(KEYS[k + 1]) end,
  write = function(k) return {redis.call("INCR", KEYS[k + 1])} end,
}

-- member: KEYS a set (keys.OUTBOXES, keys.EVENT_APPS); ARGV the member to add.
P.member = {
  check = function(k) need(KEYS[k + 1], "set") end,
  write = function(k, a)
    redis.call("SADD", KEYS[k + 1], ARGV[a + 1])
    return {}
  end,
}

-- frame: KEYS the frame hash; ARGV head, tail, ttl (ms).
P.frame = {
  check = function(k) need(KEYS[k + 1], "hash") end,
  write = function(k, a)
    redis.call("HSET", KEYS[k + 1], "head", ARGV[a + 1], "tail", ARGV[a + 2])
    redis.call("PEXPIRE", KEYS[k + 1], ARGV[a + 3])
    return {}
  end,
}

-- outbox: KEYS the app's push outbox stream; ARGV push entries, grouped as _outbox.lua reads
-- them. Returns {entries written}.
P.outbox = {
  check = function(k) need(KEYS[k + 1], "stream") end,
  write = function(k, a) return {queue_pushes(KEYS[k + 1], cjson.decode(ARGV[a + 1]))} end,
}

-- message: a new message. KEYS message hash, holders set
-- ARGV msg_id, from_id ("" = null), sender json, to json, msg_cr, content, reply_to ("" =
-- none), its holders (json array of "<msgbox>|<profile>")
P.message = {
  check = function(k)
    if redis.call("EXISTS", KEYS[k + 1]) == 1 then
      return redis.error_reply("ERR append_message: message exists")
    end
    need(KEYS[k + 2], "set")
  end,
  write = function(k, a)
    local cr = ARGV[a + 5]
    redis.call("HSET", KEYS[k + 1], "from_id", ARGV[a + 2], "sender", ARGV[a + 3],
      "to", ARGV[a + 4], "sent_at", cr, "content", ARGV[a + 6], "msg_cr", cr, "msg_up", cr,
      "msg_ver", 1, "reply_to", ARGV[a + 7])
    local holders = cjson.decode(ARGV[a + 8])
    for i = 1, #holders, HOLDERS_PER_CALL do  -- not one call per holder
      redis.call("SADD", KEYS[k + 2], unpack(holders, i, math.min(i + HOLDERS_PER_CALL - 1, #holders)))
    end
    return {}
  end,
}

-- index: a new message in the app's indexes. KEYS the message orders (keys.message_orders:
-- msgCr, -msgCr, msgUp, -msgUp), the app's message counter, its numbers zset
-- ARGV msg_id, msg_cr
P.index = {
  check = function(k)
    for i = 1, 4 do
      need(KEYS[k + i], "zset")
    end
    need_counter(KEYS[k + 5])
    need(KEYS[k + 6], "zset")
  end,
  write = function(k, a)
    local msg_id, cr = ARGV[a + 1], ARGV[a + 2]
    redis.call("ZADD", KEYS[k + 1], cr, msg_id)
    redis.call("ZADD", KEYS[k + 2], -tonumber(cr), msg_id)
    redis.call("ZADD", KEYS[k + 3], cr, msg_id)
    redis.call("ZADD", KEYS[k + 4], -tonumber(cr), msg_id)
    redis.call("ZADD", KEYS[k + 6], redis.call("INCR", KEYS[k + 5]), msg_id)
    return {}
  end,
}

-- Check every recipient's keys, `width` keys each: its box hash and its stream (read_profile,
-- _stream.lua), then `kinds`.
local function need_each(k, nk, width, kinds)
  for r = k, k + nk - 1, width do
    read_profile(KEYS[r + 1], KEYS[r + 2])
    for i, kind in ipairs(kinds) do
      need(KEYS[r + 2 + i], kind)
    end
  end
end

-- deliver: a new message to recipients of one slot. KEYS per recipient: box hash, stream zset.
-- ARGV frame id, msg_id, msg_cr, max stream items, their mids (json array of strings,
-- aligned). Returns their seqs.
P.deliver = {
  check = function(k, a, nk)
    if #cjson.decode(ARGV[a + 5]) * 2 ~= nk then
      return redis.error_reply("ERR deliver: argument count")
    end
    need_each(k, nk, 2, {})
  end,
  write = function(k, a, nk)
    local fid, msg_id, cr, max_items = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
    local mids = cjson.decode(ARGV[a + 5])
    local field, entry = "inbox:" .. msg_id, "[0," .. cr .. "," .. cr .. ",1]"
    local seqs = {}
    for i = 1, nk / 2 do
      local r = k + 2 * (i - 1)
      local seq = append_item(KEYS[r + 1], KEYS[r + 2], fid, mids[i], max_items)
      redis.call("HSET", KEYS[r + 1], SEQ, seq, field, entry)
      seqs[i] = seq
    end
    return seqs
  end,
}

-- sent: a new message in its sender's box. KEYS the sender's box hash; ARGV msg_id, msg_cr
P.sent = {
  check = function(k) need(KEYS[k + 1], "hash") end,
  write = function(k, a)
    local cr = ARGV[a + 2]
    redis.call("HSET", KEYS[k + 1], "sent:" .. ARGV[a + 1], "[1," .. cr .. "," .. cr .. ",1]")
    return {}
  end,
}

-- ages: events in the app's event ages zset (keys.event_ages). ARGV json array of
-- [created_at, member]
P.ages = {
  check = function(k) need(KEYS[k + 1], "zset") end,
  write = function(k, a)
    for _, e in ipairs(cjson.decode(ARGV[a + 1])) do
      redis.call("ZADD", KEYS[k + 1], e[1], e[2])
    end
    return {}
  end,
}

-- events: one event per recipient of one slot. KEYS per recipient: box hash, stream zset,
-- events hash, event order zset, event seqs zset (each event id by its seq: what
-- piggybacking follows). ARGV frame id, max stream items, json array of [ev_id, mid, event
-- json, created_at], aligned. Returns their seqs.
P.events = {
  check = function(k, a, nk)
    if #cjson.decode(ARGV[a + 3]) * 5 ~= nk then
      return redis.error_reply("ERR events: argument count")
    end
    need_each(k, nk, 5, {"hash", "zset", "zset"})
  end,
  write = function(k, a, nk)
    local fid, max_items, rows = ARGV[a + 1], tonumber(ARGV[a + 2]), cjson.decode(ARGV[a + 3])
    local seqs = {}
    for i, e in ipairs(rows) do
      local r = k + 5 * (i - 1)
      local seq = append_item(KEYS[r + 1], KEYS[r + 2], fid, e[2], max_items)
      redis.call("HSET", KEYS[r + 1], SEQ, seq)
      redis.call("HSET", KEYS[r + 3], e[1], e[3])
      redis.call("ZADD", KEYS[r + 4], e[4], e[1])
      redis.call("ZADD", KEYS[r + 5], seq, e[1])
      seqs[i] = seq
    end
    return seqs
  end,
}

-- change: update or delete a message, compare-and-set on its version. KEYS message hash,
-- holders set. ARGV "update" | "delete", expected version, content, now, then the holder
-- profile ids the caller read (sorted). An error reply NOTFOUND / VERSION / RETRY (the
-- holders changed since the caller read them: read again and retry).
P.change = {
  check = function(k, a, nk, na)
    need(KEYS[k + 1], "hash")
    need(KEYS[k + 2], "set")
    local version = redis.call("HGET", KEYS[k + 1], "msg_ver")
    if not version then
      return redis.error_reply("NOTFOUND")
    end
    if version ~= ARGV[a + 2] then
      return redis.error_reply("VERSION")
    end
    local seen, count = {}, 0
    for _, member in ipairs(redis.call("SMEMBERS", KEYS[k + 2])) do
      local profile = string.sub(member, string.find(member, "|", 1, true) + 1)
      if not seen[profile] then
        seen[profile] = true
        count = count + 1
      end
    end
    if count ~= na - 4 then
      return redis.error_reply("RETRY")
    end
    for i = a + 5, a + na do
      if not seen[ARGV[i]] then
        return redis.error_reply("RETRY")
      end
    end
  end,
  write = function(k, a)
    if ARGV[a + 1] == "update" then
      redis.call("HSET", KEYS[k + 1], "content", ARGV[a + 3], "msg_up", ARGV[a + 4])
      redis.call("HINCRBY", KEYS[k + 1], "msg_ver", 1)
    else
      redis.call("DEL", KEYS[k + 1], KEYS[k + 2])
    end
    return {}
  end,
}

-- reindex: a changed message in the app's indexes. KEYS as `index` but the counter: the four
-- orders, the numbers zset. ARGV "update" | "delete", msg_id, now
P.reindex = {
  check = function(k)
    for i = 1, 5 do
      need(KEYS[k + i], "zset")
    end
  end,
  write = function(k, a)
    local msg_id = ARGV[a + 2]
    if ARGV[a + 1] == "update" then
      redis.call("ZADD", KEYS[k + 3], ARGV[a + 3], msg_id)
      redis.call("ZADD", KEYS[k + 4], -tonumber(ARGV[a + 3]), msg_id)
    else
      for i = 1, 5 do
        redis.call("ZREM", KEYS[k + i], msg_id)
      end
    end
    return {}
  end,
}

-- touch: a stream item per holder of one slot for a changed message (and, for a delete, its
-- box entries gone). KEYS per holder: box hash, stream zset. ARGV "update" | "delete",
-- msg_id, frame id, max stream items. Returns their seqs.
P.touch = {
  check = function(k, a, nk) need_each(k, nk, 2, {}) end,
  write = function(k, a, nk)
    local msg_id, fid, max_items = ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
    local seqs = {}
    for i = 1, nk / 2 do
      local r = k + 2 * (i - 1)
      if ARGV[a + 1] == "delete" then
        redis.call("HDEL", KEYS[r + 1], "inbox:" .. msg_id, "sent:" .. msg_id)
      end
      local seq = append_item(KEYS[r + 1], KEYS[r + 2], fid, "", max_items)
      redis.call("HSET", KEYS[r + 1], SEQ, seq)
      seqs[i] = seq
    end
    return seqs
  end,
}

-- box: mark read or delete a profile's box entries. KEYS the profile's box hash
-- ARGV "read" | "delete", box, now, the message ids. Returns {how many of them exist there}.
P.box = {
  check = function(k, a, nk, na)
    if ARGV[a + 1] ~= "read" and ARGV[a + 1] ~= "delete" then
      return redis.error_reply("ERR box: action")
    end
    need(KEYS[k + 1], "hash")
    for i = a + 4, a + na do
      local entry = redis.call("HGET", KEYS[k + 1], ARGV[a + 2] .. ":" .. ARGV[i])
      if entry and ARGV[a + 1] == "read" then
        cjson.decode(entry)  -- fails here, before any write, on an entry that is no JSON
      end
    end
  end,
  write = function(k, a, nk, na)
    local found, seen = 0, {}
    for i = a + 4, a + na do
      local field = ARGV[a + 2] .. ":" .. ARGV[i]
      local entry = redis.call("HGET", KEYS[k + 1], field)
      if entry and not seen[field] then
        seen[field] = true
        found = found + 1
        if ARGV[a + 1] == "delete" then
          redis.call("HDEL", KEYS[k + 1], field)
        else
          local e = cjson.decode(entry)
          if e[1] == 0 then
            redis.call("HSET", KEYS[k + 1], field, "[1," .. string.format("%d", e[2]) .. ","
              .. ARGV[a + 3] .. "," .. string.format("%d", e[4] + 1) .. "]")
          end
        end
      end
    end
    return {found}
  end,
}

-- unhold: a profile no longer holds a message in a box (its entry was deleted). KEYS the
-- message's holders set; ARGV "<msgbox>|<profile>"
P.unhold = {
  check = function(k) need(KEYS[k + 1], "set") end,
  write = function(k, a)
    redis.call("SREM", KEYS[k + 1], ARGV[a + 1])
    return {}
  end,
}

local plan = cjson.decode(ARGV[1])
local steps, k, a = {}, 0, 1
for i, p in ipairs(plan) do
  local part = P[p[1]]
  if not part then
    return redis.error_reply("ERR parts: no part " .. tostring(p[1]))
  end
  steps[i] = {part, k, a, p[2], p[3]}
  k, a = k + p[2], a + p[3]
end
if k ~= #KEYS or a ~= #ARGV then
  return redis.error_reply("ERR parts: argument count")
end
for _, s in ipairs(steps) do
  local refused = s[1].check(s[2], s[3], s[4], s[5])
  if refused then
    return refused
  end
end
local out = {}
for i, s in ipairs(steps) do
  out[i] = s[1].write(s[2], s[3], s[4], s[5])
end
return out
