--[[ lease_clock: keeps stalled-job recovery from taking the jobs of live workers after the
server itself stalled (DEBUG SLEEP, a slow fork, CLIENT PAUSE, every client cut off): then every
lease runs out at once while no worker could renew, and the first fetch served afterwards would
take them all over, though their workers are alive and renew a moment later (docs/engine.md "A
slow server").
The queue's meta hash holds `renewed_at`, when the server last served a renewal of the queue,
and `resumed_at`, when it served the first call after a gap of more than lease/2 without one:
the server was not serving, or every holder was gone. For lease/3 after that (SETTLE: a live
worker's lease thread retries every 0.1 s after a failure, and renews every lease/3 anyway)
fetch recovers no stalled job; after it, those still not renewed are recovered as before. The
clock starts at the queue's first renewal (until then, a lease that runs out is recovered at
once, as before); from then on a lease granted by fetch counts as a renewal. ]]

-- A renewal was served now (heartbeat.lua): tick the clock, and start settling after a gap.
local function renewal_served(meta, now, lease)
  local renewed = tonumber(redis.call('HGET', meta, 'renewed_at'))
  if renewed and now - renewed > lease / 2 then
    redis.call('HSET', meta, 'renewed_at', now, 'resumed_at', now)
  else
    redis.call('HSET', meta, 'renewed_at', now)
  end
end

-- fetch leased jobs now: once the clock runs, a lease granted counts as one renewed (a stall
-- within lease/3 of a lease, before its first renewal, is then covered too).
local function leases_granted(meta, now)
  if redis.call('HEXISTS', meta, 'renewed_at') == 1 then
    redis.call('HSET', meta, 'renewed_at', now)
  end
end

-- fetch: the time until which stalled jobs must not be recovered, or nil (recover now). Starts
-- the settling itself when it is the first call served after a gap (its write is a pcall: a
-- full server refuses it, and the fetch goes on as before).
local function settling_until(meta, now, lease)
  local f = redis.call('HMGET', meta, 'renewed_at', 'resumed_at')
  local renewed, resumed = tonumber(f[1]), tonumber(f[2])
  if not renewed then return nil end
  if now - renewed > lease / 2 and not (resumed and resumed > renewed) then
    resumed = now
    redis.pcall('HSET', meta, 'resumed_at', now)
  end
  if resumed and now - resumed < lease / 3 then return resumed + lease / 3 end
  return nil
end
