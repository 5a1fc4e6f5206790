-- owner_release: give up the claim on a queue, only if it is still the caller's.
-- KEYS[1] owner   HASH namespace, name, uid, claimed_at_ms (see owner_claim.lua)
-- ARGV[1] uid of the owner that lets go
-- Returns 1 if the claim was the caller's and is gone, 0 if it was someone else's or none.
if redis.call('HGET', KEYS[1], 'uid') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
