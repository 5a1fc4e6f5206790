-- dead_add: park items that never became jobs (e.g. malformed MQTT payloads) straight in
-- dead letters, where a person can read and replay or purge them. An id already present is
-- left alone (a redelivered copy of the same message).
-- KEYS[1] jobs  KEYS[2] dead  KEYS[3] dead_info  KEYS[4] counters
-- ARGV: n, then n times: id, payload, reason, error
-- Returns how many were added.
local jobs, dead, dead_info, counters = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = now_ms()
local added = 0
for i = 0, tonumber(ARGV[1]) - 1 do
  local base = 2 + i * 4
  local id = ARGV[base]
  if redis.call('HSETNX', jobs, id, int(now) .. '|0|' .. ARGV[base + 1]) == 1 then
    redis.call('ZADD', dead, int(now), id)
    redis.call('HSET', dead_info, id, cjson.encode({
      reason = ARGV[base + 2], error = ARGV[base + 3], attempts = 0, recoveries = 0,
      failed_at = now,
    }))
    added = added + 1
  end
end
if added > 0 then
  redis.call('HINCRBY', counters, 'dead', added)
end
return added
