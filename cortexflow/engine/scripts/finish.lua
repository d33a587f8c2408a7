--[[ finish: record the outcome of runs a worker finished (a batch, one round trip).
KEYS[1] active  KEYS[2] wait  KEYS[3] delayed  KEYS[4] completed  KEYS[5] failed
KEYS[6] meta    KEYS[7] marker  KEYS[8] dead-letter outbox
KEYS[9] events (STREAM: completed / retried / failed entries)
KEYS[10] metrics: HASHes <KEYS[10]>:<epoch minute> (expire after 25 h) and <KEYS[10]>:total
  with fields c, r, f (runs completed / retried / failed for good), and per d (run duration)
  and w (wait: enqueue or due time -> start, ms): <x>s sum, <x>1..<x>15 bucket counts
  (bounds in engine/history.py)
ARGV[1] job key prefix
ARGV[2] completed retention: age (ms, -1 none)   ARGV[3] count (-1 none)
ARGV[4] failed retention: age (ms, -1 none)      ARGV[5] count (-1 none)
ARGV[6 ..] one per run, a JSON array text [kind, id, token, payload, extra]:
  kind 'c' completed: payload = result JSON; extra = keep: '1' keep, '0' remove now, or a
         count N to trim completed jobs to
  kind 'r' failed, retried: payload = error JSON {message, stacktrace}; extra = delay (ms)
  kind 'f' failed for good: payload = error JSON; extra = keep as for 'c', or for dead
         letters a JSON envelope after a '|' ("keep|envelope")
Returns {done, lost, dead}: runs recorded, runs whose lease this worker had lost (nothing
written for those: another worker owns the job now), jobs pushed to the dead-letter outbox. ]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[1]

local function remove_job(id)
  redis.call('DEL', prefix .. id, prefix .. id .. ':logs')
end

local function trim(key, age, count)
  if count >= 0 then
    local excess = redis.call('ZCARD', key) - count
    if excess > 0 then
      local old = redis.call('ZRANGE', key, 0, math.min(excess, 1000) - 1)
      for _, id in ipairs(old) do remove_job(id) end
      redis.call('ZREM', key, unpack(old))
    end
  end
  if age >= 0 then
    local old = redis.call('ZRANGEBYSCORE', key, '-inf', now - age, 'LIMIT', 0, 1000)
    if #old > 0 then
      for _, id in ipairs(old) do remove_job(id) end
      redis.call('ZREM', key, unpack(old))
    end
  end
end

-- keep: '1' keep (queue retention applies), '0' remove now, 'N' keep the newest N.
local function finished(id, set, keep, age, count)
  if keep == '0' then
    remove_job(id)
    return
  end
  redis.call('ZADD', set, now, id)
  if keep ~= '1' then count = tonumber(keep) end
  trim(set, age, count)
end

-- Metrics of this batch, written once after the loop.
local BOUNDS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000}
local m = {}
local function observe(jkey, kind)
  m[kind] = (m[kind] or 0) + 1
  local f = redis.call('HMGET', jkey, 'processed_at', 'created_at', 'delay')
  local start = tonumber(f[1])
  if not start then return end
  local spans = {d = now - start, w = math.max(start - tonumber(f[2]) - tonumber(f[3]), 0)}
  for x, ms in pairs(spans) do
    local b = #BOUNDS + 1
    for i, bound in ipairs(BOUNDS) do if ms <= bound then b = i break end end
    m[x .. b] = (m[x .. b] or 0) + 1
    m[x .. 's'] = (m[x .. 's'] or 0) + ms
  end
end

local EVENT = {c = 'completed', r = 'retried', f = 'failed'}
local done, lost, dead, wake = 0, 0, 0, false
for i = 6, #ARGV do
  local run = cjson.decode(ARGV[i])
  local kind, id, token, payload, extra = run[1], run[2], run[3], run[4], run[5]
  local jkey = prefix .. id
  if redis.call('HGET', jkey, 'token') ~= token or not redis.call('ZSCORE', KEYS[1], id) then
    lost = lost + 1
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('HINCRBY', jkey, 'attempts_made', 1)
    done = done + 1
    observe(jkey, kind)
    redis.call('XADD', KEYS[9], 'MAXLEN', '~', 5000, '*', 'e', EVENT[kind], 'id', id)
    if kind == 'c' then
      redis.call('HINCRBY', KEYS[6], 'completed_total', 1)
      redis.call('HSET', jkey, 'state', 'completed', 'finished_at', now, 'token', '',
        'result', payload)
      finished(id, KEYS[4], extra, tonumber(ARGV[2]), tonumber(ARGV[3]))
    else
      local err = cjson.decode(payload)
      redis.call('HSET', jkey, 'error', err.message, 'stacktrace', err.stacktrace or '',
        'token', '')
      if kind == 'r' then
        local delay = tonumber(extra)
        if delay > 0 then
          redis.call('HSET', jkey, 'state', 'delayed')
          redis.call('ZADD', KEYS[3], string.format('%.0f', now + delay), id)
        else
          redis.call('HSET', jkey, 'state', 'waiting')
          redis.call('ZADD', KEYS[2], redis.call('HGET', jkey, 'score'), id)
        end
        wake = true
      else
        redis.call('HINCRBY', KEYS[6], 'failed_total', 1)
        redis.call('HSET', jkey, 'state', 'failed', 'finished_at', now)
        local keep, envelope = string.match(extra, '^([^|]*)|(.*)$')
        if not keep then keep = extra end
        if envelope and envelope ~= '' then
          redis.call('RPUSH', KEYS[8], envelope)
          dead = dead + 1
        end
        finished(id, KEYS[5], keep, tonumber(ARGV[4]), tonumber(ARGV[5]))
      end
    end
  end
end
if next(m) then
  local minute = KEYS[10] .. ':' .. math.floor(now / 60000)
  for field, v in pairs(m) do
    redis.call('HINCRBY', minute, field, v)
    redis.call('HINCRBY', KEYS[10] .. ':total', field, v)
  end
  redis.call('PEXPIRE', minute, 90000000)
end
if wake and redis.call('LLEN', KEYS[7]) == 0 then
  redis.call('RPUSH', KEYS[7], '1')
end
return {done, lost, dead}
