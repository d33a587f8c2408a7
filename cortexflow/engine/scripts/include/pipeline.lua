--[[ pipeline: the hand-offs of `next:` routes and the joins of fan-outs (docs/pipelines.md).
Defines no keys or arguments of its own; every key is named from a queue's base "{p:q}".

A hand-off group (cortexflow/engine/routes.py encode_handoffs writes it):
  [mode, target base, parent JSON, [[id, name, data, priority, delay_ms, group?], ...], join or 0
   (, failed error, dead-letter 0|1: a join job added failed, in the outbox)]
  mode 'd': written into the target queue by this call; 'o': pushed to `outbox` (a Cluster:
  the target is another slot; the copier runs the handoff script there). join:
  [join id, join target base, join name, 'f' (fail at the first failed child) | 'c', priority,
  1 when the join's queue has a dead-letter queue (a join failed by a child goes there)].
A join record, in the children's queue: HASH <base>:join:<join id> (total, ended, completed,
failed, removed, bytes, to, name, policy, prio, parent, mode, dlq), with LISTs <record>:r (the
children's outcomes, JSON, up to JOIN_RESULT_BYTES) and <record>:o (ids past that). Once
fired it is kept for JOIN_TOMBSTONE_MS as {fired=1}: a repeated copy opens it no second time. ]]
--@include common
--@include new_job
--@include events
--@include groups
local JOIN_RESULT_BYTES = 262144
local JOIN_TOMBSTONE_MS = 7 * 86400000
local woken = {}  -- queues whose idle workers this call woke already (one token is enough)

local function wake_once(base)
  if not woken[base] then
    woken[base] = true
    wake(base .. ':marker')
  end
end

-- Nil when `groups` (a decoded argument) is well formed, else what is wrong with it.
local function handoffs_bad(groups)
  if type(groups) ~= 'table' then return 'hand-offs are not a list' end
  for _, g in ipairs(groups) do
    if type(g) ~= 'table' or (g[1] ~= 'd' and g[1] ~= 'o') or type(g[2]) ~= 'string'
        or type(g[3]) ~= 'string' or type(g[4]) ~= 'table' then
      return 'a hand-off group is not [mode, base, parent, jobs, join]'
    end
    for _, j in ipairs(g[4]) do
      if type(j) ~= 'table' or type(j[1]) ~= 'string' or j[1] == '' or type(j[2]) ~= 'string'
          or type(j[3]) ~= 'string' or type(j[4]) ~= 'number' or type(j[5]) ~= 'number'
          or (j[6] ~= nil and type(j[6]) ~= 'string') then
        return 'a hand-off job is not [id, name, data, priority, delay_ms]'
      end
    end
    local join = g[5]
    if join ~= 0 and (type(join) ~= 'table' or type(join[1]) ~= 'string'
        or type(join[2]) ~= 'string' or type(join[3]) ~= 'string'
        or type(join[5]) ~= 'number') then
      return 'a hand-off join is not [id, base, name, policy, priority]'
    end
  end
  return nil
end

-- Add one job to the queue of `base` unless its id exists; true if added. `failed_error`:
-- add it failed for good with that error (a join failed by a child), never run, and with
-- `dead` == 1 put it in the queue's dead-letter outbox too. `join`: the join (id) of the
-- fan-out it is a child of.
-- The key names of a queue this call writes to, built once per queue (a batch of hand-offs
-- to one queue would build them once per job).
local queue_keys = {}
local function keys_of(base)
  local k = queue_keys[base]
  if not k then
    k = {jobs = base .. ':j:', meta = base .. ':meta', wait = base .. ':wait',
      delayed = base .. ':delayed', events = base .. ':events'}
    queue_keys[base] = k
  end
  return k
end

local function put_job(base, j, parent, now, failed_error, join, dead)
  local id, k = j[1], keys_of(base)
  local jkey = k.jobs .. id
  if redis.call('EXISTS', jkey) == 1 then return false end
  local priority, delay = j[4], j[5]
  local group = j[6] or ''  -- the target queue's group of the job ('' for none)
  local score = waiting_score(k.meta, priority)
  local state = 'waiting'
  if failed_error then
    state = 'failed'
  elseif delay > 0 then
    state = 'delayed'
    redis.call('ZADD', k.delayed, string.format('%.0f', now + delay), id)
  elseif group ~= '' then
    group_enqueue(k.jobs, group, id, score)
  else
    redis.call('ZADD', k.wait, score, id)
  end
  local more = {'parent', parent}
  if join then more[3] = 'join'; more[4] = join end
  write_new_job(jkey, j[2], j[3], '', priority, delay, state, now, score, group, more)
  add_event(k.events, 'e', 'added', 'id', id, 'name', j[2], 'state', state)
  if failed_error then
    redis.call('HSET', jkey, 'finished_at', now, 'error', failed_error)
    redis.call('ZADD', base .. ':failed', now, id)
    redis.call('HINCRBY', k.meta, 'failed_total', 1)
    add_event(k.events, 'e', 'failed', 'id', id)
    if dead == 1 then
      local entry, letter = dead_letter_entry(jkey, id, failed_error, '', 0)
      redis.call('HSET', jkey, 'dead_letters', letter)
      redis.call('RPUSH', base .. ':dlq', entry)
    end
  end
  return true
end

local fire_join

-- Write a hand-off group into its target queue (the finish call on one server, or the
-- handoff script on the target's slot). Returns the number of jobs added.
local function handoff_write(g, now)
  local base, parent, join = g[2], g[3], g[5]
  local added = 0
  local rkey, fresh
  if join ~= 0 then
    rkey = base .. ':join:' .. join[1]
    fresh = redis.call('EXISTS', rkey) == 0  -- a repeated copy opens the join no second time
  end
  for _, j in ipairs(g[4]) do
    if put_job(base, j, parent, now, g[6], fresh and join[1] or nil, g[7]) then
      added = added + 1
    end
  end
  if added > 0 then wake_once(base) end
  if fresh then
    redis.call('HSET', rkey, 'total', added, 'ended', 0, 'completed', 0, 'failed', 0,
      'removed', 0, 'bytes', 0, 'to', join[2], 'name', join[3], 'policy', join[4],
      'prio', join[5], 'parent', parent, 'mode', g[1], 'dlq', join[6] or 0)
    if added == 0 then fire_join(base, join[1], rkey, now, nil) end
  end
  return added
end

-- Send a group to its target: written now ('d') or pushed to the outbox ('o').
local function handoff(g, now, outbox)
  if g[1] == 'd' then return handoff_write(g, now) end
  redis.call('RPUSH', outbox, cjson.encode(g))
  return 0
end

-- Add the join job of record `rkey` (in the children's queue `base`) and keep a tombstone.
fire_join = function(base, join_id, rkey, now, failed_error)
  local r = redis.call('HMGET', rkey, 'total', 'completed', 'failed', 'removed', 'to', 'name',
    'prio', 'parent', 'mode', 'dlq')
  local dead = tonumber(r[10]) or 0
  local results = redis.call('LRANGE', rkey .. ':r', 0, -1)
  local omitted = redis.call('LRANGE', rkey .. ':o', 0, -1)
  local data = '{"parent":' .. r[8] .. ',"total":' .. r[1] .. ',"completed":' .. r[2] ..
    ',"failed":' .. r[3] .. ',"removed":' .. r[4] .. ',"results":[' ..
    table.concat(results, ',') .. '],"omitted":' ..
    (#omitted > 0 and cjson.encode(omitted) or '[]') .. '}'
  local job = {join_id, r[6], data, tonumber(r[7]) or 0, 0}
  local parent = r[8]
  if r[9] == 'o' then
    local g = {'o', r[5], parent, {job}, 0}
    if failed_error then g[6] = failed_error; g[7] = dead end
    redis.call('RPUSH', base .. ':next', cjson.encode(g))
  elseif put_job(r[5], job, parent, now, failed_error, nil, dead) and not failed_error then
    wake_once(r[5])
  end
  redis.call('DEL', rkey, rkey .. ':r', rkey .. ':o')
  redis.call('HSET', rkey, 'fired', 1)
  redis.call('PEXPIRE', rkey, JOIN_TOMBSTONE_MS)
end

-- A child of a join ended (state: completed, failed, removed; text: its result JSON or its
-- error). `join` is its hash's join field, read before the caller's writes. Counted once.
local function join_ended(prefix, id, join, state, text, now)
  local jkey = prefix .. id
  if redis.call('HSETNX', jkey, 'joined', 1) == 0 then return end
  local base = string.sub(prefix, 1, #prefix - 3)
  local rkey = base .. ':join:' .. join
  local r = redis.call('HMGET', rkey, 'total', 'ended', 'bytes', 'policy', 'fired')
  if not r[1] or r[5] then return end
  local entry = '{"id":' .. cjson.encode(id) .. ',"state":"' .. state .. '"'
  if state == 'completed' then
    entry = entry .. ',"result":' .. text .. '}'
  else
    entry = entry .. ',"error":' .. cjson.encode(text) .. '}'
  end
  if (tonumber(r[3]) or 0) + #entry <= JOIN_RESULT_BYTES then
    redis.call('RPUSH', rkey .. ':r', entry)
    redis.call('HINCRBY', rkey, 'bytes', #entry)
  else
    redis.call('RPUSH', rkey .. ':o', id)
  end
  redis.call('HINCRBY', rkey, state, 1)
  local ended = redis.call('HINCRBY', rkey, 'ended', 1)
  if state ~= 'completed' and r[4] == 'f' then
    fire_join(base, join, rkey, now, 'child ' .. id .. ' ' .. state .. ': ' .. text)
  elseif ended >= (tonumber(r[1]) or 0) then
    fire_join(base, join, rkey, now, nil)
  end
end

-- Jobs an operator removes wholesale (drain, clean, obliterate), read before their hashes are
-- deleted: each child of a join among them is counted as removed, so its join still fires.
local function joins_removed(prefix, ids, why)
  local now = nil
  for _, id in ipairs(ids) do
    local join = redis.call('HGET', prefix .. id, 'join')
    if join then
      now = now or now_ms()
      join_ended(prefix, id, join, 'removed', why, now)
    end
  end
end

-- A finished run's HSET of `...`, with its `children` (the ids its hand-offs added, from the
-- outcome) when it has some: one command either way, and no table for a plain run.
local function hset_finished(jkey, run, ...)
  local children = run[11]
  if type(children) == 'string' and children ~= '' then
    return redis.call('HSET', jkey, 'children', children, ...)
  end
  return redis.call('HSET', jkey, ...)
end

-- finish's hook, after a completed or failed-for-good run was written: its hand-offs, its
-- `children` field, and its end counted toward its join. Returns the groups sent to the outbox.
local function pipeline_finished(prefix, run, join, now)
  local id, sent = run[2], 0
  if run[10] then
    local outbox = string.sub(prefix, 1, #prefix - 3) .. ':next'
    for _, g in ipairs(run[10]) do
      handoff(g, now, outbox)
      if g[1] == 'o' then sent = sent + 1 end
    end
  end
  if join then
    if run[1] == 'c' then
      join_ended(prefix, id, join, 'completed', run[4], now)
    else
      join_ended(prefix, id, join, 'failed', run[5], now)
    end
  end
  return sent
end
