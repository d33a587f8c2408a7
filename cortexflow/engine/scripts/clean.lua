--[[ clean: remove jobs of one state older than a grace period, one bounded chunk per call.
KEYS[1] the state's ZSET (completed, failed, delayed or wait)  KEYS[2] events (STREAM)
ARGV[1] job key prefix  ARGV[2] grace (ms)  ARGV[3] limit (most ids removed by this call)
ARGV[4] state name      ARGV[5] cursor: the last job looked at and kept ('' to start)
ARGV[6] the cursor job's score  ARGV[7] chunk: most jobs looked at by this call
ARGV[8] a group's name when KEYS[1] is that group's waiting set (include/groups.lua), else ''
Finished jobs (score = finish time) are taken oldest first. Waiting and delayed jobs are not
ordered by age (their score is a priority or a due time), so the set is walked in score order,
ARGV[7] jobs per call, comparing created_at: the caller passes back the cursor this call
returns until it is ''. A cursor job that left the set meanwhile is resumed from by score.
Waiting or delayed children of joins are counted as removed (finished ones were counted at
their end; docs/pipelines.md).
Returns {more (1: call again with the cursor), cursor, cursor score, removed id, ...}. ]]
--@include common
--@include events
--@include groups
--@include pipeline
local grace = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local chunk = tonumber(ARGV[7])
if not grace or not limit or limit < 1 or not chunk or chunk < 1 then
  return redis.error_reply('ERR clean: bad arguments')
end
local cutoff = now_ms() - grace
local prefix = ARGV[1]
local out = {0, '', '0'}
-- Remove these jobs of the set (listed in the reply, counted in one event); `joins`: the join
-- of each child of a fan-out among them (id -> join), counted as removed.
local function remove(ids, joins)
  if #ids == 0 then return end
  local now = nil
  for id, join in pairs(joins) do
    now = now or now_ms()
    join_ended(prefix, id, join, 'removed', 'cleaned by an operator', now)
  end
  remove_jobs(prefix, ids)
  redis.call('ZREM', KEYS[1], unpack(ids))
  if (ARGV[8] or '') ~= '' then group_count(prefix, ARGV[8], -#ids) end
  add_event(KEYS[2], 'e', 'cleaned', 'count', #ids, 'state', ARGV[4])
  for _, id in ipairs(ids) do out[#out + 1] = id end
end
if ARGV[4] == 'completed' or ARGV[4] == 'failed' then
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, limit)
  remove(ids, {})  -- finished children were counted at their end
  if #ids == limit then out[1] = 1 end
  return out
end
local start = 0
if ARGV[5] ~= '' then
  local rank = redis.call('ZRANK', KEYS[1], ARGV[5])
  if rank then
    start = rank + 1
  else
    start = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[6])
  end
end
local looked = redis.call('ZRANGE', KEYS[1], start, start + chunk - 1, 'WITHSCORES')
local removed, joins = {}, {}
local last, last_score = nil, nil
for i = 1, #looked, 2 do
  local id = looked[i]
  local f = redis.call('HMGET', prefix .. id, 'created_at', 'join')
  local created = tonumber(f[1]) or 0
  if created <= cutoff and #removed < limit then
    removed[#removed + 1] = id
    if f[2] then joins[id] = f[2] end
  else
    last, last_score = id, looked[i + 1]
  end
  if #removed >= limit then break end
end
remove(removed, joins)
if #looked == chunk * 2 or #removed >= limit then out[1] = 1 end
-- Resume after the last job kept; if none was kept, where this call started.
out[2], out[3] = ARGV[5], ARGV[6]
if last then out[2], out[3] = last, last_score end
return out
