-- reap: return the jobs of crashed or hung workers (expired leases) to pending, bury a job
-- that has lost its worker too often, promote due delayed jobs and apply retention.
-- Every worker calls it periodically; the lock makes one run per interval across them all.
-- KEYS[1] lock  KEYS[2] active  KEYS[3] leases  KEYS[4] lost  KEYS[5] fails  KEYS[6] errors
-- KEYS[7] pending  KEYS[8] delayed  KEYS[9] jobs  KEYS[10] dead  KEYS[11] dead_info
-- KEYS[12] done  KEYS[13] counters  KEYS[14] wake  KEYS[15] outages
-- ARGV[1] lock_ms  ARGV[2] owner  ARGV[3] max_recoveries  ARGV[4] limit
-- ARGV[5] dead_max_count  ARGV[6] dead_max_age_ms  ARGV[7] done_max_count
-- ARGV[8] done_max_age_ms
-- Returns {ran (0|1), recovered, buried, trimmed}.
local lock, active, leases, lost, fails, errors, pending, delayed, jobs, dead, dead_info, done,
  counters, wake_key, outages =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]
if not redis.call('SET', lock, ARGV[2], 'NX', 'PX', ARGV[1]) then
  return {0, 0, 0, 0}
end
local max_recoveries, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local recovered, buried = 0, 0
local k = {dead = dead, dead_info = dead_info, fails = fails, lost = lost, errors = errors,
           counters = counters, outages = outages}

local expired = redis.call('ZRANGEBYSCORE', active, '-inf', '(' .. int(now), 'LIMIT', 0, limit)
for _, id in ipairs(expired) do
  local lease = redis.call('HGET', leases, id)
  redis.call('ZREM', active, id)
  redis.call('HDEL', leases, id)
  local times = redis.call('HINCRBY', lost, id, 1)
  if times > max_recoveries then
    local attempts = tonumber(redis.call('HGET', fails, id) or '0')
    bury(k, id, now, 'lost',
         'its worker stopped renewing the lease ' .. times .. ' times (crashed, killed or hung)',
         attempts)
    buried = buried + 1
  else
    local sc = lease and string.match(lease, ':([^:]+)$')
    if sc then
      redis.call('ZADD', pending, sc, id) -- back to its place in line
    else
      to_pending(jobs, pending, counters, id)
    end
    recovered = recovered + 1
  end
end
if recovered > 0 then
  redis.call('HINCRBY', counters, 'recovered', recovered)
end

local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', int(now), 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  to_pending(jobs, pending, counters, id)
end
if recovered > 0 or #due > 0 then
  wake(wake_key)
end

local trimmed = trim_records(dead, jobs, dead_info, tonumber(ARGV[5]),
                             now - tonumber(ARGV[6]), limit)
trimmed = trimmed + trim_records(done, jobs, false, tonumber(ARGV[7]),
                                 now - tonumber(ARGV[8]), limit)
return {1, recovered, buried, trimmed}
