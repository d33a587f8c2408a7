"""``TaskRunner``: a queue's Runner (handlers.py) for the taskiq tasks of its ``tasks:`` broker.

See worker/tasks.py for the job's shape and the order of taskiq's hooks it follows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from taskiq import AsyncBroker, Context, TaskiqMessage, TaskiqResult, TaskiqState
from taskiq.exceptions import NoResultError
from taskiq.utils import maybe_awaitable as maybe_await

from cortexflow.config.model import QueueConfig
from cortexflow.config.tasks_check import queue_of
from cortexflow.errors import UnrecoverableError
from cortexflow.worker.context import JobContext
from cortexflow.worker.handlers import HandlerImportError, Requeue, Run
from cortexflow.worker.tasks import (
    JobTaskContext,
    Prepared,
    current_job,
    hooked,
    load_task_broker,
    parse_argument,
    prepare,
    start_broker,
)


async def start_task_runner(
    queue: QueueConfig, base_dir: Path | None, executor: Executor
) -> tuple[AsyncBroker, TaskRunner]:
    """Import the queue's broker, check it, run its worker startup in this event loop (once per
    process) and build the queue's runner: in the worker, or in each child process of
    ``isolation: process``. HandlerImportError (the same message in both) if any step fails."""
    broker = load_task_broker(queue, base_dir)
    try:
        await start_broker(broker)
    except Exception as exc:  # the user's startup hook (a lifespan, a middleware)
        raise HandlerImportError(f"tasks {queue.tasks!r}: its startup raised {exc!r}") from exc
    return broker, TaskRunner(broker, queue, executor)


class TaskRunner:
    """Runs the job of a task: ``await runner(data, job, run)`` returns the task's value or
    raises its error (cortexflow then retries or fails the job, as for a handler)."""

    def __init__(self, broker: AsyncBroker, queue: QueueConfig, executor: Executor) -> None:
        self.broker = broker
        self.queue = queue.name
        self._executor = executor
        self._overrides = dict(broker.dependency_overrides)
        self.tasks: dict[str, Prepared] = {}
        for name, task in broker.get_all_tasks().items():
            if queue_of(task.labels) == queue.name:
                self.tasks[name] = prepare(task.original_func, executor, self._overrides)
        # Middlewares with a hook on the receiving side, in the broker's order.
        mids = broker.middlewares
        self._pre = [m for m in mids if hooked(m, "pre_execute")]
        self._error = [m for m in reversed(mids) if hooked(m, "on_error")]
        self._post = [m for m in reversed(mids) if hooked(m, "post_execute")]
        self._saved = [m for m in reversed(mids) if hooked(m, "post_save")]
        self._hooks = bool(self._pre or self._error or self._post or self._saved)

    def _task(self, name: str) -> Prepared:
        task = self.tasks.get(name)
        if task is None:
            known = ", ".join(sorted(self.tasks)) or "(none)"
            raise UnrecoverableError(
                f"no task {name!r} in queue {self.queue!r}'s broker (its tasks: {known}); "
                "import the module that defines it in the module of `tasks:`, or label the "
                "task with this queue"
            )
        return task

    async def __call__(self, data: Any, job: JobContext, run: Run) -> Any:
        task = self.tasks.get(job.name) or self._task(job.name)
        if task.simple and not self._hooks and type(data) is dict:  # the short path: the call
            if task.sync is not None:
                return await task.sync(
                    (task.func, data.get("args", ()), data.get("kwargs", {})), job, run
                )
            return await task.func(*data.get("args", ()), **data.get("kwargs", {}))
        overrides = self.broker.dependency_overrides
        if overrides != self._overrides:  # set after the worker started: graphs built again
            self._overrides = dict(overrides)
            task = self.tasks[job.name] = prepare(task.func, self._executor, self._overrides)
        current_job.set(job)  # where ProgressTracker's progress goes (cortexflow.taskiq)
        args, kwargs = _arguments(data)
        if task.simple and not self._hooks:
            return await self._run_simple(task, args, kwargs, job, run)
        if not self._hooks:  # dependencies or arguments to parse, no middleware
            message = _message(job, data, args, kwargs) if task.context else None
            value, error = await self._run(task, message, args, kwargs, job, run)
            if error is not None and not isinstance(error, NoResultError):
                raise error
            return value
        return await self._hooked(task, _message(job, data, args, kwargs), job, run)

    async def _run_simple(
        self, task: Prepared, args: list[Any], kwargs: dict[str, Any], job: JobContext, run: Run
    ) -> Any:
        if task.sync is not None:
            return await task.sync((task.func, args, kwargs), job, run)
        return await task.func(*args, **kwargs)

    async def _hooked(
        self, task: Prepared, message: TaskiqMessage, job: JobContext, run: Run
    ) -> Any:
        """A run with the middlewares' hooks around it, as taskiq's Receiver makes it."""
        for middleware in self._pre:
            message = await maybe_await(middleware.pre_execute(message))
        start = time.monotonic()
        value, error = await self._run(task, message, message.args, message.kwargs, job, run)
        if isinstance(error, Requeue):
            raise error  # not a failure: the job goes back to waiting (JobReceiver)
        result: TaskiqResult[Any] = TaskiqResult(
            is_err=error is not None,
            return_value=value,
            execution_time=round(time.monotonic() - start, 2),
            error=error,
            labels=message.labels,
        )
        if error is not None:
            for middleware in self._error:
                await maybe_await(middleware.on_error(message, result, error))
        for middleware in self._post:
            await maybe_await(middleware.post_execute(message, result))
        if isinstance(error, NoResultError):  # taskiq saves no result, so no post_save
            return None
        # As in taskiq, after every run, failed or not; cortexflow's finish records the outcome
        # (value or error, and whether it is retried) right after this run ends.
        for middleware in self._saved:
            await maybe_await(middleware.post_save(message, result))
        if error is not None:
            raise error
        return value

    async def _run(
        self,
        task: Prepared,
        message: TaskiqMessage | None,
        args: list[Any],
        kwargs: dict[str, Any],
        job: JobContext,
        run: Run,
    ) -> tuple[Any, BaseException | None]:
        """Parse the arguments, resolve the dependencies, call, close them: (value, error).
        ``message`` is None when nothing asks for it (no middleware, no Context dependency)."""
        name = job.name
        for index, adapter in task.positions:
            if index < len(args):
                args[index] = parse_argument(args[index], adapter, str(index), name)
        for key, adapter in task.names.items():
            if key in kwargs:
                kwargs[key] = parse_argument(kwargs[key], adapter, key, name)
        resolver = None
        error: BaseException | None = None
        value: Any = None
        try:
            if task.graph is not None:
                broker = self.broker
                context = {
                    **broker.custom_dependency_context,
                    TaskiqState: broker.state,
                    JobContext: job,
                }
                if message is not None:
                    context[Context] = JobTaskContext(message, broker)
                resolver = task.graph.async_ctx(context)
                kwargs = {**await resolver.resolve_kwargs(), **kwargs}
            if task.sync is not None:
                value = await task.sync((task.func, args, kwargs), job, run)
            else:
                value = await task.func(*args, **kwargs)
        except BaseException as exc:  # the task's error: its dependencies see it, as in taskiq
            error = exc
        if resolver is not None:
            if error is None:
                await resolver.close(None, None, None)
            else:
                await resolver.close(type(error), error, error.__traceback__)
        return value, error


def _arguments(data: Any) -> tuple[list[Any], dict[str, Any]]:
    if not isinstance(data, Mapping):
        raise UnrecoverableError(
            f"this job's data is not a taskiq task's arguments ({{'args': [...], 'kwargs': "
            f"{{...}}}}): {type(data).__name__}"
        )
    return list(data.get("args") or ()), dict(data.get("kwargs") or {})


def _message(job: JobContext, data: Any, args: list[Any], kwargs: dict[str, Any]) -> TaskiqMessage:
    """The TaskiqMessage that kiq() sent, for middlewares and Context (labels typed again)."""
    message = TaskiqMessage.model_construct(
        task_id=job.id,
        task_name=job.name,
        labels=dict(data.get("labels") or {}),
        labels_types=data.get("labels_types"),
        args=args,
        kwargs=kwargs,
    )
    message.parse_labels()
    return message
