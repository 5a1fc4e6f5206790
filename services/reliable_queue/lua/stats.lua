-- stats: one queue's figures in one round trip, each O(1) or O(log n).
-- KEYS[1] pending  KEYS[2] active  KEYS[3] delayed  KEYS[4] dead  KEYS[5] done
-- KEYS[6] counters  KEYS[7] jobs  KEYS[8] workers
-- ARGV[1] worker_ttl_ms
-- Returns {now, pending, processing, delayed, failed, finished_records, oldest_pending_ms
--          or -1, live_workers, enqueued, completed, retried, dead, recovered}
local pending, active, delayed, dead, done, counters, jobs, workers =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local now = now_ms()
-- The oldest pending job is the head of one of the priority bands: walk the band heads
-- (each an O(log n) lookup); queues use few distinct priorities, so cap the walk.
local oldest = -1
local head = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
local walked = 0
while #head > 0 and walked < 32 do
  local env = redis.call('HGET', jobs, head[1])
  if env then
    local t = envelope_enqueued(env)
    if oldest < 0 or t < oldest then
      oldest = t
    end
  end
  local band = math.floor(tonumber(head[2]) / BAND)
  head = redis.call('ZRANGEBYSCORE', pending, int((band + 1) * BAND), '+inf', 'WITHSCORES',
                    'LIMIT', 0, 1)
  walked = walked + 1
end
local c = redis.call('HMGET', counters, 'enqueued', 'completed', 'retried', 'dead', 'recovered')
local live = redis.call('ZCOUNT', workers, int(now - tonumber(ARGV[1])), '+inf')
return {int(now), redis.call('ZCARD', pending), redis.call('ZCARD', active),
        redis.call('ZCARD', delayed), redis.call('ZCARD', dead), redis.call('ZCARD', done),
        oldest, live, c[1] or 0, c[2] or 0, c[3] or 0, c[4] or 0, c[5] or 0}
