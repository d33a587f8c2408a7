--[[ obliterate: remove a queue and everything in it, a batch per call.
KEYS[1] wait KEYS[2] delayed KEYS[3] active KEYS[4] completed KEYS[5] failed KEYS[6] meta
KEYS[7..] other keys of the queue (limiter, marker, outbox, ...), deleted at the end
ARGV[1] job key prefix  ARGV[2] '1' force  ARGV[3] batch size
Returns -1 refused (jobs are active and not forced), else the number of jobs removed by this
call; 0 means the queue is gone. The queue is paused while it is being removed. Children of
joins not yet finished (waiting, delayed, active) are counted as removed (docs/pipelines.md). ]]
--@include common
--@include pipeline
if not tonumber(ARGV[3]) or tonumber(ARGV[3]) < 1 then
  return redis.error_reply('ERR obliterate: bad batch size')
end
if ARGV[2] ~= '1' and redis.call('ZCARD', KEYS[3]) > 0 then return -1 end
redis.call('HSET', KEYS[6], 'paused', '1')
local batch = tonumber(ARGV[3])
local removed = 0
for k = 1, 5 do
  local ids = redis.call('ZRANGE', KEYS[k], 0, batch - 1)
  if #ids > 0 then
    if k <= 3 then joins_removed(ARGV[1], ids, 'removed with its queue (obliterate)') end
    remove_jobs(ARGV[1], ids)
    redis.call('ZREM', KEYS[k], unpack(ids))
    removed = removed + #ids
    batch = batch - #ids
    if batch <= 0 then return removed end
  end
end
if removed == 0 then
  for k = 6, #KEYS do redis.call('DEL', KEYS[k]) end
  -- What the hand-off outbox of next: routes set aside (named from meta, KEYS[6]). The outbox
  -- itself (a Cluster's hand-offs, joins fired above among them) holds promises to other
  -- queues: it stays until a worker of this queue copies it.
  local base = string.sub(KEYS[6], 1, #KEYS[6] - 5)
  redis.call('DEL', base .. ':next:failed')
end
return removed
