--[[ schedule: add the job of one schedule tick, at most once, however many schedulers try.
KEYS[1] the schedule's state HASH (last_tick, last_run, last_job)
KEYS[2] wait   KEYS[3] meta   KEYS[4] marker
ARGV[1] job key prefix   ARGV[2] tick (ms)   ARGV[3] since (ms): ticks at or before it never run
ARGV[4] 'fire' (add the job) or 'skip' (record the tick as passed, add nothing)
ARGV[5] job id   ARGV[6] job name   ARGV[7] data (JSON)   ARGV[9] priority
ARGV[8] opts (JSON of the job's own options, '' for none)   ARGV[10] group ('' for none)
Returns {code, n}:
  { 1, lateness ms}  added (or recorded, for skip): this call owns the tick
  { 0, last tick}    the tick was handled already (by this or another scheduler)
  {-1, ms to wait}   the tick is still in the future by the server's clock: never early
The job hash is written as add.lua writes it (include/new_job.lua). ]]
--@include common
--@include new_job
--@include groups
local now = now_ms()
local tick = tonumber(ARGV[2])
if tick > now then
  return {-1, tick - now}
end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_tick') or '0')
local since = tonumber(ARGV[3])
if since > last then last = since end
if tick <= last then
  return {0, last}
end
if ARGV[4] == 'skip' then
  redis.call('HSET', KEYS[1], 'last_tick', tick)
  return {1, now - tick}
end
local id = ARGV[5]
local jkey = ARGV[1] .. id
redis.call('HSET', KEYS[1], 'last_tick', tick, 'last_run', now, 'last_job', id)
if redis.call('EXISTS', jkey) == 0 then
  local priority = tonumber(ARGV[9])
  local score = waiting_score(KEYS[3], priority)
  local g = ARGV[10] or ''
  write_new_job(jkey, ARGV[6], ARGV[7], ARGV[8], priority, 0, 'waiting', now, score, g)
  if g ~= '' then group_enqueue(ARGV[1], g, id, score) else redis.call('ZADD', KEYS[2], score, id) end
  wake(KEYS[4])
end
return {1, now - tick}
