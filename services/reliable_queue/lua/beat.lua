-- beat: a worker's heartbeat; returns the queue's live policy in the same round trip.
-- KEYS[1] workers  KEYS[2] config  KEYS[3] held
-- ARGV[1] worker id  ARGV[2] forget_after_ms (drop heartbeats older than this)
-- ARGV[3] jobs the worker holds now (claimed, not yet settled)
-- Returns the flat HGETALL of config.
local workers, config, held = KEYS[1], KEYS[2], KEYS[3]
local now = now_ms()
redis.call('ZADD', workers, int(now), ARGV[1])
redis.call('HSET', held, ARGV[1], ARGV[3])
local cutoff = '(' .. int(now - tonumber(ARGV[2]))
local gone = redis.call('ZRANGEBYSCORE', workers, '-inf', cutoff)
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', workers, '-inf', cutoff)
  call_many('HDEL', held, gone)
end
return redis.call('HGETALL', config)
