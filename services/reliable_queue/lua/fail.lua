-- fail: record a failed attempt; schedule the retry or move the job to dead letters.
-- The decision (retry after delay_ms, or bury) is made by the worker from the queue policy;
-- this script applies it only if the lease token still matches.
-- KEYS[1] active  KEYS[2] leases  KEYS[3] fails  KEYS[4] lost  KEYS[5] errors  KEYS[6] jobs
-- KEYS[7] delayed  KEYS[8] dead  KEYS[9] dead_info  KEYS[10] counters
-- ARGV[1] id  ARGV[2] token  ARGV[3] error text  ARGV[4] 'retry' | 'dead'
-- ARGV[5] delay_ms (retry)  ARGV[6] reason (dead)  ARGV[7] dead_max_count
-- Returns {1, attempts} applied, {0, 0} rejected (lease lost).
local active, leases, fails, lost, errors, jobs, delayed, dead, dead_info, counters =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local id, token, err, action = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local lease = redis.call('HGET', leases, id)
if not lease or string.sub(lease, 1, #token + 1) ~= token .. ':' then
  return {0, 0}
end
local now = now_ms()
local attempts = redis.call('HINCRBY', fails, id, 1)
redis.call('ZREM', active, id)
redis.call('HDEL', leases, id)
if action == 'retry' then
  redis.call('HSET', errors, id, err)
  redis.call('ZADD', delayed, int(now + tonumber(ARGV[5])), id)
  redis.call('HINCRBY', counters, 'retried', 1)
else
  local k = {dead = dead, dead_info = dead_info, fails = fails, lost = lost, errors = errors,
             counters = counters}
  bury(k, id, now, ARGV[6], err, attempts)
  local max_dead = tonumber(ARGV[7])
  if redis.call('ZCARD', dead) > max_dead + math.max(16, math.floor(max_dead / 8)) then
    trim_records(dead, jobs, dead_info, max_dead, 0, 1000)
  end
end
return {1, attempts}
