-- Shared helpers, prepended to every script by scripting.py (Redis has no `require`).
--
-- Key layout of one queue Q (all keys carry the hash tag {Q}, so a queue lives in one
-- Redis Cluster slot; every key a script touches is passed in KEYS):
--   conveyor:{Q}:pending    ZSET  id -> priority score (see score() below)
--   conveyor:{Q}:delayed    ZSET  id -> due time, ms (delayed jobs and retries)
--   conveyor:{Q}:active     ZSET  id -> lease deadline, ms (claimed, being processed)
--   conveyor:{Q}:jobs       HASH  id -> envelope "<enqueued_ms>|<priority>|<payload>"
--   conveyor:{Q}:leases     HASH  id -> "<token>:<pending score>" while claimed
--   conveyor:{Q}:fails      HASH  id -> failed attempts so far
--   conveyor:{Q}:lost       HASH  id -> times its lease expired (worker crashed or hung)
--   conveyor:{Q}:errors     HASH  id -> last error text
--   conveyor:{Q}:outages    HASH  id -> when its handler first postponed it for an outage, ms
--   conveyor:{Q}:dead       ZSET  id -> dead-lettered at, ms   (users call it dead:<Q>)
--   conveyor:{Q}:dead_info  HASH  id -> JSON {reason, error, attempts, recoveries, failed_at}
--   conveyor:{Q}:done       ZSET  id -> finished at, ms (finished-job records, capped)
--   conveyor:{Q}:counters   HASH  seq, token, enqueued, completed, retried, dead, recovered
--   conveyor:{Q}:wake       LIST  at most one marker; idle workers block on it
--   conveyor:{Q}:workers    ZSET  worker id -> last heartbeat, ms (live workers)
--   conveyor:{Q}:held       HASH  worker id -> jobs it held at its last heartbeat (the
--                                 operator's pod-deletion-cost: busy pods are removed last)
--   conveyor:{Q}:history    ZSET  "<taken at ms>|<figures JSON>" -> slot ms: the queue's figures
--                                 every few seconds, for minutes (history.lua)
--   conveyor:{Q}:history_coarse  ZSET  the same every minute, for a day
-- Times come from Redis TIME only, so clocks of worker hosts never matter.

-- Scores: (PRIO_MAX - priority) * 2^42 + seq. ZPOPMIN takes the highest priority first and,
-- within one priority, the lowest sequence number (FIFO). Both parts stay below 2^53, where
-- doubles are exact: priorities span 2001 values and seq wraps long before 2^42.
local PRIO_MAX = 1000
local BAND = 4398046511104 -- 2^42

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as exact decimal strings, for concatenation and replies: Lua's own conversion
-- (%.14g) would round scores and millisecond timestamps. (Numbers passed to redis.call are
-- exact: Redis formats them with 17 significant digits.)
local function int(n)
  return string.format('%.0f', n)
end

-- The same, faster for the integers below 10^14 that Lua's own %.14g prints exactly (tokens,
-- counters). Arguments of redis.call need neither: Redis formats numbers with 17 digits.
local function int_str(n)
  if n < 1e14 and n > -1e14 then
    return tostring(n)
  end
  return int(n)
end

local function score(priority, seq)
  return (PRIO_MAX - priority) * BAND + seq
end

local function envelope_priority(env)
  return tonumber(string.match(env, '^%d+|(%-?%d+)|'))
end

local function envelope_enqueued(env)
  return tonumber(string.match(env, '^(%d+)|'))
end

-- Reserve n sequence numbers; returns the first.
local function next_seq(counters, n)
  return redis.call('HINCRBY', counters, 'seq', n) - n
end

-- redis.call(cmd, key, <items...>) in slices: Lua's unpack() has a stack limit of ~8000.
local function call_many(cmd, key, items)
  local n = #items
  local step = 4000
  for i = 1, n, step do
    redis.call(cmd, key, unpack(items, i, math.min(i + step - 1, n)))
  end
end

-- The same, collecting the replies of a command that returns one value per item (HMGET).
local function get_many(cmd, key, items)
  local out = {}
  local n = #items
  local step = 4000
  for i = 1, n, step do
    local part = redis.call(cmd, key, unpack(items, i, math.min(i + step - 1, n)))
    for _, v in ipairs(part) do
      out[#out + 1] = v
    end
  end
  return out
end

local function wake(wake_key)
  redis.call('LPUSH', wake_key, '1')
  redis.call('LTRIM', wake_key, 0, 0)
end

-- Put a job (whose envelope is in jobs) back into pending at the back of its priority.
local function to_pending(jobs, pending, counters, id)
  local env = redis.call('HGET', jobs, id)
  if not env then
    return false
  end
  redis.call('ZADD', pending, int(score(envelope_priority(env), next_seq(counters, 1))), id)
  return true
end

-- Park a job in dead letters with what a person needs to decide about it.
-- k = {dead, dead_info, fails, lost, errors, counters, outages (absent: never postponed)}
local function bury(k, id, now, reason, err, attempts)
  local recoveries = tonumber(redis.call('HGET', k.lost, id) or '0')
  local info = cjson.encode({
    reason = reason,
    error = err or redis.call('HGET', k.errors, id) or '',
    attempts = attempts,
    recoveries = recoveries,
    failed_at = now,
  })
  redis.call('ZADD', k.dead, int(now), id)
  redis.call('HSET', k.dead_info, id, info)
  redis.call('HDEL', k.fails, id)
  redis.call('HDEL', k.lost, id)
  redis.call('HDEL', k.errors, id)
  if k.outages then
    redis.call('HDEL', k.outages, id)
  end
  redis.call('HINCRBY', k.counters, 'dead', 1)
end

-- Drop the oldest members of a record ZSET (dead or done) beyond max_count and older than
-- cutoff_ms, with their envelopes. At most `budget` per call so no call blocks Redis long.
local function trim_records(zset, jobs, info, max_count, cutoff_ms, budget)
  local ids = redis.call('ZRANGEBYSCORE', zset, '-inf', '(' .. int(cutoff_ms), 'LIMIT', 0, budget)
  local excess = redis.call('ZCARD', zset) - #ids - max_count
  if excess > 0 and #ids < budget then
    local more = redis.call('ZRANGE', zset, #ids, #ids + math.min(excess, budget - #ids) - 1)
    for _, id in ipairs(more) do
      ids[#ids + 1] = id
    end
  end
  if #ids > 0 then
    call_many('ZREM', zset, ids)
    call_many('HDEL', jobs, ids)
    if info then
      call_many('HDEL', info, ids)
    end
  end
  return #ids
end

-- The ids a dead-letter script works on: ARGV[1] 'oldest' takes the ARGV[2] oldest dead
-- letters; 'ids' takes ARGV[3..].
local function dead_ids(dead)
  if ARGV[1] == 'oldest' then
    return redis.call('ZRANGE', dead, 0, tonumber(ARGV[2]) - 1)
  end
  local ids = {}
  for i = 3, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
  return ids
end
