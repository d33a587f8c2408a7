--[[ clean: remove jobs of one state older than a grace period.
KEYS[1] the state's ZSET (completed, failed, delayed or wait)  KEYS[2] events (STREAM)
ARGV[1] job key prefix  ARGV[2] grace (ms)  ARGV[3] limit  ARGV[4] state name
Age is measured from finished_at for finished jobs, from created_at otherwise.
Returns the removed ids. ]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = now - tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local removed = {}
local candidates
if ARGV[4] == 'completed' or ARGV[4] == 'failed' then
  candidates = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, limit)
else
  candidates = {}
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local created = tonumber(redis.call('HGET', ARGV[1] .. id, 'created_at') or '0')
    if created <= cutoff then
      candidates[#candidates + 1] = id
      if #candidates >= limit then break end
    end
  end
end
for _, id in ipairs(candidates) do
  redis.call('DEL', ARGV[1] .. id, ARGV[1] .. id .. ':logs')
  redis.call('ZREM', KEYS[1], id)
  removed[#removed + 1] = id
end
if #removed > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 5000, '*', 'e', 'cleaned', 'count', #removed, 'state', ARGV[4])
end
return removed
