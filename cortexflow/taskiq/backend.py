"""The result backend of cortexflow.taskiq: a task's result is its job's (docs/taskiq.md).

Nothing is stored twice: the worker records a run's value or error in the job hash when it
finishes the job (its retention applies), and ``wait_result()`` reads it from there. A job that
failed and will be retried is not ready yet; one that failed for good is, with ``is_err``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq import AsyncResultBackend, TaskiqResult
from taskiq.depends.progress_tracker import TaskProgress, TaskState

from cortexflow.engine.jobs import Job
from cortexflow.errors import RedisUnavailableError
from cortexflow.worker.tasks import current_job

if TYPE_CHECKING:
    from cortexflow.engine.queue import QueueEngine
    from cortexflow.taskiq.listen import Listener

log = logging.getLogger("cortexflow.taskiq")

REMEMBERED = 100_000  # task ids whose queue this process remembers (kicked here)
FINISHED = ("completed", "failed")
_OUTAGE = (RedisConnectionError, RedisTimeoutError, RedisUnavailableError, OSError)


class TaskError(Exception):
    """A task that failed for good, as ``wait_result()`` reports it (``result.error``): the
    message of its last run's error (``"ValueError: boom"``); ``stacktrace`` is that run's."""

    def __init__(self, message: str, stacktrace: str | None = None) -> None:
        super().__init__(message)
        self.stacktrace = stacktrace


class CortexflowResultBackend(AsyncResultBackend[Any]):
    """Reads results, progress and readiness from the job of a task id.

    ``engines()`` gives the engines of the queues that run tasks; a task id kicked by this
    process is looked up in its own queue, any other in each of them (one call per queue)."""

    def __init__(self, engines: Callable[[], Awaitable[dict[str, QueueEngine]]]) -> None:
        self._engines = engines
        self._queue_of: OrderedDict[str, str] = OrderedDict()
        # Under `taskiq worker` (listen.py): the jobs it holds, and the results saved for them.
        self.listener: Listener | None = None

    def remember(self, task_id: str, queue: str) -> None:
        self._queue_of[task_id] = queue
        if len(self._queue_of) > REMEMBERED:
            self._queue_of.popitem(last=False)

    async def _job(self, task_id: str) -> Job | None:
        engines = await self._engines()
        queue = self._queue_of.get(task_id)
        if queue is not None and queue in engines:
            return await engines[queue].get_job(task_id)
        for engine in engines.values():
            if (job := await engine.get_job(task_id)) is not None:
                return job
        return None

    async def set_result(self, task_id: str, result: TaskiqResult[Any]) -> None:
        """Under `cortexflow up`, nothing to do: the worker's finish records the run's outcome
        in the job. Under `taskiq worker`, kept for the ack that follows (listen.py)."""
        if self.listener is not None and task_id in self.listener.held:
            self.listener.results[task_id] = result

    async def is_result_ready(self, task_id: str) -> bool:
        try:
            job = await self._job(task_id)
        except _OUTAGE as exc:  # wait_result() polls again: a reconnect is ridden out
            log.warning("reading task %s failed (%s); will try again", task_id, exc)
            return False
        return job is not None and job.state in FINISHED

    async def get_result(self, task_id: str, with_logs: bool = False) -> TaskiqResult[Any]:
        job = await self._job(task_id)
        if job is None:
            raise KeyError(f"no task {task_id!r} (never added, or removed by its retention)")
        failed = job.state == "failed"
        logs = None
        if with_logs:
            engines = await self._engines()
            logs = "\n".join(await engines[job.queue].get_logs(task_id))
        finished = job.finished_at or 0.0
        started = job.processed_at or finished
        return TaskiqResult(
            is_err=failed,
            return_value=None if failed else job.result,
            execution_time=round(max(finished - started, 0.0), 2),
            error=TaskError(job.error or "failed", job.stacktrace) if failed else None,
            log=logs,
        )

    async def set_progress(self, task_id: str, progress: TaskProgress[Any]) -> None:
        """Within a task (ProgressTracker): stored as its job's progress, under its lease."""
        state = progress.state
        value: dict[str, Any] = {
            "state": state.value if isinstance(state, TaskState) else state,
            "meta": progress.meta,
        }
        job = current_job.get()
        if job is not None and job.id == task_id:
            await job.update_progress(value)
            return
        if self.listener is not None and (held := self.listener.held.get(task_id)) is not None:
            engines = await self._engines()
            await engines[held.job.queue].update_progress(task_id, held.token, value)
            return
        raise RuntimeError("a task's progress is set from within that task only")

    async def get_progress(self, task_id: str) -> TaskProgress[Any] | None:
        """The job's progress: ProgressTracker's ``{state, meta}``, or what the task stored
        with ``JobContext.update_progress()`` as ``meta`` (state STARTED)."""
        job = await self._job(task_id)
        if job is None or job.progress is None:
            return None
        value = job.progress
        if isinstance(value, dict) and set(value) == {"state", "meta"}:
            return TaskProgress(state=value["state"], meta=value["meta"])
        return TaskProgress(state=TaskState.STARTED, meta=value)
