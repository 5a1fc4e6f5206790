-- fail: record a failed attempt; schedule the retry or move the job to dead letters; or, for
-- an outage of a service the handler needs (not the job's fault), postpone the job: back to
-- pending at its place in line (the worker that saw the outage pauses), without spending an
-- attempt, for as long as its outage budget lasts.
-- The decision (retry after delay_ms, or bury) is made by the worker from the queue policy;
-- this script applies it, or the postponement, only if the lease token still matches.
-- KEYS[1] active  KEYS[2] leases  KEYS[3] fails  KEYS[4] lost  KEYS[5] errors  KEYS[6] jobs
-- KEYS[7] delayed  KEYS[8] dead  KEYS[9] dead_info  KEYS[10] counters  KEYS[11] outages
-- KEYS[12] pending  KEYS[13] wake
-- ARGV[1] id  ARGV[2] token  ARGV[3] error text  ARGV[4] 'retry' | 'dead'
-- ARGV[5] delay_ms (retry)  ARGV[6] reason (dead)  ARGV[7] dead_max_count
-- ARGV[8] '1': an outage, postponed while within its budget  ARGV[9] outage budget ms: how long
-- after its first postponement a job is still postponed rather than failed
-- Returns {1, attempts} applied, {2, attempts} postponed, {0, 0} rejected (lease lost).
local active, leases, fails, lost, errors, jobs, delayed, dead, dead_info, counters, outages,
  pending, wake_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12], KEYS[13]
local id, token, err, action = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local lease = redis.call('HGET', leases, id)
if not lease or string.sub(lease, 1, #token + 1) ~= token .. ':' then
  return {0, 0}
end
local now = now_ms()
redis.call('ZREM', active, id)
redis.call('HDEL', leases, id)
if ARGV[8] == '1' then
  local budget = tonumber(ARGV[9])
  local first = tonumber(redis.call('HGET', outages, id) or '-1')
  if first < 0 and budget > 0 then
    first = now
    redis.call('HSET', outages, id, now)
  end
  if first >= 0 and now - first < budget then
    redis.call('HSET', errors, id, err)
    redis.call('ZADD', pending, string.match(lease, ':([^:]+)$'), id)
    wake(wake_key)
    return {2, tonumber(redis.call('HGET', fails, id) or '0')}
  end
end
local attempts = redis.call('HINCRBY', fails, id, 1)
if action == 'retry' then
  redis.call('HSET', errors, id, err)
  redis.call('ZADD', delayed, int(now + tonumber(ARGV[5])), id)
  redis.call('HINCRBY', counters, 'retried', 1)
else
  local k = {dead = dead, dead_info = dead_info, fails = fails, lost = lost, errors = errors,
             counters = counters, outages = outages}
  bury(k, id, now, ARGV[6], err, attempts)
  local max_dead = tonumber(ARGV[7])
  if redis.call('ZCARD', dead) > max_dead + math.max(16, math.floor(max_dead / 8)) then
    trim_records(dead, jobs, dead_info, max_dead, 0, 1000)
  end
end
return {1, attempts}
