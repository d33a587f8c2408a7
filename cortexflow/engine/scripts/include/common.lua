--[[ common: functions shared by scripts, pasted in where a script says `--@include common`
(cortexflow/engine/scripts.py). Defines no keys or arguments of its own. ]]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Wake an idle worker (it blocks on the queue's marker list): push a token unless one is
-- there already, so the list holds one at most.
local function wake(marker)
  if redis.call('LLEN', marker) == 0 then redis.call('RPUSH', marker, '1') end
end

-- A job's waiting score as stored at add, or the lowest priority's if the hash lost it.
local function score_of(jkey)
  local s = tonumber(redis.call('HGET', jkey, 'score'))
  if s then return string.format('%.0f', s) end
  return string.format('%.0f', 1000000 * 4294967296)
end

-- Delete jobs (hash and log list), one DEL for all of them.
local function remove_jobs(prefix, ids)
  local keys = {}
  for _, id in ipairs(ids) do
    keys[#keys + 1] = prefix .. id
    keys[#keys + 1] = prefix .. id .. ':logs'
  end
  redis.call('DEL', unpack(keys))
end

local function remove_job(prefix, id)
  remove_jobs(prefix, {id})
end

-- Retention of one finished set: delete jobs beyond the newest `count` and older than `age`
-- (ms), at most 500 of each per call (-1: no limit on that axis).
local function trim(prefix, key, age, count, now)
  if count >= 0 then
    local excess = redis.call('ZCARD', key) - count
    if excess > 0 then
      local old = redis.call('ZRANGE', key, 0, math.min(excess, 500) - 1)
      remove_jobs(prefix, old)
      redis.call('ZREM', key, unpack(old))
    end
  end
  if age >= 0 then
    local old = redis.call('ZRANGEBYSCORE', key, '-inf', now - age, 'LIMIT', 0, 500)
    if #old > 0 then
      remove_jobs(prefix, old)
      redis.call('ZREM', key, unpack(old))
    end
  end
end

-- A finished job joins its set (or is removed): keep -1 follows the queue's retention,
-- 0 removes it now, N > 0 keeps the newest N of that set.
local function finished(prefix, id, set, keep, age, count, now)
  if keep == 0 then
    remove_job(prefix, id)
    return
  end
  redis.call('ZADD', set, now, id)
  if keep > 0 then count = keep end
  trim(prefix, set, age, count, now)
end

-- The dead-letter outbox entry of a job failing for good (read before any write), and the
-- number of this dead letter among the job's (1 for its first; a job retried by an operator
-- that fails again makes a second one). `data` is inlined as stored (JSON).
local function dead_letter_entry(jkey, id, err, stacktrace, made)
  local f = redis.call('HMGET', jkey, 'name', 'data', 'dead_letters')
  local n = (tonumber(f[3]) or 0) + 1
  local entry = '{"id":' .. cjson.encode(id) .. ',"letter":' .. n .. ',"name":' ..
    cjson.encode(f[1] or '') .. ',"data":' .. (f[2] or 'null') .. ',"error":' ..
    cjson.encode(err) .. ',"stacktrace":' .. cjson.encode(stacktrace) .. ',"attemptsMade":' ..
    made .. '}'
  return entry, n
end
