--[[ pause / resume: no new job starts in a paused queue, on any host.
KEYS[1] meta  KEYS[2] marker  KEYS[3] events (STREAM)
ARGV[1] '1' pause, '0' resume
Returns 1. Resuming pushes a wake-up token so idle workers look at once. ]]
--@include common
--@include events
if ARGV[1] ~= '1' and ARGV[1] ~= '0' then
  return redis.error_reply("ERR pause: ARGV[1] is '1' or '0'")
end
redis.call('HSET', KEYS[1], 'paused', ARGV[1])
add_event(KEYS[3], 'e', ARGV[1] == '1' and 'paused' or 'resumed')
if ARGV[1] == '0' then wake(KEYS[2]) end
return 1
