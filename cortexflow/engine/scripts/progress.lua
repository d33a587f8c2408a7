--[[ progress: a running job's progress value or log line, written only by the run that owns it.
KEYS[1] active  KEYS[2] the job's hash  KEYS[3] the job's log list  KEYS[4] events stream
ARGV[1] job id  ARGV[2] lease token  ARGV[3] 'progress' or 'log'
ARGV[4] the progress JSON or the log line  ARGV[5] log lines kept (the newest)
Returns 1 written; 0 not written: the job is gone (removed, obliterated) or another run owns it
(its lease was lost), so nothing is created or resurrected. ]]
--@include events
local kind = ARGV[3]
local keep = tonumber(ARGV[5])
if (kind ~= 'progress' and kind ~= 'log') or ARGV[4] == nil or not keep or keep < 1 then
  return redis.error_reply('ERR progress: bad arguments')
end
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[2] or not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
if kind == 'progress' then
  redis.call('HSET', KEYS[2], 'progress', ARGV[4])
  add_event(KEYS[4], 'e', 'progress', 'id', ARGV[1], 'data', ARGV[4])
else
  redis.call('RPUSH', KEYS[3], ARGV[4])
  redis.call('LTRIM', KEYS[3], -keep, -1)
end
return 1
