--[[ finish_fetch: record outcomes (finish.lua) then lease up to N jobs (fetch.lua) in one
call, the worker's steady-state path (as BullMQ's moveToFinished fetches the next job).
`finish` and `fetch` are the bodies of those two scripts (include/finish.lua, include/fetch.lua),
each a function of its own KEYS and ARGV, run here one after the other.
KEYS[1] the queue's meta key, "{prefix:queue}:meta": the other keys of the queue are named
from it here (as cortexflow/engine/keys.py names them; tests/engine/test_finish_fetch.py checks
that the two agree), so the hot path sends one key, not nineteen. They share its hash slot.
ARGV[1] M, the number of finish arguments; ARGV[2 .. M+1] finish's; the rest fetch's.
Returns {finish reply, fetch reply}. An error of finish (a bad argument, a malformed job; it
checks everything before its first write) is the call's error: nothing written, nothing
leased. An error of fetch (it too checks before writing) comes back as the second element,
after the outcomes were written. A wake-up token left by finish (or an add) survives a fetch
that leases nothing. ]]
--@include finish
--@include fetch
local m = tonumber(ARGV[1])
local meta = KEYS[1]
if not m or m < 0 or #ARGV < m + 1 or #KEYS ~= 1 or string.sub(meta, -5) ~= ':meta' then
  return redis.error_reply('ERR finish_fetch: bad arguments')
end
local base = string.sub(meta, 1, #meta - 4)
local function k(name) return base .. name end
local finish_keys = {k('active'), k('wait'), k('delayed'), k('completed'), k('failed'), meta,
  k('marker'), k('dlq'), k('events'), k('metrics')}
local fetch_keys = {k('wait'), k('delayed'), k('active'), meta, k('limiter'), k('marker'),
  k('failed'), k('dlq'), k('events')}
local finish_args, fetch_args = {}, {}
for i = 2, m + 1 do finish_args[i - 1] = ARGV[i] end
for i = m + 2, #ARGV do fetch_args[i - m - 1] = ARGV[i] end
local done = finish(finish_keys, finish_args)
if done.err then return done end
-- A wake-up token the finish part pushed (a retry is waiting or delayed) must reach an idle
-- worker; the fetch part, leasing nothing, deletes stale tokens. In a pipeline of the two
-- scripts a blocked BLPOP was served between them; here the token is put back.
local woke = redis.call('LLEN', finish_keys[7]) > 0
local got = fetch(fetch_keys, fetch_args)
if woke and #got == 2 then wake(finish_keys[7]) end
return {done, got}
