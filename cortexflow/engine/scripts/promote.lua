--[[ promote: make a delayed job waiting now.
KEYS[1] delayed  KEYS[2] wait  KEYS[3] marker  KEYS[4] events (STREAM)
ARGV[1] job key prefix  ARGV[2] job id
Returns 1 if promoted, 0 if the job is not delayed. ]]
local id = ARGV[2]
if not redis.call('ZSCORE', KEYS[1], id) then return 0 end
local jkey = ARGV[1] .. id
redis.call('ZREM', KEYS[1], id)
redis.call('ZADD', KEYS[2], redis.call('HGET', jkey, 'score'), id)
redis.call('HSET', jkey, 'state', 'waiting')
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 5000, '*', 'e', 'promoted', 'id', id)
if redis.call('LLEN', KEYS[3]) == 0 then redis.call('RPUSH', KEYS[3], '1') end
return 1
