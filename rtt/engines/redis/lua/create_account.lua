-- Create a profile under a sign-in identity unless the identity exists (Accounts.create), in
-- one atomic step, whichever node asks: two nodes creating one identity end with one profile.
-- KEYS[1] the identity (hash: profile, name, created, secret), KEYS[2] the profile (hash: name,
-- created), KEYS[3] the app's count of profiles
-- ARGV profile id, name, created_at ms, secret ("" = none), the app's limit of profiles
-- Returns {"created"}, {"exists", profile, name, created, secret} or {"full"}; writes all or
-- nothing.
local held = redis.call("HMGET", KEYS[1], "profile", "name", "created", "secret")
if held[1] then
  return {"exists", held[1], held[2], held[3], held[4]}
end
if tonumber(redis.call("GET", KEYS[3]) or "0") >= tonumber(ARGV[5]) then
  return {"full"}
end
redis.call("HSET", KEYS[2], "name", ARGV[2], "created", ARGV[3])
redis.call("HSET", KEYS[1], "profile", ARGV[1], "name", ARGV[2], "created", ARGV[3], "secret", ARGV[4])
redis.call("INCR", KEYS[3])
return {"created"}
