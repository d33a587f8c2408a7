#!lua flags=allow-oom
--[[ heartbeat: renew the leases of the jobs a worker is running.
KEYS[1] active   KEYS[2] meta (optional: the lease clock below)
ARGV[1] job key prefix   ARGV[2] lease (ms)   ARGV[3..] pairs of id, token
Returns the ids whose lease this worker no longer holds (stalled and taken over, or removed).
It also ticks the queue's lease clock (include/lease_clock.lua): a renewal served after no
renewal of the queue was served for lease/2 (the server stalled) starts a settling time in which
fetch recovers no stalled job.
allow-oom: a full server (maxmemory reached, noeviction) still runs it, so the leases of running
jobs, and of finished ones whose outcome waits for room, do not run out and their jobs are not
run again. It does not grow memory: it moves the score of a member already in the active set
(ZADD XX), reads job keys that exist, and overwrites two time fields of the meta hash (created
once per queue, a few bytes). ]]
--@include common
--@include lease_clock
if not tonumber(ARGV[2]) or #ARGV % 2 ~= 0 then
  return redis.error_reply('ERR heartbeat: lease (ms) and pairs of id, token expected')
end
local now = now_ms()
if KEYS[2] then renewal_served(KEYS[2], now, tonumber(ARGV[2])) end
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
