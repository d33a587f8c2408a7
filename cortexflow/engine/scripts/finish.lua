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
ARGV[6 ..] one per run, a JSON array (cortexflow/engine/outcomes.py encode_outcome):
  [kind, id, token, result, error, stacktrace, delay_ms, keep, dead_letter]
  kind 'c' completed (result: JSON text), 'r' failed and retried after delay_ms, 'f' failed for
  good; keep (c, f): -1 queue retention, 0 remove now, N keep the newest N; dead_letter (f): 1
  to put the job in the dead-letter outbox.
Every argument is checked and every job read before the first write, so a bad argument or a
malformed job hash fails the call with nothing written.
Returns {done, lost, dead}: runs recorded, runs whose lease this worker had lost (nothing
written for those: another worker owns the job now), jobs pushed to the dead-letter outbox. ]]
--@include finish
return finish(KEYS, ARGV)
