"""One queue's worker process: what runs handlers.

- run: the process (signals, parent death, lifeline, readiness) around a QueueWorker;
- queue_worker: QueueWorker, one queue's worker in any event loop (WorkerManager embeds it);
- receiver: JobReceiver, taskiq's Receiver extended to start one task per leased job;
- runs: one run of a job (its lease, the taskiq pieces around it, its outcome);
- broker: the taskiq broker on the engine (fetch, leases, outcomes);
- handlers: import a handler and adapt f(data) / f(data, job) / BaseWorker to one call;
- leases: the lease thread (renewals on its own connection) and the event loop's watchdog;
- threads: the threads sync handlers run in (a hung one is abandoned and replaced);
- processes: `isolation: process`, handlers (or a broker's tasks) in a pool of child processes
  killed on timeout;
- context: JobContext, the `job` a handler receives;
- env: the environment contract between the supervisor and its worker processes;
- group: WorkerGroup, the queues of one worker process (one loop, pool and lease thread);
- lean: taskiq without its aiohttp admin middleware (imported only if something uses it).
"""

from cortexflow.worker.lean import defer_admin_middleware

defer_admin_middleware()  # before anything here imports taskiq
