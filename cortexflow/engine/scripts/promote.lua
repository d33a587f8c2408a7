--[[ promote: make a delayed job waiting now.
KEYS[1] delayed  KEYS[2] wait  KEYS[3] marker  KEYS[4] events (STREAM)
ARGV[1] job key prefix  ARGV[2] job id
Everything is read before the first write. Returns 1 if promoted (a job of a group holding it
with order strict: the group wakes), 0 if the job is not delayed
(an id left in the delayed set without its job is dropped from it). ]]
--@include common
--@include events
--@include groups
local id = ARGV[2]
if id == nil or id == '' then return redis.error_reply('ERR promote: no job id') end
local jkey = ARGV[1] .. id
if not redis.call('ZSCORE', KEYS[1], id) then
  -- A failed job of a group with order strict waits out its backoff in its group's set, and the
  -- group sleeps (include/groups.lua): promoting it wakes the group.
  local f = redis.call('HMGET', jkey, 'state', 'group')
  if f[1] ~= 'delayed' or not f[2] or not redis.call('ZSCORE', gbase(ARGV[1]) .. 'gw:' .. f[2], id) then
    return 0
  end
  redis.call('ZREM', gbase(ARGV[1]) .. 'gsleep', f[2])
  redis.call('HSET', jkey, 'state', 'waiting')
  group_offer(ARGV[1], f[2])
  add_event(KEYS[4], 'e', 'promoted', 'id', id)
  wake(KEYS[3])
  return 1
end
if redis.call('EXISTS', jkey) == 0 then
  redis.call('ZREM', KEYS[1], id)
  return 0
end
local score = score_of(jkey)
local g = redis.call('HGET', jkey, 'group')
redis.call('ZREM', KEYS[1], id)
if g then group_enqueue(ARGV[1], g, id, score) else redis.call('ZADD', KEYS[2], score, id) end
redis.call('HSET', jkey, 'state', 'waiting')
add_event(KEYS[4], 'e', 'promoted', 'id', id)
wake(KEYS[3])
return 1
