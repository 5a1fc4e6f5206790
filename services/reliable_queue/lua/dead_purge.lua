-- dead_purge: delete dead letters and their payloads.
-- KEYS[1] dead  KEYS[2] dead_info  KEYS[3] jobs
-- ARGV[1] 'ids' | 'oldest'  ARGV[2] limit (for 'oldest'), then ids (for 'ids')
-- Returns how many were deleted.
local dead, dead_info, jobs = KEYS[1], KEYS[2], KEYS[3]
local ids = dead_ids(dead)
local purged = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', dead, id) == 1 then
    redis.call('HDEL', dead_info, id)
    redis.call('HDEL', jobs, id)
    purged = purged + 1
  end
end
return purged
