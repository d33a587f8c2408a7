--[[ stats: job counts by state and the paused flag, read atomically.
KEYS[1] wait  KEYS[2] active  KEYS[3] completed  KEYS[4] failed  KEYS[5] delayed  KEYS[6] meta
KEYS[7] dead letters that could not be copied (set aside)
KEYS[8] hand-offs of next: routes that could not be copied (set aside; a Cluster)
Returns {waiting, active, completed, failed, delayed, paused (0/1), dead letters not copied,
hand-offs not copied}; waiting counts the jobs waiting in groups too (meta's gwait,
include/groups.lua). ]]
local gwait = tonumber(redis.call('HGET', KEYS[6], 'gwait')) or 0
return {
  redis.call('ZCARD', KEYS[1]) + math.max(gwait, 0), redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]), redis.call('ZCARD', KEYS[5]),
  redis.call('HGET', KEYS[6], 'paused') == '1' and 1 or 0,
  redis.call('LLEN', KEYS[7]), redis.call('LLEN', KEYS[8] or KEYS[7]),
}
