-- dead_add: park items that never became jobs (e.g. malformed MQTT payloads) straight in
-- dead letters, where a person can read and replay or purge them. An id already present is
-- left alone (a redelivered copy of the same message).
-- KEYS[1] jobs  KEYS[2] dead  KEYS[3] dead_info  KEYS[4] counters  KEYS[5] fails  KEYS[6] lost
-- KEYS[7] errors
-- ARGV: n, then n times: id, payload, reason, error
-- Returns how many were added.
local jobs = KEYS[1]
local k = {dead = KEYS[2], dead_info = KEYS[3], counters = KEYS[4], fails = KEYS[5],
           lost = KEYS[6], errors = KEYS[7]}
local now = now_ms()
local added = 0
for i = 0, tonumber(ARGV[1]) - 1 do
  local base = 2 + i * 4
  local id = ARGV[base]
  if redis.call('HSETNX', jobs, id, int(now) .. '|0|' .. ARGV[base + 1]) == 1 then
    bury(k, id, now, ARGV[base + 2], ARGV[base + 3], 0)
    added = added + 1
  end
end
return added
