--[[ fetch: promote due delayed jobs, recover stalled ones, then lease up to N waiting jobs.
KEYS[1] wait   KEYS[2] delayed   KEYS[3] active   KEYS[4] meta   KEYS[5] limiter
KEYS[6] marker KEYS[7] failed    KEYS[8] dead-letter outbox   KEYS[9] events (STREAM)
ARGV[1] job key prefix      ARGV[2] N (free slots)     ARGV[3] worker id
ARGV[4] lease (ms)          ARGV[5] max_stalls         ARGV[6] rate max (0: no limit)
ARGV[7] rate window (ms)    ARGV[8] 1 if the queue has a dead_letter queue
ARGV[9] failed retention: age (ms, -1 none)  ARGV[10] count (-1 none)
ARGV[11] 1 if the queue keeps failed jobs at all (retention.failed), else 0
ARGV[12] global concurrency: most jobs of the queue active at once on all hosts (0: no cap)
Stalls: a job whose lease ran out is recovered to waiting max_stalls times (BullMQ's
maxStalledCount); the stall after that fails it (max_stalls 0: the first stall fails it).
Each job is read before it is written, and values another client may have broken (a score, a
counter) are checked, so no call errors after its first write.
Returns {wait_ms, stalled_failed, job, job, ...}: wait_ms is how long until there may be work
(-1: only an enqueue or a resume can bring some); each job is one JSON array text
[id, token, name, data, opts, priority, attempts_made, created_at, delay, stalls, deliveries]
with data and opts inlined as the JSON they are stored as (one reply element and one parse per
job); deliveries counts the leases of the job, this one included (1 on its first run; a stall,
a release by a stopping worker and a `retry` do not reset it). ]]
--@include fetch
return fetch(KEYS, ARGV)
