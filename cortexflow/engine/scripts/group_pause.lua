--[[ group_pause: pause or resume one group of a queue: a paused group starts no job, on any
host; its running jobs finish, its jobs keep being added.
KEYS[1] marker  KEYS[2] events (STREAM)
ARGV[1] job key prefix  ARGV[2] the group  ARGV[3] '1' pause, '0' resume
Returns 1 when that changed the group, 0 when it was so already. Resuming wakes idle workers. ]]
--@include common
--@include events
--@include groups
local g = ARGV[2]
if (ARGV[3] ~= '1' and ARGV[3] ~= '0') or g == nil or g == '' then
  return redis.error_reply("ERR group_pause: a group and '1' or '0' expected")
end
local b = gbase(ARGV[1])
local changed
if ARGV[3] == '1' then
  changed = redis.call('SADD', b .. 'gpaused', g)
  redis.call('ZREM', b .. 'groups', g)
else
  changed = redis.call('SREM', b .. 'gpaused', g)
  group_offer(ARGV[1], g)
  wake(KEYS[1])
end
if changed == 1 then
  add_event(KEYS[2], 'e', ARGV[3] == '1' and 'group-paused' or 'group-resumed', 'group', g)
end
return changed
