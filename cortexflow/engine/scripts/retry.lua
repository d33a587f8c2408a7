--[[ retry: move failed jobs back to waiting with their attempts reset.
KEYS[1] failed  KEYS[2] wait  KEYS[3] marker  KEYS[4] events (STREAM)
ARGV[1] job key prefix  ARGV[2] 'all' (up to ARGV[3] of them) or 'ids'  ARGV[3..] ids / limit
Returns the ids moved. ]]
local ids
if ARGV[2] == 'all' then
  ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
else
  ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local moved = {}
for _, id in ipairs(ids) do
  local jkey = ARGV[1] .. id
  if redis.call('ZREM', KEYS[1], id) == 1 then
    redis.call('ZADD', KEYS[2], redis.call('HGET', jkey, 'score'), id)
    redis.call('HSET', jkey, 'state', 'waiting', 'attempts_made', 0, 'stalls', 0)
    redis.call('HDEL', jkey, 'finished_at', 'error', 'stacktrace', 'result')
    moved[#moved + 1] = id
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', 5000, '*', 'e', 'retried', 'id', id, 'by', 'retry')
  end
end
if #moved > 0 and redis.call('LLEN', KEYS[3]) == 0 then redis.call('RPUSH', KEYS[3], '1') end
return moved
