"""``CortexflowBroker``: a taskiq AsyncBroker whose ``kiq()`` adds a job to a queue of
queues.yaml, for any process (web app, script, worker). docs/taskiq.md tells the whole story.

A task names its queue with the ``queue`` label (or taskiq-redis's ``queue_name``), checked when
it is decorated. ``kiq(*args, **kwargs)`` adds a job named after the task, whose data is
``{"args", "kwargs"}`` as taskiq sends them plus the message's labels; the labels ``priority``,
``delay`` (seconds), ``timeout`` (seconds), ``attempts`` and ``job_id`` become the job's options.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from taskiq import AckableMessage, AsyncBroker, AsyncTaskiqDecoratedTask
from taskiq.abc.formatter import TaskiqFormatter
from taskiq.message import BrokerMessage, TaskiqMessage

from cortexflow.api.manager import QueueManager
from cortexflow.config.model import Config
from cortexflow.config.tasks_check import QUEUE_LABELS, queue_of
from cortexflow.engine.jobs import JobOptions
from cortexflow.engine.queue import QueueEngine
from cortexflow.errors import UsageError
from cortexflow.taskiq.backend import CortexflowResultBackend
from cortexflow.worker.tasks import refusals

log = logging.getLogger("cortexflow.taskiq")

ID_LABELS = ("job_id", "task_id")  # labels that set the task's id (as with_task_id() does)

# (queue, task name, data, options) of one kiq()
Kick = tuple[str, str, dict[str, Any], JobOptions]


class TaskFormatter(TaskiqFormatter):
    """JSON both ways (never pickle). A ``job_id``/``task_id`` label becomes the task's id, so
    the task ``kiq()`` returns waits for the job really added."""

    def dumps(self, message: TaskiqMessage) -> BrokerMessage:
        for key in ID_LABELS:
            if message.labels.get(key) not in (None, ""):
                message.task_id = str(message.labels[key])
        return BrokerMessage(
            task_id=message.task_id,
            task_name=message.task_name,
            message=message.model_dump_json().encode(),
            labels=message.labels,
        )

    def loads(self, message: bytes) -> TaskiqMessage:
        return TaskiqMessage.model_validate_json(message)


class CortexflowBroker(AsyncBroker):
    """The broker of one queues.yaml (``broker_from_config``)."""

    def __init__(self, config: Config, redis_url: str | None = None, queue: str | None = None):
        super().__init__()
        self.config = config
        self.manager = QueueManager(config, redis_url)
        self.formatter = TaskFormatter()
        self.result_backend = self.backend = CortexflowResultBackend(self._task_engines)
        self.task_queues = [name for name, q in config.queues.items() if q.tasks is not None]
        if queue is not None:
            self._check_queue(queue, "broker_from_config(queue=...)")
        elif len(self.task_queues) == 1:
            queue = self.task_queues[0]
        self.default_queue = queue
        self._batch: contextvars.ContextVar[list[Kick] | None] = contextvars.ContextVar(
            "cortexflow_kiq_batch", default=None
        )

    # -- tasks -------------------------------------------------------------------------------

    def _check_queue(self, queue: str, what: str) -> None:
        known = ", ".join(self.task_queues) or "(none: give a queue `tasks: module:broker`)"
        file = self.config.path.name
        if queue not in self.config.queues:
            raise UsageError(
                f"{what}: no queue {queue!r} in {file}; queues that run tasks: {known}"
            )
        if queue not in self.task_queues:
            raise UsageError(
                f"{what}: queue {queue!r} of {file} runs a handler, not taskiq tasks (give it "
                f"`tasks:` instead of `handler:`); queues that run tasks: {known}"
            )

    def _register_task(self, task_name: str, task: AsyncTaskiqDecoratedTask[Any, Any]) -> None:
        """Every task names a queue that runs tasks (the default queue where it names none);
        ``schedule`` labels are refused (schedules live in queues.yaml)."""
        labels = task.labels
        if "schedule" in labels:
            raise UsageError(
                f"task {task_name!r}: the schedule label is not used by cortexflow; declare the "
                "schedule under `schedules:` in queues.yaml (job_name: the task's name, data: "
                '{"args": [...], "kwargs": {...}}), run by `cortexflow up` once per tick'
            )
        queue = queue_of(labels) or self.default_queue
        if queue is None:
            raise UsageError(
                f"task {task_name!r} names no queue: decorate it with "
                f"@broker.task(queue=...); queues that run tasks: {', '.join(self.task_queues)}"
            )
        self._check_queue(queue, f"task {task_name!r}")
        labels["queue"] = queue
        super()._register_task(task_name, task)

    # -- producing ---------------------------------------------------------------------------

    async def startup(self) -> None:
        if problems := refusals(self):
            raise UsageError("; ".join(problems))
        await super().startup()

    async def shutdown(self) -> None:
        await super().shutdown()
        await self.manager.close()

    async def kick(self, message: BrokerMessage) -> None:
        kick = self._job(message)
        batch = self._batch.get()
        if batch is not None:  # inside bulk(): added when it ends
            batch.append(kick)
            return
        await self._add([kick])

    @contextlib.asynccontextmanager
    async def bulk(self) -> AsyncIterator[None]:
        """Within the block, ``kiq()`` collects its job; they are all added when the block
        ends: one call per queue, each queue's jobs all or none. Nothing is added when the
        block raises. ``post_send`` middlewares run at each kiq(), before the add."""
        jobs: list[Kick] = []
        token = self._batch.set(jobs)
        try:
            yield
        finally:
            self._batch.reset(token)
        await self._add(jobs)

    def _job(self, message: BrokerMessage) -> Kick:
        """The job a message becomes: (queue, name, data, options)."""
        problems = refusals(self)
        if problems or not isinstance(self.formatter, TaskFormatter):
            raise UsageError("; ".join(problems) or "the formatter must be TaskFormatter")
        msg = self.formatter.loads(message.message)
        sent = dict(msg.labels)
        msg.parse_labels()
        labels = msg.labels
        queue = queue_of(labels) or self.default_queue
        if queue is None:
            raise UsageError(f"task {msg.task_name!r} names no queue (label `queue`)")
        self._check_queue(queue, f"task {msg.task_name!r}")
        data: dict[str, Any] = {"args": msg.args, "kwargs": msg.kwargs}
        if sent:
            data["labels"] = sent
            data["labels_types"] = msg.labels_types
        opts = JobOptions(
            job_id=msg.task_id,
            priority=_number(labels, "priority", int),
            delay=_number(labels, "delay", float),
            timeout=_number(labels, "timeout", float),
            attempts=_number(labels, "attempts", int),
        )
        return queue, msg.task_name, data, opts

    async def _add(self, jobs: list[Kick]) -> None:
        """Add ``jobs``: one script call per queue, the queues' calls at once (a bulk over
        several queues costs one round trip of wall time, not one per queue)."""
        by_queue: dict[str, list[Kick]] = {}
        for kick in jobs:
            by_queue.setdefault(kick[0], []).append(kick)
        await self.manager.connect()  # once, before the calls (one ping, one policy check)
        calls = [self._add_to(q, kicks) for q, kicks in by_queue.items()]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)  # each call ended
        failed = [(q, e) for q, e in zip(by_queue, outcomes, strict=True) if e is not None]
        for queue, error in failed[1:]:  # the first is raised; the others are said
            log.error("queue %s: its jobs of this bulk were not added: %s", queue, error)
        if failed:
            raise failed[0][1]

    async def _add_to(self, queue: str, kicks: list[Kick]) -> None:
        engine = await self._engine(queue)
        added: list[int] = []
        await engine.add_bulk([(n, d, o) for _, n, d, o in kicks], added=added)
        for kick in kicks:
            self.backend.remember(str(kick[3].job_id), queue)
        if added and added[0] < len(kicks):
            ids = [str(k[3].job_id) for k in kicks]
            log.warning(
                "queue %s: %d of %d task id(s) exist already (%s), nothing added for them: "
                "cortexflow adds once per id (wait_result() returns that job's result)",
                queue,
                len(kicks) - added[0],
                len(kicks),
                ", ".join(ids[:5]),
            )

    async def _engine(self, queue: str) -> QueueEngine:
        await self.manager.connect()
        return self.manager.get_queue(queue)

    async def _task_engines(self) -> dict[str, QueueEngine]:
        await self.manager.connect()
        return {q: self.manager.get_queue(q) for q in self.task_queues}

    # -- consuming ---------------------------------------------------------------------------

    def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """For ``taskiq worker module:broker``: the slower, compatible path (listen.py);
        `cortexflow up` is the way to run tasks."""
        from cortexflow.taskiq.listen import listen

        return listen(self)


def _number(labels: Mapping[str, Any], key: str, kind: type[int] | type[float]) -> Any:
    """A numeric label, typed by ``labels_types`` or, when sent untyped, parsed from its text."""
    value = labels.get(key)
    if value is None or value == "":
        return None
    try:
        number = kind(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number) or (kind is int and number != float(value)):
        raise UsageError(
            f"label {key}={json.dumps(value, default=str)} is not {kind.__name__}"
            f"{' (seconds)' if key in ('delay', 'timeout') else ''}"
        )
    return number


__all__ = ["QUEUE_LABELS", "CortexflowBroker", "TaskFormatter"]
