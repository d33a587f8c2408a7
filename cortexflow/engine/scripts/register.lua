--[[ register: publish a process's heartbeat in a registry, on the server's clock.
KEYS[1] ZSET member -> deadline (ms)   KEYS[2] HASH member -> info JSON
ARGV[1] member  ARGV[2] info JSON  ARGV[3] time to live (ms)
Entries whose deadline passed (their process died without saying goodbye) are removed.
Returns the server time (ms). ]]
--@include common
local ttl = tonumber(ARGV[3])
if not ttl or ARGV[1] == nil or ARGV[2] == nil then
  return redis.error_reply('ERR register: bad arguments')
end
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)
if #dead > 0 then
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[2], unpack(dead))
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return now
