--[[ finish_fetch: record outcomes (finish.lua) then lease up to N jobs (fetch.lua) in one
call, the worker's steady-state path (as BullMQ's moveToFinished fetches the next job).
`finish` and `fetch` are those two scripts, each body made a function of its own KEYS and ARGV
(cortexflow/engine/scripts.py composes them; the files are not changed by it).
KEYS[1 .. 10] finish's keys, KEYS[11 .. 19] fetch's keys (all of one queue: one hash slot)
ARGV[1] M, the number of finish arguments; ARGV[2 .. M+1] finish's; the rest fetch's.
Returns {finish reply, fetch reply}. An error of finish (a bad argument, a malformed job; it
checks everything before its first write) is the call's error: nothing written, nothing
leased. An error of fetch (it too checks before writing) comes back as the second element,
after the outcomes were written. ]]
local m = tonumber(ARGV[1])
if not m or m < 0 or #KEYS ~= 19 or #ARGV < m + 1 then
  return redis.error_reply('ERR finish_fetch: bad arguments')
end
local finish_keys, fetch_keys, finish_args, fetch_args = {}, {}, {}, {}
for i = 1, 10 do finish_keys[i] = KEYS[i] end
for i = 11, 19 do fetch_keys[i - 10] = KEYS[i] end
for i = 2, m + 1 do finish_args[i - 1] = ARGV[i] end
for i = m + 2, #ARGV do fetch_args[i - m - 1] = ARGV[i] end
local done = finish(finish_keys, finish_args)
if done.err then return done end
return {done, fetch(fetch_keys, fetch_args)}
