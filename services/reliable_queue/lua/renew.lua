-- renew: extend the leases a worker still holds.
-- KEYS[1] active  KEYS[2] leases
-- ARGV[1] lease_ms, then pairs: id, token
-- Returns the ids whose lease this worker no longer holds (expired and taken back).
local active, leases = KEYS[1], KEYS[2]
local deadline = int(now_ms() + tonumber(ARGV[1]))
local lost_ids = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local lease = redis.call('HGET', leases, id)
  if lease and string.sub(lease, 1, #token + 1) == token .. ':' then
    redis.call('ZADD', active, 'XX', deadline, id)
  else
    lost_ids[#lost_ids + 1] = id
  end
end
return lost_ids
