-- history: record one sample of a queue's figures in its history, once per slot.
-- KEYS[1] history (every fine slot)  KEYS[2] history_coarse (every coarse slot)
-- KEYS[3] counters (the queue's: none, the queue was deleted, and nothing is recorded)
-- ARGV[1] fine slot, ms  ARGV[2] kept of it, ms  ARGV[3] coarse slot, ms
-- ARGV[4] kept of it, ms  ARGV[5] the sample (JSON, without its time)
-- Each ZSET maps "<now ms>|<sample>" -> slot start. The first sample of a slot stands:
-- gateways sampling side by side (or one restarted) neither double nor rewrite the series.
-- Returns 1 if recorded, 0 if the queue is gone.
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local now = now_ms()
local function record(key, slot_ms, keep_ms)
  local slot = math.floor(now / slot_ms) * slot_ms
  if redis.call('ZCOUNT', key, int(slot), int(slot)) == 0 then
    redis.call('ZADD', key, int(slot), int(now) .. '|' .. ARGV[5])
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. int(now - keep_ms))
  redis.call('PEXPIRE', key, keep_ms)
end
record(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
record(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
return 1
