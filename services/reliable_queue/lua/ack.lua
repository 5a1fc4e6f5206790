-- ack: finish jobs whose lease token still matches; keep a capped record of finished jobs.
-- KEYS[1] active  KEYS[2] leases  KEYS[3] fails  KEYS[4] lost  KEYS[5] errors  KEYS[6] jobs
-- KEYS[7] done  KEYS[8] counters  KEYS[9] outages
-- ARGV[1] done_max_count  ARGV[2] done_max_age_ms, then pairs: id, token
-- Returns a list of flags, 1 acked, 0 rejected (the lease was lost: the job went back to
-- pending or to another worker, so this worker's result must not count).
local active, leases, fails, lost, errors, jobs, done, counters, outages =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local keep, max_age = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local stamp = int(now)

local ids = {}
for i = 3, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
end
local held = get_many('HMGET', leases, ids)
local flags, acked, done_args = {}, {}, {}
for k, id in ipairs(ids) do
  local token = ARGV[2 + 2 * k]
  local lease = held[k]
  if lease and string.sub(lease, 1, #token + 1) == token .. ':' then
    acked[#acked + 1] = id
    done_args[#done_args + 1] = stamp
    done_args[#done_args + 1] = id
    flags[k] = 1
  else
    flags[k] = 0
  end
end
if #acked > 0 then
  call_many('ZREM', active, acked)
  call_many('HDEL', leases, acked)
  -- Usually absent: a job that never failed nor lost its lease has nothing in them.
  for _, key in ipairs({fails, lost, errors, outages}) do
    if redis.call('EXISTS', key) == 1 then
      call_many('HDEL', key, acked)
    end
  end
  if keep > 0 then
    call_many('ZADD', done, done_args)
  else
    call_many('HDEL', jobs, acked)
  end
  redis.call('HINCRBY', counters, 'completed', #acked)
  -- Trim in slices, only once the cap is overshot by a margin, so acks stay cheap.
  if keep > 0 and redis.call('ZCARD', done) > keep + math.max(16, math.floor(keep / 8)) then
    trim_records(done, jobs, false, keep, now - max_age, 1000)
  end
end
return flags
