--[[ handoff: copy one entry of a queue's hand-off outbox into its target queue (on a Cluster,
where the finish call that wrote the entry could not reach the target's slot; see
include/pipeline.lua and cortexflow/engine/handoffs.py).
KEYS[1] the target queue's meta key "{p:q}:meta" (its slot; the other keys are named from the
  entry's base, the same queue)
ARGV[1] the entry: a hand-off group [mode, base, parent, jobs, join(, failed error)]
Writes the entry's jobs (an id that exists adds nothing) and opens its join (once), so a copy
repeated after a crash adds nothing twice. Returns the number of jobs added. ]]
--@include pipeline
local ok, g = pcall(cjson.decode, ARGV[1] or '')
if not ok then return redis.error_reply('ERR handoff: the entry is not JSON') end
local bad = handoffs_bad({g})
if bad then return redis.error_reply('ERR handoff: ' .. bad) end
if KEYS[1] ~= g[2] .. ':meta' then
  return redis.error_reply('ERR handoff: the entry is for ' .. g[2] .. ', not ' .. KEYS[1])
end
return handoff_write(g, now_ms())
