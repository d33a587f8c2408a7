--[[ groups: the bookkeeping of job groups (docs/groups.md), for the scripts that move a job of
a group. A job belongs to a group when its hash has a `group` field; the keys of a queue's
groups are named from the job key prefix "{p:q}:j:" (base "{p:q}:"), so they share its slot:
  <base>groups    ZSET the rotation: groups that may start a job now, score
                  (1e6 - priority of the group's first job) * 2^32 + turn (the queue's seq)
  <base>gw:<g>    ZSET group g's waiting jobs, scored as the queue's wait set
  <base>gwaiting  ZSET g -> how many jobs wait in g (every group with waiting jobs)
  <base>ga:<g>    SET  g's jobs active now (a member whose job no longer runs, left by a
                  client without this bookkeeping, is dropped when g is at its concurrency)
  <base>gpaused   SET  paused groups
  <base>gsleep    ZSET g -> server ms until which g starts nothing (its rate window is full,
                  or, with order strict, its failed job waits for its retry)
  <base>gl:<g>    ZSET start times inside g's rate window (expires with it)
  <base>meta      fields gwait (jobs waiting in groups), gconc, gstrict (the group settings
                  the workers' fetch last passed)
Defines no keys or arguments of its own. ]]
--@include common
local TIER = 4294967296

local function gbase(prefix)
  return string.sub(prefix, 1, -3)
end

-- What one script call reads once: meta's gconc, and whether any group is paused or asleep
-- (most calls then skip those two lookups per group).
local gcache = {}
local function gknown(b, name, read)
  local v = gcache[name]
  if v == nil then
    v = read()
    gcache[name] = v
  end
  return v
end
local function any_paused(b)
  return gknown(b, 'paused', function() return redis.call('EXISTS', b .. 'gpaused') == 1 end)
end
local function any_asleep(b)
  return gknown(b, 'asleep', function() return redis.call('EXISTS', b .. 'gsleep') == 1 end)
end

-- True when group g runs `conc` jobs already, and how many it runs. At its cap, members whose
-- job no longer runs in g are dropped first (O(conc)), so none can hold a group shut for good.
local function group_busy(prefix, g, conc)
  local b = gbase(prefix)
  local ak = b .. 'ga:' .. g
  local running = redis.call('SCARD', ak)
  if running < conc then return false, running end
  for _, id in ipairs(redis.call('SMEMBERS', ak)) do
    if not redis.call('ZSCORE', b .. 'active', id) or redis.call('HGET', prefix .. id, 'group') ~= g then
      redis.call('SREM', ak, id)
    end
  end
  running = redis.call('SCARD', ak)
  return running >= conc, running
end

-- Offer group g to the rotation. It joins at the back (a fresh turn) unless it is there already
-- (then a higher-priority first job moves it up, keeping its turn), or paused, asleep, at its
-- concurrency (`conc`, else meta's gconc), or without waiting jobs.
local function group_offer(prefix, g, conc)
  local b = gbase(prefix)
  local head = redis.call('ZRANGE', b .. 'gw:' .. g, 0, 0, 'WITHSCORES')
  if not head[2] then return end
  local tier = math.floor(tonumber(head[2]) / TIER)
  local cur = tonumber(redis.call('ZSCORE', b .. 'groups', g))
  if cur then
    if math.floor(cur / TIER) > tier then
      redis.call('ZADD', b .. 'groups', string.format('%.0f', tier * TIER + cur % TIER), g)
    end
    return
  end
  if (any_paused(b) and redis.call('SISMEMBER', b .. 'gpaused', g) == 1)
      or (any_asleep(b) and redis.call('ZSCORE', b .. 'gsleep', g)) then
    return
  end
  conc = conc or gknown(b, 'conc', function()
    return tonumber(redis.call('HGET', b .. 'meta', 'gconc')) or 1
  end)
  if group_busy(prefix, g, conc) then return end
  local turn = redis.call('HINCRBY', b .. 'meta', 'seq', 1) % TIER
  redis.call('ZADD', b .. 'groups', string.format('%.0f', tier * TIER + turn), g)
end

-- Group g's waiting set changed by `delta` jobs: keep gwaiting and meta's gwait in step.
local function group_count(prefix, g, delta)
  local b = gbase(prefix)
  if delta == 0 or tonumber(redis.call('ZINCRBY', b .. 'gwaiting', delta, g)) <= 0 then
    local n = redis.call('ZCARD', b .. 'gw:' .. g)
    if n > 0 then redis.call('ZADD', b .. 'gwaiting', n, g) else redis.call('ZREM', b .. 'gwaiting', g) end
  end
  if delta ~= 0 then redis.call('HINCRBY', b .. 'meta', 'gwait', delta) end
end

-- Job `id` of group g waits (an add, a due delay, a stall, a release, a retry), at `score`.
local function group_enqueue(prefix, g, id, score)
  local added = redis.call('ZADD', gbase(prefix) .. 'gw:' .. g, score, id)
  group_count(prefix, g, added)
  group_offer(prefix, g)
end

-- Job `id` of group g left the active set (finished, retried, stalled, released, not leased).
local function group_left(prefix, g, id)
  redis.call('SREM', gbase(prefix) .. 'ga:' .. g, id)
  group_offer(prefix, g)
end

-- Group g starts nothing until `due` (ms): a later time already set wins.
local function group_sleep(prefix, g, due)
  local b = gbase(prefix)
  redis.call('ZADD', b .. 'gsleep', 'GT', string.format('%.0f', due), g)
  gcache.asleep = true
  redis.call('ZREM', b .. 'groups', g)
end

-- Groups whose sleep is over rejoin the rotation (at most 500 per call).
local function group_wake(prefix, now)
  local b = gbase(prefix)
  local due = redis.call('ZRANGEBYSCORE', b .. 'gsleep', '-inf', now, 'LIMIT', 0, 500)
  if #due == 0 then return end
  redis.call('ZREM', b .. 'gsleep', unpack(due))
  for _, g in ipairs(due) do group_offer(prefix, g) end
end

-- Fetch takes the first job of group g, just removed from the rotation: nil when g may not
-- start one now (paused, at its concurrency `conc`, its rate window of `rwin` ms holding
-- `rmax` starts already): it stays out of the rotation until that changes. Also returns how
-- many jobs of g run now, the one taken included.
local function group_take(prefix, g, now, conc, rmax, rwin)
  local b = gbase(prefix)
  if any_paused(b) and redis.call('SISMEMBER', b .. 'gpaused', g) == 1 then return nil end
  local busy, running = group_busy(prefix, g, conc)
  if busy then return nil end
  if rmax > 0 then
    local lk = b .. 'gl:' .. g
    redis.call('ZREMRANGEBYSCORE', lk, '-inf', now - rwin)
    if redis.call('ZCARD', lk) >= rmax then
      local oldest = redis.call('ZRANGE', lk, 0, 0, 'WITHSCORES')
      group_sleep(prefix, g, tonumber(oldest[2]) + rwin)
      return nil
    end
  end
  local popped = redis.call('ZPOPMIN', b .. 'gw:' .. g)
  if not popped[1] then
    group_count(prefix, g, 0)
    return nil
  end
  group_count(prefix, g, -1)
  redis.call('SADD', b .. 'ga:' .. g, popped[1])
  return popped[1], running + 1
end

-- A job of group g started (after group_take): count it in g's rate window, and give g its
-- next turn if it may start more (at its cap, the end of a job it runs gives it that turn).
local function group_started(prefix, g, member, now, running, conc, rmax, rwin)
  if rmax > 0 then
    local lk = gbase(prefix) .. 'gl:' .. g
    redis.call('ZADD', lk, now, member)
    redis.call('PEXPIRE', lk, rwin + 1000)
  end
  if running < conc then group_offer(prefix, g, conc) end
end

-- A failed job of group g retries after `delay` ms. With order strict (meta's gstrict) it holds
-- its group: it waits at its place in g, and g starts nothing until the retry is due; relaxed,
-- it waits in the delayed set and the group's later jobs may pass it.
local function group_retry(prefix, meta, g, id, score, delay, now)
  local jkey = prefix .. id
  if delay > 0 and redis.call('HGET', meta, 'gstrict') ~= '0' then
    redis.call('HSET', jkey, 'state', 'delayed')
    group_sleep(prefix, g, now + delay)
    group_enqueue(prefix, g, id, score)
  elseif delay > 0 then
    redis.call('HSET', jkey, 'state', 'delayed')
    redis.call('ZADD', gbase(prefix) .. 'delayed', string.format('%.0f', now + delay), id)
  else
    redis.call('HSET', jkey, 'state', 'waiting')
    group_enqueue(prefix, g, id, score)
  end
  group_left(prefix, g, id)
end
