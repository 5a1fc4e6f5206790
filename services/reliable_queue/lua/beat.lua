-- beat: a worker's heartbeat; returns the queue's live policy in the same round trip.
-- KEYS[1] workers  KEYS[2] config
-- ARGV[1] worker id  ARGV[2] forget_after_ms (drop heartbeats older than this)
-- Returns the flat HGETALL of config.
local workers, config = KEYS[1], KEYS[2]
local now = now_ms()
redis.call('ZADD', workers, int(now), ARGV[1])
redis.call('ZREMRANGEBYSCORE', workers, '-inf', '(' .. int(now - tonumber(ARGV[2])))
return redis.call('HGETALL', config)
