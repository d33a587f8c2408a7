"""What a handler sees of its job: ``handler(data, job)``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Unpack

from cortexflow.config.model import QueueConfig
from cortexflow.engine.connection import Client
from cortexflow.engine.jobs import Job
from cortexflow.engine.options import AddOptions
from cortexflow.engine.queue import MAX_LOG_LINES, QueueEngine

# (queue, name, data, options) -> job id: how a handler adds follow-up jobs.
Enqueue = Callable[[str, str, Any, AddOptions], Awaitable[str]]

__all__ = ["MAX_LOG_LINES", "MAX_RERUN_WINDOW", "Enqueue", "JobContext"]

# The longest ``rerun_window``: a day (a queue without a timeout, or very many attempts).
MAX_RERUN_WINDOW = 86_400.0
# The backlog a job's re-run may wait behind, counted into its rerun window.
BACKLOG_MARGIN = 3600.0


def rerun_window(job: Job, queue: QueueConfig) -> float:
    """Seconds within which a job that starts a run now may still run again: each run it has
    left (its attempts left plus the stall recoveries it may still get) lasts at most its
    timeout and then a lease until a dead worker's job is recovered; a retry waits at most the
    backoff's max; plus BACKLOG_MARGIN. At most MAX_RERUN_WINDOW (also for no timeout)."""
    timeout = job.opts.get("timeout", queue.timeout)
    backoff = job.opts.get("backoff") or {}
    if timeout is None:
        return MAX_RERUN_WINDOW
    retries = max(0, job.attempts - job.attempts_made - 1)
    runs = retries + 1 + max(0, queue.max_stalls - job.stalls)
    wait = float(backoff.get("max", queue.backoff.max))
    window = runs * (float(timeout) + queue.lease) + retries * wait + BACKLOG_MARGIN
    return min(MAX_RERUN_WINDOW, window)


class JobContext:
    """The running job: ids and counters, plus progress and log lines stored with the job."""

    __slots__ = (
        "_engine",
        "_enqueue",
        "_forget",
        "_rerun",
        "_token",
        "attempt",
        "created_at",
        "data",
        "id",
        "name",
        "priority",
        "queue",
        "settings",
        "started",
    )

    def __init__(
        self,
        engine: QueueEngine,
        token: str,
        *,
        id: str,
        name: str,
        queue: str,
        attempt: int,
        priority: int,
        created_at: float,
        data: Any,
        enqueue: Enqueue | None = None,
        settings: Mapping[str, Any] | None = None,
        started: int | None = None,
        rerun_window: float = MAX_RERUN_WINDOW,
        forget: list[str] | None = None,
        rerun_of: tuple[Job, QueueConfig] | None = None,
    ) -> None:
        self._engine = engine
        self._enqueue = enqueue
        self._token = token  # this run's lease: progress and logs are written only while held
        self.id = id
        self.name = name
        self.queue = queue
        self.attempt = attempt  # 1 for the first run
        # Runs started, this one included (BullMQ's attemptsStarted): more than `attempt` when
        # an earlier run never finished (its worker died or stopped and gave the job back), and
        # not reset by a retry. 1 on the job's very first run; None: the same as `attempt`.
        self.started = attempt if started is None else started
        self.priority = priority
        self.created_at = created_at
        self.data = data
        # The queue's `settings:` from queues.yaml: the handler's own configuration.
        self.settings: Mapping[str, Any] = settings if settings is not None else {}
        # ``rerun_window``, or the (job, queue) it is worked out from when first read (the
        # worker's: most handlers never read it, and it costs ~0.5 us a job).
        self._rerun: float | tuple[Job, QueueConfig] = (
            rerun_of if rerun_of is not None else float(rerun_window)
        )
        self._forget = forget if forget is not None else []

    @property
    def rerun_window(self) -> float:
        """Seconds within which this job may still run again once this run began: every run
        it has left (timeout + lease each, stalls included), the retry waits in between
        (backoff max each) and an hour for the queue's backlog, at most MAX_RERUN_WINDOW.
        The TTL of a key that only guards against a re-run (an idempotency marker)."""
        r = self._rerun
        return r if isinstance(r, float) else rerun_window(*r)

    def forget_on_completion(self, key: str) -> None:
        """Delete ``key`` once this job's completion is recorded: a key that only guards
        against a re-run of the job (an idempotency marker), which a completed job no longer
        has. Not deleted when the run fails (a retry still needs it: it expires with its TTL)
        nor when the completion came after this run lost its lease (another run owns the
        job). Handlers in child processes (``isolation: process``) leave it to the TTL."""
        self._forget.append(key)

    async def update_progress(self, progress: Any) -> None:
        """Store a JSON-serialisable progress value (a number, or an object) on the job.

        Raises cortexflow.LeaseLostError, writing nothing, when this run no longer owns the job
        (its lease was lost, or the job was removed); a handler may catch and ignore it."""
        await self._engine.update_progress(self.id, self._token, progress)

    async def log(self, line: str) -> None:
        """Append a line to the job's log (the newest MAX_LOG_LINES are kept; a line over
        16 KiB is cut, with a marker). Raises cortexflow.LeaseLostError like update_progress."""
        await self._engine.log(self.id, self._token, line)

    @property
    def redis(self) -> Client:
        """The worker's Redis client, for handlers that keep data of their own in Redis."""
        return self._engine.client

    async def add_job(
        self,
        queue: str,
        name: str,
        data: Any,
        **options: Unpack[AddOptions],
    ) -> str:
        """Add a follow-up job to a queue of the same queues.yaml, with the options of
        QueueManager.add_job (``delay`` in ms). The payload schema of that queue applies.
        Returns the job id."""
        if self._enqueue is None:
            raise RuntimeError("this job context cannot add jobs")
        return await self._enqueue(queue, name, data, options)

    def __repr__(self) -> str:
        return f"<JobContext {self.queue}/{self.id} {self.name!r} attempt {self.attempt}>"
