-- enqueue: add jobs to one queue, skipping ids that are still alive (idempotent producers).
-- KEYS[1] jobs  KEYS[2] pending  KEYS[3] delayed  KEYS[4] done  KEYS[5] counters  KEYS[6] wake
-- ARGV[1] n, then n times: id, priority, delay_ms, payload
-- Returns a list of n flags: 1 queued, 0 duplicate of a job that is still alive
-- (pending, delayed, being processed or in dead letters). A finished job's id may be reused.
local jobs, pending, delayed, done, counters, wake_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local n = tonumber(ARGV[1])
local now = now_ms()
local seq = next_seq(counters, n)
local flags, added, ready = {}, 0, 0
for i = 0, n - 1 do
  local base = 2 + i * 4
  local id, priority, delay = ARGV[base], tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local env = int(now) .. '|' .. priority .. '|' .. ARGV[base + 3]
  local fresh = redis.call('HSETNX', jobs, id, env) == 1
  if not fresh and redis.call('ZREM', done, id) == 1 then
    redis.call('HSET', jobs, id, env)
    fresh = true
  end
  if fresh then
    if delay > 0 then
      redis.call('ZADD', delayed, int(now + delay), id)
    else
      redis.call('ZADD', pending, int(score(priority, seq + i)), id)
      ready = ready + 1
    end
    added = added + 1
    flags[i + 1] = 1
  else
    flags[i + 1] = 0
  end
end
if added > 0 then
  redis.call('HINCRBY', counters, 'enqueued', added)
end
if ready > 0 then
  wake(wake_key)
end
return flags
