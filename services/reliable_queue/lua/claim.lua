-- claim: lease up to n jobs to a worker, highest priority first; promote due delayed jobs.
-- KEYS[1] pending  KEYS[2] delayed  KEYS[3] active  KEYS[4] jobs  KEYS[5] leases
-- KEYS[6] fails  KEYS[7] counters  KEYS[8] wake
-- ARGV[1] n  ARGV[2] lease_ms  ARGV[3] promote_limit
-- Returns {now_ms, next_due_ms or -1, id1, token1, envelope1, fails1, id2, ...}.
-- The job moves from pending to active in this one script: no crash window loses it.
local pending, delayed, active, jobs, leases, fails, counters, wake_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local n, lease_ms, promote_limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()

local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', int(now), 'LIMIT', 0, promote_limit)
for _, id in ipairs(due) do
  redis.call('ZREM', delayed, id)
  to_pending(jobs, pending, counters, id)
end

local out = {int(now), -1}
local popped = {}
if n > 0 then
  popped = redis.call('ZPOPMIN', pending, n)
end
if #popped == 0 then
  local nxt = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if #nxt > 0 then
    out[2] = nxt[2]
  end
  return out
end

local ids = {}
for i = 1, #popped, 2 do
  ids[#ids + 1] = popped[i]
end
local envs = get_many('HMGET', jobs, ids)
-- Failed attempts live in a hash that is usually absent: skip the lookup then.
local failed = {}
if redis.call('EXISTS', fails) == 1 then
  failed = get_many('HMGET', fails, ids)
end
local token = redis.call('HINCRBY', counters, 'token', #ids) - #ids
local deadline = int(now + lease_ms)
local active_args, lease_args = {}, {}
for k, id in ipairs(ids) do
  token = token + 1
  local env = envs[k]
  if env then
    local t = int_str(token)
    active_args[#active_args + 1] = deadline
    active_args[#active_args + 1] = id
    lease_args[#lease_args + 1] = id
    -- The score as ZPOPMIN gave it: an exact decimal of the double, parsed back by release
    -- and reap (ZADD takes any form of it).
    lease_args[#lease_args + 1] = t .. ':' .. popped[2 * k]
    out[#out + 1] = id
    out[#out + 1] = t
    out[#out + 1] = env
    out[#out + 1] = failed[k] or '0'
  end
end
if #active_args > 0 then
  call_many('ZADD', active, active_args)
  call_many('HSET', leases, lease_args)
end
if redis.call('ZCARD', pending) > 0 then
  -- More work remains: pass the wake-up on to the next idle worker.
  wake(wake_key)
end
return out
