-- enqueue: add jobs to one queue, skipping ids that are still alive (idempotent producers).
-- KEYS[1] jobs  KEYS[2] pending  KEYS[3] delayed  KEYS[4] done  KEYS[5] counters  KEYS[6] wake
-- KEYS[7] config
-- ARGV[1] n, then n times: id, priority ('' for the queue's default_priority), delay_ms, payload
-- Returns a list of n flags: 1 queued, 0 duplicate of a job that is still alive
-- (pending, delayed, being processed or in dead letters), or of an earlier item of this call.
-- A finished job's id may be reused. Commands are issued per batch, not per job.
local jobs, pending, delayed, done, counters, wake_key, config =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local n = tonumber(ARGV[1])
local now = now_ms()
local stamp = int(now)
local seq = next_seq(counters, n)

local ids = {}
for i = 0, n - 1 do
  ids[i + 1] = ARGV[2 + i * 4]
end
local existing = get_many('HMGET', jobs, ids)

local flags, seen = {}, {}
local default_priority = nil -- read once, and only if a job comes without a priority
local job_fields, ready, later = {}, {}, {}
for i = 0, n - 1 do
  local base = 2 + i * 4
  local id = ids[i + 1]
  local fresh = not seen[id]
  if fresh and existing[i + 1] then
    -- Alive unless it is only a finished-job record.
    fresh = redis.call('ZREM', done, id) == 1
  end
  if fresh then
    seen[id] = true
    local priority, delay = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
    if not priority then
      if not default_priority then
        default_priority = tonumber(redis.call('HGET', config, 'default_priority') or '0') or 0
      end
      priority = default_priority
    end
    job_fields[#job_fields + 1] = id
    job_fields[#job_fields + 1] = stamp .. '|' .. priority .. '|' .. ARGV[base + 3]
    if delay > 0 then
      later[#later + 1] = now + delay
      later[#later + 1] = id
    else
      ready[#ready + 1] = score(priority, seq + i)
      ready[#ready + 1] = id
    end
    flags[i + 1] = 1
  else
    flags[i + 1] = 0
  end
end
if #job_fields > 0 then
  call_many('HSET', jobs, job_fields)
  redis.call('HINCRBY', counters, 'enqueued', #job_fields / 2)
end
if #ready > 0 then
  call_many('ZADD', pending, ready)
  wake(wake_key)
end
if #later > 0 then
  call_many('ZADD', delayed, later)
end
return flags
