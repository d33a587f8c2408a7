"""One run of a job inside the worker: its lease, the taskiq pieces around it (formatter, result
backend) and how a finished run becomes the Outcome the finish script records (``outcome_of``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskiq import AsyncResultBackend, TaskiqResult
from taskiq.abc.formatter import TaskiqFormatter
from taskiq.message import BrokerMessage, TaskiqMessage

from cortexflow.config.model import QueueConfig
from cortexflow.engine.consumer import QueueConsumer
from cortexflow.engine.handoffs import Pipeline, Router, with_handoffs
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
from cortexflow.engine.routes import RouteError
from cortexflow.errors import UnrecoverableError
from cortexflow.worker.context import Enqueue, JobContext
from cortexflow.worker.handlers import Run
from cortexflow.worker.leases import Delivery

log = logging.getLogger("cortexflow.worker")


@dataclass(slots=True)
class Lease:
    fetched: Fetched
    key: Delivery  # (job id, lease token)
    timeout: float | None
    # Acked: the run is over and its outcome queued for the finish script. The job still holds
    # its lease (renewed by the lease thread) until that write lands.
    acked: bool = False
    run: Run = field(default_factory=Run)
    task: asyncio.Task[Any] | None = None  # the task running it (JobReceiver.start)
    cancelled: bool = False  # cancelled by a stop: the job goes back to waiting, no attempt
    deadline: float = math.inf  # loop time its timeout passes, once it runs (RunTimeouts)
    timed_out: bool = False  # cancelled by its timeout: the attempt fails with RunTimeout
    # Keys the run asked to delete once its completion is recorded (forget_on_completion).
    forget: list[str] = field(default_factory=list)


def job_context(
    engine: QueueEngine, lease: Lease, queue: QueueConfig, enqueue: Enqueue
) -> JobContext:
    """The handler's JobContext of the job ``lease`` holds, about to run."""
    job, token = lease.fetched.job, lease.fetched.token
    return JobContext(
        engine,
        token,
        id=job.id,
        name=job.name,
        queue=job.queue,
        attempt=job.attempts_made + 1,
        started=job.started,
        priority=job.priority,
        created_at=job.created_at,
        data=job.data,
        enqueue=enqueue,
        settings=queue.settings,
        rerun_of=(job, queue),
        forget=lease.forget,
    )


class Formatter(TaskiqFormatter):
    """JSON both ways (never pickle): what ``task.kiq()`` sends reaches ``kick()`` as JSON."""

    def dumps(self, message: TaskiqMessage) -> BrokerMessage:
        return BrokerMessage(
            task_id=message.task_id,
            task_name=message.task_name,
            message=json.dumps(message.model_dump(mode="json")).encode(),
            labels=message.labels,
        )

    def loads(self, message: bytes) -> TaskiqMessage:
        return TaskiqMessage.model_validate_json(message)


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
    fetched: Fetched,
    value: Any,
    error: BaseException | None,
    queue: QueueConfig,
    rand: Callable[[], float],
    router: Router | None = None,
) -> tuple[Outcome, Decision]:
    """The run's outcome: its JSON result, or its error and what happens next (``decide``),
    with the hand-offs of the queue's `next:` routes (``router``; docs/pipelines.md). A route
    that cannot be followed fails the run (retried like any failure), handing off nothing."""
    job, token = fetched.job, fetched.token
    if error is None:
        try:
            payload = result_json(value)
            groups, children = (
                router.completed(job, value) if router and router.on_completed else ((), "")
            )
        except (TypeError, ValueError) as exc:
            error = UnrecoverableError(
                f"the handler returned a value that is not JSON-serialisable: {exc}"
            )
        except RouteError as exc:
            error = exc
        else:
            decision = decide(job, None, queue, rand)
            done = completed(job.id, token, payload, decision)
            if groups:
                done = dataclasses.replace(done, handoffs=groups, children=children)
            return done, decision
    decision = decide(job, error, queue, rand)
    message = error_message(error)
    stack = "".join(traceback.format_exception(error))
    return with_handoffs(failed(job.id, token, message, stack, decision), router, job), decision


class Outcomes:
    """A queue's runs -> their outcomes (``outcome_of``), with the hand-offs of the queue's
    `next:` routes (``pipeline.router``; on a Cluster, ``pipeline`` also copies its outbox)."""

    def __init__(
        self,
        engine: QueueEngine,
        engine_for: Callable[[str], QueueEngine] | None,
        consumer: QueueConsumer,
    ) -> None:
        self.queue = engine.config
        self.pipeline = Pipeline(engine, engine_for, consumer)

    def __call__(
        self, fetched: Fetched, value: Any, error: BaseException | None
    ) -> tuple[Outcome, Decision]:
        router = self.pipeline.router
        return outcome_of(fetched, value, error, self.queue, random.random, router)


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


class RunTimeout(TimeoutError):
    """The run went past its timeout (JobReceiver raises it in place of the cancellation)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"the run took longer than its timeout of {timeout:g}s")


def error_message(error: BaseException) -> str:
    text = str(error)
    name = "TimeoutError" if isinstance(error, RunTimeout) else type(error).__name__
    return f"{name}: {text}" if text else name
