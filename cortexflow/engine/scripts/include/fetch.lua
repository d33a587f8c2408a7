--[[ fetch(KEYS, ARGV): the body of fetch.lua (its header gives the keys, arguments and
reply), a function of its own KEYS and ARGV so that finish_fetch.lua runs it too. ]]
--@include common
--@include events
--@include lease_clock
--@include pipeline
--@include groups
local function fetch(KEYS, ARGV)
  local prefix = ARGV[1]
  local n = tonumber(ARGV[2])
  local lease = tonumber(ARGV[4])
  local max_stalls = tonumber(ARGV[5])
  local rate_max = tonumber(ARGV[6])
  local rate_window = tonumber(ARGV[7])
  local failed_age = tonumber(ARGV[9])
  local failed_count = tonumber(ARGV[10])
  if not (n and lease and max_stalls and rate_max and rate_window and failed_age and failed_count)
      or ARGV[3] == nil or ARGV[3] == '' then
    return redis.error_reply('ERR fetch: bad arguments')
  end
  local now = now_ms()
  -- Groups (ARGV[13..16]): a queue without `group:` passes concurrency 0 and pays one EXISTS,
  -- which still serves grouped jobs left by an earlier `group:` (at concurrency 1).
  local gconc = tonumber(ARGV[13] or '0') or 0
  if gconc == 0 and redis.call('EXISTS', gbase(prefix) .. 'gwaiting') == 1 then gconc = 1 end
  local grmax, grwin = tonumber(ARGV[14] or '0') or 0, tonumber(ARGV[15] or '0') or 0
  local paused, gm
  if gconc > 0 then
    gm = redis.call('HMGET', KEYS[4], 'paused', 'gconc', 'gstrict')
    paused = gm[1]
    local strict = ARGV[16] == 'strict' and '1' or '0'
    if tonumber(gm[2]) ~= gconc then redis.call('HSET', KEYS[4], 'gconc', gconc) end
    gcache.conc = gconc
    if gm[3] ~= strict then redis.call('HSET', KEYS[4], 'gstrict', strict) end
    group_wake(prefix, now)
  end

  -- 1. Delayed jobs whose time has come become waiting, at their priority.
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 500)
  for _, id in ipairs(due) do
    local jkey = prefix .. id
    if redis.call('EXISTS', jkey) == 1 then
      local score = score_of(jkey)
      local g = redis.call('HGET', jkey, 'group')
      if g then group_enqueue(prefix, g, id, score) else redis.call('ZADD', KEYS[1], score, id) end
      redis.call('HSET', jkey, 'state', 'waiting')
    end
    redis.call('ZREM', KEYS[2], id)
  end

  -- 2. Active jobs whose lease ran out (their worker died) go back to waiting, or fail
  --    once they have been recovered max_stalls times; none while the lease clock settles
  --    after a stall of the server (include/lease_clock.lua).
  local stalled_failed = 0
  local settle = settling_until(KEYS[4], now, lease)
  local expired = {}
  if not settle then
    expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 500)
  end
  for _, id in ipairs(expired) do
    local jkey = prefix .. id
    local f = redis.call('HMGET', jkey, 'stalls', 'opts', 'attempts_made', 'state', 'join',
      'group')
    if f[4] or f[2] then
      local stalls = (tonumber(f[1]) or 0) + 1
      if stalls > max_stalls then
        local err = 'job stalled ' .. stalls .. ' times (max_stalls ' .. max_stalls ..
          '): its worker stopped renewing the lease (killed, out of memory or blocked)'
        local keep = -1
        if ARGV[11] ~= '1' then
          keep = 0
        else
          local ok, opts = pcall(cjson.decode, f[2] or '')
          if ok and type(opts) == 'table' then
            local r = opts.remove_on_fail
            if r == true then keep = 0 elseif type(r) == 'number' and r >= 0 then keep = r end
          end
        end
        local entry, letter
        if ARGV[8] == '1' then
          entry, letter = dead_letter_entry(jkey, id, err, '', tonumber(f[3]) or 0)
        end
        redis.call('ZREM', KEYS[3], id)
        redis.call('HSET', jkey, 'state', 'failed', 'finished_at', now, 'token', '',
          'stalls', stalls, 'error', err, 'stacktrace', '')
        redis.call('HINCRBY', KEYS[4], 'failed_total', 1)
        if f[5] then join_ended(prefix, id, f[5], 'failed', err, now) end
        if entry then
          redis.call('HSET', jkey, 'dead_letters', letter)
          redis.call('RPUSH', KEYS[8], entry)
        end
        finished(prefix, id, KEYS[7], keep, failed_age, failed_count, now)
        if f[6] then group_left(prefix, f[6], id) end
        stalled_failed = stalled_failed + 1
        add_event(KEYS[9], 'e', 'failed', 'id', id, 'error', 'stalled')
      else
        local score = score_of(jkey)
        redis.call('ZREM', KEYS[3], id)
        if f[6] then
          group_left(prefix, f[6], id)
          group_enqueue(prefix, f[6], id, score)
        else
          redis.call('ZADD', KEYS[1], score, id)
        end
        redis.call('HSET', jkey, 'state', 'waiting', 'token', '', 'stalls', stalls)
        add_event(KEYS[9], 'e', 'stalled', 'id', id)
      end
    else
      redis.call('ZREM', KEYS[3], id)  -- the job is gone: nothing to recover
      if f[6] then group_left(prefix, f[6], id) end
    end
  end

  local function next_wakeup()
    local w = -1
    local d = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    if d[2] then w = math.max(tonumber(d[2]) - now, 0) end
    local a = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    if a[2] then
      local s = math.max(math.max(tonumber(a[2]), settle or 0) - now, 0) + 1
      if w < 0 or s < w then w = s end
    end
    if gconc > 0 then
      local z = redis.call('ZRANGE', gbase(prefix) .. 'gsleep', 0, 0, 'WITHSCORES')
      if z[2] then
        local s = math.max(tonumber(z[2]) - now, 0) + 1
        if w < 0 or s < w then w = s end
      end
    end
    return w
  end

  -- 3. Paused: nothing starts. Resume pushes a wake-up token.
  if gconc == 0 then paused = redis.call('HGET', KEYS[4], 'paused') end
  if paused == '1' then
    redis.call('DEL', KEYS[6])
    return {next_wakeup(), stalled_failed}
  end

  -- 3b. Global concurrency: lease at most cap - active. A capped worker looks again within 1 s;
  --     the worker whose job finished leases at once (finish and fetch share a round trip).
  local cap = tonumber(ARGV[12] or '0')
  if cap > 0 then
    local room = cap - redis.call('ZCARD', KEYS[3])
    if room <= 0 then
      local w = next_wakeup()
      if w < 0 or w > 1000 then w = 1000 end
      return {w, stalled_failed}
    end
    if room < n then n = room end
  end

  -- 4. Rate limit: a sliding window of start times shared by every worker of the queue.
  if rate_max > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - rate_window)
    local allowed = rate_max - redis.call('ZCARD', KEYS[5])
    if allowed <= 0 then
      local oldest = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
      local w = tonumber(oldest[2]) + rate_window - now + 1
      local nw = next_wakeup()
      if nw >= 0 and nw < w then w = nw end
      return {w, stalled_failed}
    end
    if allowed < n then n = allowed end
  end

  -- 5. Lease the best N waiting jobs: highest priority first, FIFO within a priority.
  --    A job whose hash is malformed (written by another client) is leased all the same: the
  --    worker fails it with a clear error instead of this script erroring half-way.
  local out = {0, stalled_failed}
  local deadline = now + lease
  -- Lease job `id`; false when its hash is gone (nothing leased).
  local function lease_job(id)
    local jkey = prefix .. id
    local f = redis.call('HMGET', jkey, 'name', 'data', 'opts', 'priority', 'attempts_made',
      'created_at', 'delay', 'stalls', 'deliveries', 'state')
    if not (f[10] or f[1] or f[2]) then return false end
    local deliveries = (tonumber(f[9]) or 0) + 1
    -- The server time makes the token unique even if an AOF rollback rewound the counter.
    local token = ARGV[3] .. ':' .. deliveries .. '.' .. now
    redis.call('HSET', jkey, 'state', 'active', 'processed_at', now, 'token', token,
      'deliveries', deliveries)
    redis.call('ZADD', KEYS[3], deadline, id)
    add_event(KEYS[9], 'e', 'active', 'id', id, 'attempt', (tonumber(f[5]) or 0) + 1)
    if rate_max > 0 then
      redis.call('ZADD', KEYS[5], now, id .. ':' .. deliveries)
    end
    out[#out + 1] = '[' .. cjson.encode(id) .. ',' .. cjson.encode(token) .. ',' ..
      cjson.encode(f[1] or '') .. ',' .. (f[2] or 'null') .. ',' .. (f[3] or 'null') .. ',' ..
      (f[4] or 'null') .. ',' .. (f[5] or 'null') .. ',' .. (f[6] or 'null') .. ',' ..
      (f[7] or 'null') .. ',' .. (f[8] or 'null') .. ',' .. deliveries .. ']'
    return id .. ':' .. deliveries
  end
  local looks = 0
  if gconc == 0 then
    local popped = redis.call('ZPOPMIN', KEYS[1], n)
    for i = 1, #popped, 2 do lease_job(popped[i]) end
  else
    -- The ungrouped jobs' first and the rotation's first compete on the same score (priority,
    -- then the queue's seq): a group takes one job per turn, then waits at the back.
    local rot = gbase(prefix) .. 'groups'
    local w = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    while #out - 2 < n and looks < n + 100 do
      looks = looks + 1
      local g = redis.call('ZPOPMIN', rot)
      if not g[1] and not w[1] then break end
      if g[1] and w[1] and tonumber(w[2]) < tonumber(g[2]) then
        redis.call('ZADD', rot, g[2], g[1])  -- the ungrouped job goes first: put g back
        g = {}
      end
      if g[1] then
        local id, running = group_take(prefix, g[1], now, gconc, grmax, grwin)
        if id then
          local member = lease_job(id)
          if member then
            group_started(prefix, g[1], member, now, running, gconc, grmax, grwin)
          else
            group_left(prefix, g[1], id)
          end
        end
      else
        redis.call('ZREM', KEYS[1], w[1])
        lease_job(w[1])
        w = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
      end
    end
  end

  if #out > 2 then leases_granted(KEYS[4], now) end
  if rate_max > 0 and #out > 2 then
    redis.call('PEXPIRE', KEYS[5], rate_window + 1000)  -- once per call, not per job
  end
  if #out == 2 then
    -- Nothing to do: forget stale wake-up tokens, tell the worker when to look again.
    redis.call('DEL', KEYS[6])
    out[1] = next_wakeup()
    -- Looked at n + 100 groups that could not start a job: more may wait behind them.
    if looks >= n + 100 then out[1] = 1 end
  elseif redis.call('ZCARD', KEYS[1]) > 0
      or (gconc > 0 and redis.call('ZCARD', gbase(prefix) .. 'groups') > 0) then
    -- More work than this worker took: wake the next idle worker.
    wake(KEYS[6])
  end
  return out
end
