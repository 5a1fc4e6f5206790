-- ack: finish jobs whose lease token still matches; keep a capped record of finished jobs.
-- KEYS[1] active  KEYS[2] leases  KEYS[3] fails  KEYS[4] lost  KEYS[5] errors  KEYS[6] jobs
-- KEYS[7] done  KEYS[8] counters
-- ARGV[1] done_max_count  ARGV[2] done_max_age_ms, then pairs: id, token
-- Returns a list of flags, 1 acked, 0 rejected (the lease was lost: the job went back to
-- pending or to another worker, so this worker's result must not count).
local active, leases, fails, lost, errors, jobs, done, counters =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local keep, max_age = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local flags, acked = {}, 0
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local lease = redis.call('HGET', leases, id)
  if lease and string.sub(lease, 1, #token + 1) == token .. ':' then
    redis.call('ZREM', active, id)
    redis.call('HDEL', leases, id)
    redis.call('HDEL', fails, id)
    redis.call('HDEL', lost, id)
    redis.call('HDEL', errors, id)
    if keep > 0 then
      redis.call('ZADD', done, int(now), id)
    else
      redis.call('HDEL', jobs, id)
    end
    acked = acked + 1
    flags[#flags + 1] = 1
  else
    flags[#flags + 1] = 0
  end
end
if acked > 0 then
  redis.call('HINCRBY', counters, 'completed', acked)
  -- Trim in slices, only once the cap is overshot by a margin, so acks stay cheap.
  if keep > 0 and redis.call('ZCARD', done) > keep + math.max(16, math.floor(keep / 8)) then
    trim_records(done, jobs, false, keep, now - max_age, 1000)
  end
end
return flags
