-- owner_claim: record who owns a queue, unless someone already does; return the owner.
-- KEYS[1] owner   HASH namespace, name, uid, claimed_at_ms
-- ARGV[1] namespace  ARGV[2] name  ARGV[3] uid
-- ARGV[4] stale uid: '' or the uid of an owner known to be gone, whose claim is taken over
-- Returns {namespace, name, uid, claimed_at_ms} of the owner after the call: the caller's own
-- when it claimed (or already held) the queue, someone else's when it did not.
local owner_key = KEYS[1]
local namespace, name, uid, stale = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local current = redis.call('HGET', owner_key, 'uid')
if not current or (stale ~= '' and current == stale) then
  redis.call('DEL', owner_key)
  redis.call('HSET', owner_key, 'namespace', namespace, 'name', name, 'uid', uid,
    'claimed_at_ms', int(now_ms()))
end
return redis.call('HMGET', owner_key, 'namespace', 'name', 'uid', 'claimed_at_ms')
