-- held: the jobs each live worker of a queue held at its last heartbeat.
-- KEYS[1] workers  KEYS[2] held
-- ARGV[1] worker_ttl_ms (a worker whose last heartbeat is older is not live)
-- Returns a flat {worker id, jobs, ...} of the live workers only: a worker killed without
-- stopping stays in `held` until another worker's heartbeat forgets it.
local workers, held = KEYS[1], KEYS[2]
local live = redis.call('ZRANGEBYSCORE', workers, int(now_ms() - tonumber(ARGV[1])), '+inf')
local out = {}
if #live > 0 then
  local counts = get_many('HMGET', held, live)
  for i, id in ipairs(live) do
    out[#out + 1] = id
    out[#out + 1] = counts[i] or '0'
  end
end
return out
