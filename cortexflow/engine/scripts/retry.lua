--[[ retry: move failed jobs back to waiting with their attempts reset.
KEYS[1] failed  KEYS[2] wait  KEYS[3] marker  KEYS[4] events (STREAM)
ARGV[1] job key prefix  ARGV[2] 'all' (up to ARGV[3] of them) or 'ids'  ARGV[3..] ids / limit
Every argument is checked and every job read before the first write. An id in the failed set
whose job is gone is dropped from the set, not moved.
Returns the ids moved. ]]
--@include common
--@include events
--@include groups
local ids
if ARGV[2] == 'all' then
  local limit = tonumber(ARGV[3])
  if not limit or limit < 1 then return redis.error_reply('ERR retry: bad limit') end
  ids = redis.call('ZRANGE', KEYS[1], 0, limit - 1)
elseif ARGV[2] == 'ids' then
  ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  return redis.error_reply("ERR retry: ARGV[2] is 'all' or 'ids'")
end
local plan = {}
for _, id in ipairs(ids) do
  local jkey = ARGV[1] .. id
  if redis.call('ZSCORE', KEYS[1], id) then
    local p = {id = id, jkey = jkey}
    if redis.call('EXISTS', jkey) == 1 then
      p.score = score_of(jkey)
      p.group = redis.call('HGET', jkey, 'group')
    end
    plan[#plan + 1] = p
  end
end
local moved = {}
for _, p in ipairs(plan) do
  if redis.call('ZREM', KEYS[1], p.id) == 1 and p.score then
    redis.call('HSET', p.jkey, 'state', 'waiting', 'attempts_made', 0, 'stalls', 0)
    if p.group then
      group_enqueue(ARGV[1], p.group, p.id, p.score)
    else
      redis.call('ZADD', KEYS[2], p.score, p.id)
    end
    redis.call('HDEL', p.jkey, 'finished_at', 'error', 'stacktrace', 'result')
    moved[#moved + 1] = p.id
    add_event(KEYS[4], 'e', 'retried', 'id', p.id, 'by', 'retry')
  end
end
if #moved > 0 then wake(KEYS[3]) end
return moved
