--[[ add: put one or more jobs on a queue, atomically (all or none).
KEYS[1] wait      ZSET id -> (1e6 - priority) * 2^32 + seq
KEYS[2] delayed   ZSET id -> due time (ms)
KEYS[3] meta      HASH (seq counter)
KEYS[4] marker    LIST wake-up tokens for idle workers
KEYS[5] events    STREAM of state changes (an 'added' entry per job added)
ARGV[1] job key prefix ("{p:q}:j:")
ARGV[2] number of jobs N
ARGV[3 + 7i ..] per job: id, name, data (JSON), opts (JSON of the job's own options, '' for
  none), priority, delay (ms), group ('' for none: the job waits in the wait set; else it waits
  in its group's, include/groups.lua)
Returns the number of jobs added: a job whose id still exists is left as it is.
Every argument is checked before the first write (the caller validated them too), so a bulk
add is all or none. ]]
--@include common
--@include new_job
--@include events
--@include groups
local now = now_ms()
local prefix = ARGV[1]
local n = tonumber(ARGV[2])
if not n or #ARGV ~= 2 + n * 7 then return redis.error_reply('ERR add: bad argument count') end
for i = 0, n - 1 do
  local b = 3 + i * 7
  if ARGV[b] == '' or not tonumber(ARGV[b + 4]) or not tonumber(ARGV[b + 5]) then
    return redis.error_reply('ERR add: job ' .. (i + 1) .. ' has an empty id or a bad number')
  end
end
local added = 0
for i = 0, n - 1 do
  local b = 3 + i * 7
  local id = ARGV[b]
  local jkey = prefix .. id
  if redis.call('EXISTS', jkey) == 0 then
    local priority = tonumber(ARGV[b + 4])
    local delay = tonumber(ARGV[b + 5])
    local score = waiting_score(KEYS[3], priority)
    local state = 'waiting'
    if delay > 0 then
      state = 'delayed'
      redis.call('ZADD', KEYS[2], string.format('%.0f', now + delay), id)
    end
    local g = ARGV[b + 6]
    write_new_job(jkey, ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], priority, delay, state, now, score,
      g)
    if g ~= '' then
      if delay <= 0 then group_enqueue(prefix, g, id, score) end
    elseif delay <= 0 then
      redis.call('ZADD', KEYS[1], score, id)
    end
    add_event(KEYS[5], 'e', 'added', 'id', id, 'name', ARGV[b + 1], 'state', state)
    added = added + 1
  end
end
if added > 0 then wake(KEYS[4]) end
return added
