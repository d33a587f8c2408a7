--[[ release: hand jobs a stopping worker will not finish back to waiting, at their place.
The run is not counted as an attempt: the job did not fail, its worker stopped.
KEYS[1] active  KEYS[2] wait  KEYS[3] marker
ARGV[1] job key prefix   ARGV[2..] pairs of id, token
Each job is read before it is written. Returns the number of jobs released. ]]
--@include common
--@include groups
if #ARGV % 2 ~= 1 then return redis.error_reply('ERR release: ids and tokens come in pairs') end
local released = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local jkey = ARGV[1] .. id
  if redis.call('HGET', jkey, 'token') == ARGV[i + 1] and redis.call('ZSCORE', KEYS[1], id) then
    local score = score_of(jkey)
    local g = redis.call('HGET', jkey, 'group')
    redis.call('ZREM', KEYS[1], id)
    if g then
      group_left(ARGV[1], g, id)
      group_enqueue(ARGV[1], g, id, score)
    else
      redis.call('ZADD', KEYS[2], score, id)
    end
    redis.call('HSET', jkey, 'state', 'waiting', 'token', '')
    released = released + 1
  end
end
if released > 0 then wake(KEYS[3]) end
return released
