--[[ drain: remove waiting jobs (and delayed ones if asked), a batch per call.
KEYS[1] wait  KEYS[2] delayed  KEYS[3] events (STREAM)
ARGV[1] job key prefix  ARGV[2] '1' to include delayed  ARGV[3] batch size
Returns the number removed by this call (call again until 0). ]]
--@include common
--@include events
if not tonumber(ARGV[3]) or tonumber(ARGV[3]) < 1 then
  return redis.error_reply('ERR drain: bad batch size')
end
local removed = 0
local keys = {KEYS[1]}
if ARGV[2] == '1' then keys[2] = KEYS[2] end
for _, k in ipairs(keys) do
  local ids = redis.call('ZRANGE', k, 0, tonumber(ARGV[3]) - 1)
  if #ids > 0 then
    remove_jobs(ARGV[1], ids)
    redis.call('ZREM', k, unpack(ids))
    removed = removed + #ids
  end
end
if removed > 0 then add_event(KEYS[3], 'e', 'drained', 'count', removed) end
return removed
