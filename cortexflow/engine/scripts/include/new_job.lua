--[[ new_job: the hash of a job just added, and its waiting score (add.lua and schedule.lua
write both alike).
It holds only what the job does not share with every other: no id field (the key has it), no
counters (attempts_made, stalls, deliveries read as 0 while absent), priority only when not 0,
delay only when > 0, group only for a job of a group, opts only when the job sets options of its own (JSON of those alone;
readers take the rest from the queue's current settings). A small job's fields stay under the
server's hash-max-listpack-value (64 bytes), so its hash is a compact listpack. ]]
local function write_new_job(jkey, name, data, opts, priority, delay, state, now, score, group,
    more)
  local f = {'name', name, 'data', data, 'state', state, 'created_at', now, 'score', score}
  if group and group ~= '' then f[#f + 1] = 'group'; f[#f + 1] = group end
  if opts ~= '' then f[#f + 1] = 'opts'; f[#f + 1] = opts end
  if priority ~= 0 then f[#f + 1] = 'priority'; f[#f + 1] = priority end
  if delay > 0 then f[#f + 1] = 'delay'; f[#f + 1] = delay end
  if more then for _, v in ipairs(more) do f[#f + 1] = v end end  -- a pipeline's fields
  redis.call('HSET', jkey, unpack(f))
end

-- A new job's place in the wait set: higher priority first, then the order of adds (the
-- queue's counter in its meta hash, modulo 2^32).
local function waiting_score(meta, priority)
  local seq = redis.call('HINCRBY', meta, 'seq', 1) % 4294967296
  return string.format('%.0f', (1000000 - priority) * 4294967296 + seq)
end
