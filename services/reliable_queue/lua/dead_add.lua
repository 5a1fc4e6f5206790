-- dead_add: park items that never became jobs (e.g. malformed MQTT payloads) straight in
-- dead letters, where a person can read and replay or purge them. An id already present is
-- left alone (a redelivered copy of the same message). Then, if caps are given, evict the
-- oldest dead letters until the list is within them: at most max_count letters and max_bytes
-- bytes, so a flood of bad input cannot fill Redis.
-- KEYS[1] jobs  KEYS[2] dead  KEYS[3] dead_info  KEYS[4] counters  KEYS[5] fails  KEYS[6] lost
-- KEYS[7] errors
-- ARGV[1] n  ARGV[2] max_count (0: no cap)  ARGV[3] max_bytes (0: no cap)
-- ARGV[4] overhead: bytes counted per letter besides its strings (Redis' own bookkeeping)
-- then n times: id, payload, reason, error
-- Returns {added, evicted}.
--
-- The weight of a letter: its envelope, its dead_info JSON and its id three times (the ZSET
-- member and two hash fields), each as the allocator rounds it, and the overhead (the hash and
-- ZSET entries), so that max_bytes bounds the memory Redis uses, not only the payloads. The running total is kept in counters
-- (dead_bytes, with dead_bytes_n the number of letters it covers). Dead letters also come and
-- go by other paths (purge, replay, retention, workers burying jobs); when the count no longer
-- matches, the total is recounted once, O(letters), before anything is evicted.
-- Every eviction is counted in counters.dead_evicted.
local jobs = KEYS[1]
local k = {dead = KEYS[2], dead_info = KEYS[3], counters = KEYS[4], fails = KEYS[5],
           lost = KEYS[6], errors = KEYS[7]}
local n = tonumber(ARGV[1])
local max_count, max_bytes, overhead = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()

-- What the allocator (jemalloc) hands out for a string of n bytes: the sds header and
-- terminator, rounded up to its size class (16-byte steps to 128, then four per power of two).
local function alloc(n)
  local size = n + (n < 256 and 4 or (n < 65536 and 6 or 10))
  if size <= 128 then
    return math.ceil(size / 16) * 16
  end
  local step = 2 ^ math.ceil(math.log(size) / math.log(2)) / 8
  return math.ceil(size / step) * step
end

local function weight(id)
  return alloc(redis.call('HSTRLEN', jobs, id)) + alloc(redis.call('HSTRLEN', k.dead_info, id))
    + 3 * alloc(#id) + overhead
end

local bytes = 0
if max_bytes > 0 then
  local acc = redis.call('HMGET', k.counters, 'dead_bytes', 'dead_bytes_n')
  bytes = tonumber(acc[1] or '0')
  if tonumber(acc[2] or '-1') ~= redis.call('ZCARD', k.dead) then
    bytes = 0
    for _, id in ipairs(redis.call('ZRANGE', k.dead, 0, -1)) do
      bytes = bytes + weight(id)
    end
  end
end

local added = 0
for i = 0, n - 1 do
  local base = 5 + i * 4
  local id = ARGV[base]
  if redis.call('HSETNX', jobs, id, int(now) .. '|0|' .. ARGV[base + 1]) == 1 then
    bury(k, id, now, ARGV[base + 2], ARGV[base + 3], 0)
    -- Letters of one call share a millisecond: a sub-millisecond step keeps them in arrival
    -- order (listing newest first, evicting oldest first) rather than in id order. 0.5 µs is
    -- two doubles apart at today's epoch ms, and a call adds at most 1000 (< 1 ms).
    redis.call('ZADD', k.dead, string.format('%.4f', now + added * 0.0005), id)
    added = added + 1
    if max_bytes > 0 then
      bytes = bytes + weight(id)
    end
  end
end

-- Oldest first, a bounded number per call so that one call never holds Redis long (a cap
-- lowered a lot is reached over the next calls).
local evicted = 0
local budget = 1000 + 2 * n
local count = redis.call('ZCARD', k.dead)
while evicted < budget and count > 0
    and ((max_count > 0 and count > max_count) or (max_bytes > 0 and bytes > max_bytes)) do
  local id = redis.call('ZRANGE', k.dead, 0, 0)[1]
  if max_bytes > 0 then
    bytes = bytes - weight(id)
  end
  redis.call('ZREM', k.dead, id)
  redis.call('HDEL', jobs, id)
  redis.call('HDEL', k.dead_info, id)
  count = count - 1
  evicted = evicted + 1
end
if max_bytes > 0 then
  redis.call('HSET', k.counters, 'dead_bytes', int(bytes), 'dead_bytes_n', count)
end
if evicted > 0 then
  redis.call('HINCRBY', k.counters, 'dead_evicted', evicted)
end
return {added, evicted}
