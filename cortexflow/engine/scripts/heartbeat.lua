#!lua flags=allow-oom
--[[ heartbeat: renew the leases of the jobs a worker is running.
KEYS[1] active
ARGV[1] job key prefix   ARGV[2] lease (ms)   ARGV[3..] pairs of id, token
Returns the ids whose lease this worker no longer holds (stalled and taken over, or removed).
allow-oom: a full server (maxmemory reached, noeviction) still runs it, so the leases of running
jobs, and of finished ones whose outcome waits for room, do not run out and their jobs are not
run again. It cannot grow memory: its one write moves the score of a member already in the
active set (ZADD XX), and every job key it reads already exists. ]]
--@include common
if not tonumber(ARGV[2]) or #ARGV % 2 ~= 0 then
  return redis.error_reply('ERR heartbeat: lease (ms) and pairs of id, token expected')
end
local now = now_ms()
local deadline = now + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HGET', ARGV[1] .. id, 'token') == ARGV[i + 1]
      and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', deadline, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
