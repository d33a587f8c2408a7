"""One run of a job inside the worker: its lease, the taskiq pieces around it (formatter,
result middleware, result backend, the task the Receiver runs) and how a finished run becomes
the Outcome the finish script records (``outcome_of``)."""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from taskiq import AsyncResultBackend, TaskiqMiddleware, TaskiqResult
from taskiq.abc.formatter import TaskiqFormatter
from taskiq.message import BrokerMessage, TaskiqMessage

from cortexflow.config.model import QueueConfig
from cortexflow.engine.jobs import Job
from cortexflow.engine.outcomes import (
    Decision,
    Outcome,
    OutcomeKind,
    completed,
    decide,
    failed,
    result_json,
)
from cortexflow.engine.queue import Fetched, QueueEngine
from cortexflow.errors import UnrecoverableError
from cortexflow.worker.context import JobContext
from cortexflow.worker.handlers import Run, Runner
from cortexflow.worker.leases import Delivery, LeaseKeeper

log = logging.getLogger("cortexflow.worker")


@dataclass(slots=True)
class Lease:
    fetched: Fetched
    result: TaskiqResult[Any] | None = None
    # Acked: the run is over and its outcome queued for the finish script. The job still holds
    # its lease (renewed by the lease thread) until that write lands.
    acked: bool = False
    run: Run = field(default_factory=Run)
    task: asyncio.Task[Any] | None = None  # the Receiver's task running it, once started
    cancelled: bool = False  # cancelled by a stop: the job goes back to waiting, no attempt
    timeout: float | None = None

    @property
    def key(self) -> Delivery:
        return (self.fetched.job.id, self.fetched.token)


class Formatter(TaskiqFormatter):
    """Our messages arrive already built; anything else is JSON from taskiq's own kick()."""

    def dumps(self, message: TaskiqMessage) -> BrokerMessage:
        return BrokerMessage(
            task_id=message.task_id,
            task_name=message.task_name,
            message=json.dumps(message.model_dump(mode="json")).encode(),
            labels=message.labels,
        )

    def loads(self, message: Any) -> TaskiqMessage:
        if isinstance(message, TaskiqMessage):
            return message
        return TaskiqMessage.model_validate_json(message)


class KeepResult(TaskiqMiddleware):
    """Keeps each run's TaskiqResult on its Lease: the Receiver has no nack, so the outcome is
    decided at ack time from what this saw."""

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        args = message.args
        lease = args[2] if len(args) == 3 and isinstance(args[2], Lease) else None
        if lease is not None:
            lease.result = result


class JobResultBackend(AsyncResultBackend[Any]):
    """Results live in the job hash (written by the finish script); this reads them back so
    taskiq's ``wait_result()`` works on jobs added through ``kiq()``."""

    def __init__(self, engine: QueueEngine) -> None:
        self._engine = engine

    async def set_result(self, task_id: str, result: TaskiqResult[Any]) -> None:
        return None  # recorded at ack time by the finish script

    async def is_result_ready(self, task_id: str) -> bool:
        job = await self._engine.get_job(task_id)
        return job is not None and job.state in ("completed", "failed")

    async def get_result(self, task_id: str, with_logs: bool = False) -> TaskiqResult[Any]:
        job = await self._engine.get_job(task_id)
        if job is None:
            raise KeyError(task_id)
        return TaskiqResult(
            is_err=job.state == "failed",
            return_value=job.result,
            execution_time=0.0,
            error=None if job.error is None else RuntimeError(job.error),
        )


def outcome_of(
    lease: Lease, queue: QueueConfig, rand: Callable[[], float]
) -> tuple[Outcome, Decision]:
    """The run's outcome: its JSON result, or its error and what happens next (``decide``)."""
    job, token, result = lease.fetched.job, lease.fetched.token, lease.result
    error: BaseException | None = None
    if result is not None and not result.is_err:
        try:
            payload = result_json(result.return_value)
        except (TypeError, ValueError) as exc:
            error = UnrecoverableError(
                f"the handler returned a value that is not JSON-serialisable: {exc}"
            )
        else:
            decision = decide(job, None, queue, rand)
            return completed(job.id, token, payload, decision), decision
    else:
        error = (result.error if result is not None else None) or RuntimeError("no result")
    decision = decide(job, error, queue, rand)
    message = error_message(error, job.opts.get("timeout"))
    stack = "".join(traceback.format_exception(error))
    return failed(job.id, token, message, stack, decision), decision


def log_failure(job: Job, decision: Decision, message: str) -> None:
    """The worker's log line for a failed run: retried (when) or failed for good."""
    if decision.kind is OutcomeKind.RETRY:
        log.warning(
            "job %s failed (run %d of %d): %s; retrying in %.3gs",
            job.id,
            decision.run,
            job.attempts,
            message,
            decision.delay,
        )
    else:
        log.warning(
            "job %s failed for good (run %d of %d): %s", job.id, decision.run, job.attempts, message
        )


def task_for(
    runner: Runner, keeper: LeaseKeeper
) -> Callable[[Any, JobContext, Lease], Awaitable[Any]]:
    """The one task the Receiver runs: the handler, with the run's task and thread known to the
    lease (a stop must know whether the handler can still be stopped) and its start to the lease
    thread (whose watchdog compares a blocked loop with the run's timeout). A plain function:
    taskiq renames what it registers."""

    async def run(data: Any, job: JobContext, lease: Lease) -> Any:
        lease.task = asyncio.current_task()
        keeper.hold(lease.key, lease.timeout)
        return await runner(data, job, lease.run)

    return run


def error_message(error: BaseException, timeout: Any) -> str:
    if isinstance(error, TimeoutError | anyio.get_cancelled_exc_class()) and timeout is not None:
        return f"TimeoutError: the run took longer than its timeout of {float(timeout):g}s"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
