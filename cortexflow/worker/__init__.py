"""One queue's worker process: what runs handlers.

- run: the process (connect, signals, lifeline, registry heartbeat, graceful stop);
- broker: the taskiq broker on the engine (fetch, leases, outcomes);
- handlers: import a handler and adapt f(data) / f(data, job) / BaseWorker to one call;
- context: JobContext, the `job` a handler receives;
- env: the environment contract between the supervisor and its worker processes.
"""
