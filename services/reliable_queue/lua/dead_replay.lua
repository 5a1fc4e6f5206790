-- dead_replay: move dead letters back to pending with a fresh attempt count.
-- KEYS[1] dead  KEYS[2] dead_info  KEYS[3] jobs  KEYS[4] pending  KEYS[5] counters
-- KEYS[6] wake
-- ARGV[1] 'ids' | 'oldest'  ARGV[2] limit (for 'oldest'), then ids (for 'ids')
-- Returns the ids replayed.
local dead, dead_info, jobs, pending, counters, wake_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ids = dead_ids(dead)
local replayed = {}
for _, id in ipairs(ids) do
  if redis.call('ZREM', dead, id) == 1 then
    redis.call('HDEL', dead_info, id)
    if to_pending(jobs, pending, counters, id) then
      replayed[#replayed + 1] = id
    end
  end
end
if #replayed > 0 then
  wake(wake_key)
end
return replayed
