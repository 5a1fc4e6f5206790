-- release: give jobs back to pending, at the place in line they had, without counting an
-- attempt (a worker stopping before it could finish them).
-- KEYS[1] active  KEYS[2] leases  KEYS[3] pending  KEYS[4] wake
-- ARGV: pairs id, token
-- Returns how many were released.
local active, leases, pending, wake_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local released = 0
for i = 1, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local lease = redis.call('HGET', leases, id)
  if lease and string.sub(lease, 1, #token + 1) == token .. ':' then
    redis.call('ZREM', active, id)
    redis.call('HDEL', leases, id)
    redis.call('ZADD', pending, string.match(lease, ':([^:]+)$'), id)
    released = released + 1
  end
end
if released > 0 then
  wake(wake_key)
end
return released
