--[[ drain: remove waiting jobs (and delayed ones if asked), a batch per call.
KEYS[1] wait  KEYS[2] delayed  KEYS[3] events (STREAM)
ARGV[1] job key prefix  ARGV[2] '1' to include delayed  ARGV[3] batch size
ARGV[4] a group's name when KEYS[1] is that group's waiting set (include/groups.lua), else ''
Children of joins among them are counted as removed (docs/pipelines.md).
Returns the number removed by this call (call again until 0). ]]
--@include common
--@include events
--@include groups
--@include pipeline
if not tonumber(ARGV[3]) or tonumber(ARGV[3]) < 1 then
  return redis.error_reply('ERR drain: bad batch size')
end
local removed = 0
local keys = {KEYS[1]}
if ARGV[2] == '1' then keys[2] = KEYS[2] end
for _, k in ipairs(keys) do
  local ids = redis.call('ZRANGE', k, 0, tonumber(ARGV[3]) - 1)
  if #ids > 0 then
    joins_removed(ARGV[1], ids, 'drained by an operator')
    remove_jobs(ARGV[1], ids)
    redis.call('ZREM', k, unpack(ids))
    removed = removed + #ids
    if k == KEYS[1] and (ARGV[4] or '') ~= '' then group_count(ARGV[1], ARGV[4], -#ids) end
  end
end
if removed > 0 then add_event(KEYS[3], 'e', 'drained', 'count', removed) end
return removed
