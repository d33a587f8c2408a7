--[[ finish(KEYS, ARGV): the body of finish.lua (its header gives the keys, arguments and
reply), a function of its own KEYS and ARGV so that finish_fetch.lua runs it too. ]]
--@include common
--@include events
--@include pipeline
--@include groups
local function finish(KEYS, ARGV)
  local prefix = ARGV[1]
  local ret = {}
  for i = 2, 5 do
    ret[i] = tonumber(ARGV[i])
    if not ret[i] then return redis.error_reply('ERR finish: retention argument ' .. i .. ' is not a number') end
  end

  -- 1. Check every argument.
  local runs = {}
  for i = 6, #ARGV do
    local ok, run = pcall(cjson.decode, ARGV[i])
    if not ok or type(run) ~= 'table' or (run[1] ~= 'c' and run[1] ~= 'r' and run[1] ~= 'f')
        or type(run[2]) ~= 'string' or type(run[3]) ~= 'string' or type(run[4]) ~= 'string'
        or type(run[5]) ~= 'string' or type(run[6]) ~= 'string' or type(run[7]) ~= 'number'
        or type(run[8]) ~= 'number' or type(run[9]) ~= 'number' then
      return redis.error_reply('ERR finish: argument ' .. i .. ' is not an outcome ' ..
        '[kind, id, token, result, error, stacktrace, delay_ms, keep, dead_letter]')
    end
    if run[10] ~= nil then
      local bad = handoffs_bad(run[10])
      if bad then return redis.error_reply('ERR finish: argument ' .. i .. ': ' .. bad) end
    end
    runs[#runs + 1] = run
  end

  -- 2. Read: which runs still own their job, and what each write needs.
  local now = now_ms()

  -- Metrics of this batch (engine/history.py reads them), written once after the loop. The
  -- reads tolerate a broken hash: a missing time counts no span, it never errors mid-write.
  local BOUNDS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000}
  local m = {}
  local function observe(f, kind)
    m[kind] = (m[kind] or 0) + 1
    local start = tonumber(f[1])
    if not start then return end
    local spans = {d = now - start,
      w = math.max(start - (tonumber(f[2]) or start) - (tonumber(f[3]) or 0), 0)}
    for x, ms in pairs(spans) do
      local b = #BOUNDS + 1
      for i, bound in ipairs(BOUNDS) do if ms <= bound then b = i break end end
      m[x .. b] = (m[x .. b] or 0) + 1
      m[x .. 's'] = (m[x .. 's'] or 0) + ms
    end
  end
  local EVENT = {c = 'completed', r = 'retried', f = 'failed'}
  local plan = {}
  for _, run in ipairs(runs) do
    local id, token = run[2], run[3]
    local jkey = prefix .. id
    local f = redis.call('HMGET', jkey, 'token', 'attempts_made', 'processed_at', 'created_at',
      'delay', 'join', 'group')
    local p = {run = run, jkey = jkey, times = {f[3], f[4], f[5]}, join = f[6], group = f[7]}
    if f[1] == token and redis.call('ZSCORE', KEYS[1], id) then
      p.made = (tonumber(f[2]) or 0) + 1
      if run[1] == 'r' and (run[7] <= 0 or p.group) then p.score = score_of(jkey) end
      if run[1] == 'f' and run[9] == 1 then
        p.entry, p.letter = dead_letter_entry(jkey, id, run[5], run[6], p.made)
      end
    end
    plan[#plan + 1] = p
  end

  -- 3. Write.
  local done, lost, dead, requeued, handed = 0, 0, 0, false, 0
  local owned = {}
  -- Written once for the batch, after the loop: the counters, the active set's removals and the
  -- trimming of the finished sets to the queue's retention (per job, these were five commands
  -- of each completion). A job with a retention of its own (keep N) still trims at once.
  local totals = {completed_total = 0, failed_total = 0}
  local gone = {}
  local trim_completed, trim_failed = false, false
  -- A finished job joins its set (keep -1), is removed now (0), or joins it and trims it to its
  -- own newest N at once (N > 0). True when the set is left for the batch's trim.
  local function settle(id, set, keep, age)
    if keep == 0 then
      remove_job(prefix, id)
      return false
    end
    redis.call('ZADD', set, now, id)
    if keep > 0 then
      trim(prefix, set, age, keep, now)
      return false
    end
    return true
  end
  for _, p in ipairs(plan) do
    local run, jkey = p.run, p.jkey
    local kind, id = run[1], run[2]
    -- The same job twice in one batch (two deliveries): only the first owner writes.
    if not p.made or owned[id] then
      lost = lost + 1
    else
      owned[id] = true
      gone[#gone + 1] = id
      done = done + 1
      observe(p.times, kind)
      add_event(KEYS[9], 'e', EVENT[kind], 'id', id)
      if kind == 'c' then
        totals.completed_total = totals.completed_total + 1
        hset_finished(jkey, run, 'state', 'completed', 'finished_at', now, 'token', '',
          'attempts_made', p.made, 'result', run[4])
        if run[10] or p.join then handed = handed + pipeline_finished(prefix, run, p.join, now) end
        trim_completed = settle(id, KEYS[4], run[8], ret[2]) or trim_completed
        if p.group then group_left(prefix, p.group, id) end
      elseif kind == 'r' then
        redis.call('HSET', jkey, 'error', run[5], 'stacktrace', run[6], 'token', '',
          'attempts_made', p.made)
        if p.group then
          group_retry(prefix, KEYS[6], p.group, id, p.score, run[7], now)
        elseif run[7] > 0 then
          redis.call('HSET', jkey, 'state', 'delayed')
          redis.call('ZADD', KEYS[3], string.format('%.0f', now + run[7]), id)
        else
          redis.call('HSET', jkey, 'state', 'waiting')
          redis.call('ZADD', KEYS[2], p.score, id)
        end
        requeued = true
      else
        totals.failed_total = totals.failed_total + 1
        hset_finished(jkey, run, 'state', 'failed', 'finished_at', now, 'error', run[5],
          'stacktrace', run[6], 'token', '', 'attempts_made', p.made)
        if p.entry then
          redis.call('HSET', jkey, 'dead_letters', p.letter)
          redis.call('RPUSH', KEYS[8], p.entry)
          dead = dead + 1
        end
        if run[10] or p.join then handed = handed + pipeline_finished(prefix, run, p.join, now) end
        trim_failed = settle(id, KEYS[5], run[8], ret[4]) or trim_failed
        if p.group then group_left(prefix, p.group, id) end
      end
    end
  end
  for i = 1, #gone, 1000 do
    redis.call('ZREM', KEYS[1], unpack(gone, i, math.min(i + 999, #gone)))
  end
  for _, field in ipairs({'completed_total', 'failed_total'}) do
    if totals[field] > 0 then redis.call('HINCRBY', KEYS[6], field, totals[field]) end
  end
  if trim_completed then trim(prefix, KEYS[4], ret[2], ret[3], now) end
  if trim_failed then trim(prefix, KEYS[5], ret[4], ret[5], now) end
  if next(m) then
    local minute = KEYS[10] .. ':' .. math.floor(now / 60000)
    for field, v in pairs(m) do
      redis.call('HINCRBY', minute, field, v)
      redis.call('HINCRBY', KEYS[10] .. ':total', field, v)
    end
    redis.call('PEXPIRE', minute, 90000000)
  end
  if requeued then wake(KEYS[7]) end
  return {done, lost, dead, handed}
end
