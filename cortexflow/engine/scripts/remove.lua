--[[ remove: delete one job that is not active.
KEYS[1] wait  KEYS[2] delayed  KEYS[3] active  KEYS[4] completed  KEYS[5] failed
KEYS[6] events (STREAM)
ARGV[1] job key prefix  ARGV[2] job id
A child of a join (docs/pipelines.md) is counted as removed.
Returns 1 removed, 0 no such job, -1 refused: the job is active (a worker holds it). ]]
--@include events
--@include pipeline
--@include groups
if ARGV[2] == nil or ARGV[2] == '' then return 0 end  -- no such job
local id = ARGV[2]
if redis.call('ZSCORE', KEYS[3], id) then return -1 end
local jkey = ARGV[1] .. id
local join = redis.call('HGET', jkey, 'join')
if join then join_ended(ARGV[1], id, join, 'removed', 'removed by an operator', now_ms()) end
local g = redis.call('HGET', jkey, 'group')
local existed = redis.call('DEL', jkey)
redis.call('DEL', jkey .. ':logs')
for _, k in ipairs({KEYS[1], KEYS[2], KEYS[4], KEYS[5]}) do redis.call('ZREM', k, id) end
if g then
  local gone = redis.call('ZREM', gbase(ARGV[1]) .. 'gw:' .. g, id)
  if gone == 1 then group_count(ARGV[1], g, -1) end
end
if existed == 1 then add_event(KEYS[6], 'e', 'removed', 'id', id) end
return existed
